package events

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The rules below have twins in schemas/common.json; the schema tests and
// FuzzDecodeCommand hold them together (everything accepted here must satisfy
// the schema).

const (
	maxIDLen     = 128 // command and campaign ids
	maxOpaqueLen = 256 // Graph ids we only pass along (group, join request)
	maxNumeric   = 32  // numeric Graph ids (phone number, WABA)
)

// asciiSpace is what subjects are trimmed of: the characters \s stands for
// in the schemas' regular expressions, so both sides trim alike.
const asciiSpace = "\t\n\f\r "

var (
	phoneRE        = regexp.MustCompile(`^\+?[0-9]{6,15}$`)
	bsuidRE        = regexp.MustCompile(`^[A-Z]{2}\.[!-~]{1,128}$`)
	templateNameRE = regexp.MustCompile(`^[a-z0-9_]{1,512}$`)
	languageRE     = regexp.MustCompile(`^[a-z]{2,3}(_[A-Za-z]{2,4})?$`)
	bucketRE       = regexp.MustCompile(`^[A-Za-z0-9_-]{1,255}$`)
)

func checkCommandID(path, s string, errs *errorList) {
	switch {
	case s == "":
		errs.add(path, "is required")
	case len(s) > maxIDLen:
		errs.add(path, "must be at most %d characters, got %d", maxIDLen, len(s))
	case strings.IndexFunc(s, notIDChar) >= 0:
		errs.add(path, "may only hold the characters A-Z a-z 0-9 _ - . :")
	}
}

func notIDChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
		r == '_', r == '-', r == '.', r == ':':
		return false
	}
	return true
}

func checkNumericID(path, s string, errs *errorList) {
	switch {
	case s == "":
		errs.add(path, "is required")
	case len(s) > maxNumeric || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0:
		errs.add(path, "must be a numeric Graph id of at most %d digits", maxNumeric)
	}
}

// checkOpaqueID accepts any printable ASCII without spaces: Graph ids are
// opaque, but they travel in URLs and logs. "." and ".." are not ids but
// path segments every server resolves: a group id ".." made the call for
// /{group}/invite_link one for /invite_link.
func checkOpaqueID(path, s string, errs *errorList) {
	switch {
	case s == "":
		errs.add(path, "is required")
	case len(s) > maxOpaqueLen:
		errs.add(path, "must be at most %d characters, got %d", maxOpaqueLen, len(s))
	case strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0:
		errs.add(path, "must be printable ASCII without spaces")
	case s == "." || s == "..":
		errs.add(path, "must be a Graph id, not . or ..")
	}
}

func checkPhone(path, s string, errs *errorList) {
	switch {
	case s == "":
		errs.add(path, "is required")
	case !phoneRE.MatchString(s):
		errs.add(path, "must be a phone number in international format, 6–15 digits with an optional leading +")
	}
}

// checkParticipant accepts what the remove endpoint takes: a phone number or
// WhatsApp id ("user"), or a business-scoped user id such as "US.1234…"
// ("user_id").
func checkParticipant(path, s string, errs *errorList) {
	if !phoneRE.MatchString(s) && !bsuidRE.MatchString(s) {
		errs.add(path, "must be a phone number, a WhatsApp id or a business-scoped user id (e.g. US.1234)")
	}
}

// checkSubjectText applies Meta's rule for group subjects: 1–128 characters
// once surrounding whitespace is trimmed.
func checkSubjectText(path, s string, errs *errorList) {
	n := utf8.RuneCountInString(strings.Trim(s, asciiSpace))
	switch {
	case n == 0:
		errs.add(path, "must not be empty or blank")
	case n > 128:
		errs.add(path, "must be at most 128 characters after trimming, got %d", n)
	}
}

func checkDescription(path, s string, errs *errorList) {
	if n := utf8.RuneCountInString(s); n > 2048 {
		errs.add(path, "must be at most 2048 characters, got %d", n)
	}
}

func checkTemplateRef(path string, t TemplateRef, errs *errorList) {
	switch {
	case t.Name == "":
		errs.add(join(path, "name"), "is required")
	case !templateNameRE.MatchString(t.Name):
		errs.add(join(path, "name"), "must be 1–512 of lowercase letters, digits and underscores")
	}
	checkLanguage(join(path, "language"), t.Language, errs)
}

func checkLanguage(path, s string, errs *errorList) {
	switch {
	case s == "":
		errs.add(path, "is required")
	case !languageRE.MatchString(s):
		errs.add(path, "must be a template language code such as en, en_US or pt_BR")
	}
}

// checkHTTPURL demands an absolute http(s) URL with a host; it is at least
// as strict as the schema's "uri" format.
func checkHTTPURL(path, s string, errs *errorList) {
	if len(s) > 2048 {
		errs.add(path, "must be at most 2048 characters")
		return
	}
	u, err := url.Parse(s)
	scheme := strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
	if err != nil || !scheme || u.Host == "" || u.Opaque != "" {
		errs.add(path, "must be an absolute http or https URL")
		return
	}
	if h := u.Hostname(); strings.Contains(h, ":") && (!strings.HasPrefix(u.Host, "[") || net.ParseIP(h) == nil) {
		errs.add(path, "must be an absolute http or https URL")
	}
}

// ValidNumericID reports whether id is a valid numeric Graph id, such as a
// command's phone_number_id: 1–32 digits.
func ValidNumericID(id string) bool {
	var errs errorList
	checkNumericID("", id, &errs)
	return len(errs) == 0
}

// ValidCommandID reports whether id is a valid command (or campaign) id:
// 1–128 of A-Z a-z 0-9 _ - . :
func ValidCommandID(id string) bool {
	var errs errorList
	checkCommandID("", id, &errs)
	return len(errs) == 0
}
