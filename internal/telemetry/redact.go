package telemetry

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces a secret wherever telemetry masks one.
const Redacted = "REDACTED"

// sensitiveKeyParts are substrings of a key (log attribute, query parameter,
// JSON field) whose value is treated as a secret. Matching is by substring so
// access_token, verify_token, hub.verify_token, app_secret, INGEST_API_TOKENS
// are all caught; masking a harmless "tokens_left" is the cheap side of the
// trade.
var sensitiveKeyParts = []string{
	"token", "secret", "password", "passwd", "authorization",
	"api_key", "apikey", "api-key", "credential", "cookie", "private_key",
}

// IsSensitiveKey reports whether values under key are masked.
func IsSensitiveKey(key string) bool {
	k := strings.ToLower(key)
	for _, p := range sensitiveKeyParts {
		if strings.Contains(k, p) {
			return true
		}
	}
	return false
}

var (
	// "Bearer EAAB…" / "Basic dXNlcjpw…" anywhere in a string, up to the
	// next delimiter (not just the token68 alphabet, which would leave the
	// tail of "Bearer abc=def" behind).
	authSchemeRE = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[^\s&"',;#]+`)
	// key=value pairs (query strings, "k=v" text) with a sensitive key.
	pairRE = regexp.MustCompile(`(?i)([A-Za-z0-9_.\-]*(?:token|secret|password|passwd|api_key|apikey|api-key|credential|private_key)[A-Za-z0-9_.\-]*)=([^&\s"',;#]+)`)
	// "key": "value" in JSON with a sensitive key.
	jsonPairRE = regexp.MustCompile(`(?i)("[A-Za-z0-9_.\-]*(?:token|secret|password|passwd|authorization|api_key|apikey|credential|private_key)[A-Za-z0-9_.\-]*"\s*:\s*)"[^"]*"`)
)

// RedactString masks credentials inside free text: bearer/basic
// credentials, key=value pairs and JSON string fields whose key is
// sensitive. It is a safety net for error messages and URLs that reach a log
// or a span; code must still not put secrets there.
func RedactString(s string) string {
	if !strings.ContainsAny(s, "=:") && !strings.ContainsAny(s, " \t") {
		return s // no pair, no "scheme credential": nothing to mask
	}
	s = authSchemeRE.ReplaceAllString(s, "$1 "+Redacted)
	s = pairRE.ReplaceAllString(s, "$1="+Redacted)
	s = jsonPairRE.ReplaceAllString(s, `$1"`+Redacted+`"`)
	return s
}

// redactURL renders u for a span: without user info, and with the value of
// every sensitive query parameter (access_token, appsecret_proof,
// hub.verify_token, …) replaced. changed says whether the
// result differs from what otelhttp would record.
func redactURL(u *url.URL) (s string, changed bool) {
	c := *u
	c.User = nil
	if c.RawQuery == "" {
		return c.String(), false
	}
	q, err := url.ParseQuery(c.RawQuery)
	if err != nil {
		// Unparseable: drop the whole query rather than guess.
		c.RawQuery = ""
		return c.String(), true
	}
	for k, vs := range q {
		if IsSensitiveKey(k) {
			for i := range vs {
				vs[i] = Redacted
			}
			changed = true
		}
	}
	if changed {
		c.RawQuery = q.Encode()
	}
	return c.String(), changed
}
