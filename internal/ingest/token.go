package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/groupflow/groupflow/internal/events"
)

// APIToken is one entry of the command API's tokens (INGEST_API_TOKENS).
type APIToken struct {
	// Token is the bearer token.
	Token string
	// PhoneNumberIDs are the business phone numbers the token may submit
	// commands for and read the status of, sorted; empty: every number.
	PhoneNumberIDs []string
	// Entry is the entry's place in the list (from 1; the first, for a
	// token given twice): logs name a token by it, never by its text.
	Entry int
	// Rate is the entry's own bound on the token's requests a second
	// (";rate="), in place of Config.APIRate; 0 lifts the bound. Nil:
	// Config.APIRate.
	Rate *float64
	// Burst is the entry's own burst (";burst="), in place of
	// Config.APIBurst; 0: not given.
	Burst int
}

// entrySyntax is what an entry looks like, for error messages.
const entrySyntax = "want <token> or <token>@<phone_number_id>+<phone_number_id>…, then optionally ;rate=<requests/s> and ;burst=<requests>"

// ParseAPITokens reads entries written as INGEST_API_TOKENS has them:
//
//	<token>                                           every phone number
//	<token>@<phone_number_id>[+<phone_number_id>…]    only those
//
// either followed by options of the token's own, each after a ";":
// rate=<requests a second> (0: no bound) and burst=<requests>, in place
// of Config.APIRate and Config.APIBurst.
//
// A bearer token (RFC 6750: letters, digits, - . _ ~ + / and trailing =;
// hex and base64url tokens are within it) has no "@" and no ";", so
// nothing a token can be reads as a scope or an option; phone number ids
// are digits, so the "+" between them is never a token's. The same token
// in two entries must name the same numbers and options. Empty entries
// are skipped. An error names an entry by its place in the list (from 1),
// never its text: a token that does hold an "@" or a ";" would be shown in
// part.
func ParseAPITokens(entries []string) ([]APIToken, error) {
	var out []APIToken
	seen := map[string]int{} // token → index in out
	for i, entry := range entries {
		n := i + 1
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		head, options, hasOptions := strings.Cut(entry, ";")
		token, numbers, scoped := strings.Cut(head, "@")
		t := APIToken{Token: strings.TrimSpace(token), Entry: n}
		if t.Token == "" {
			return nil, fmt.Errorf("entry %d has no token before its @ or ; (%s)", n, entrySyntax)
		}
		if scoped {
			for id := range strings.SplitSeq(numbers, "+") {
				id = strings.TrimSpace(id)
				if !events.ValidNumericID(id) {
					return nil, fmt.Errorf("entry %d: what follows its @ is not phone number ids (1–32 digits) joined by + (%s; a token itself has no @)", n, entrySyntax)
				}
				t.PhoneNumberIDs = append(t.PhoneNumberIDs, id)
			}
			slices.Sort(t.PhoneNumberIDs)
			t.PhoneNumberIDs = slices.Compact(t.PhoneNumberIDs)
		}
		if hasOptions {
			if err := t.parseOptions(options); err != nil {
				return nil, fmt.Errorf("entry %d: %w (%s; a token itself has no ;)", n, err, entrySyntax)
			}
		}
		if j, ok := seen[t.Token]; ok {
			if !out[j].sameAs(t) {
				return nil, fmt.Errorf("entry %d repeats the token of an earlier entry with other phone numbers, rate or burst: give each token one entry", n)
			}
			continue
		}
		seen[t.Token] = len(out)
		out = append(out, t)
	}
	return out, nil
}

// parseOptions reads what follows an entry's first ";": rate=<number ≥ 0>
// and burst=<integer ≥ 1>, each at most once, separated by ";". Errors
// quote none of it (were the ";" a token's, the rest would be the token's
// too).
func (t *APIToken) parseOptions(options string) error {
	for opt := range strings.SplitSeq(options, ";") {
		key, value, _ := strings.Cut(opt, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "rate":
			r, err := strconv.ParseFloat(value, 64)
			if err != nil || r < 0 || math.IsNaN(r) || math.IsInf(r, 0) {
				return errors.New("its rate= is not a number of requests a second ≥ 0")
			}
			if t.Rate != nil {
				return errors.New("it gives rate= twice")
			}
			t.Rate = &r
		case "burst":
			b, err := strconv.Atoi(value)
			if err != nil || b < 1 {
				return errors.New("its burst= is not a whole number of requests ≥ 1")
			}
			if t.Burst != 0 {
				return errors.New("it gives burst= twice")
			}
			t.Burst = b
		default:
			return errors.New("what follows a ; is not rate=<requests/s> or burst=<requests>")
		}
	}
	return nil
}

// sameAs reports whether u, the same token in a later entry, says what t
// says.
func (t APIToken) sameAs(u APIToken) bool {
	sameRate := (t.Rate == nil) == (u.Rate == nil) && (t.Rate == nil || *t.Rate == *u.Rate)
	return sameRate && t.Burst == u.Burst && slices.Equal(t.PhoneNumberIDs, u.PhoneNumberIDs)
}

// scope is what the token of an authorised request may act for.
type scope struct {
	// entry is the token's APIToken.Entry.
	entry int
	// phones the token may act for; nil: every phone number.
	phones map[string]bool
	// rate bounds the token's requests; nil: no bound.
	rate *callerRate
}

// allows reports whether the token may act for phone, and see its commands.
func (s scope) allows(phone string) bool { return s.phones == nil || s.phones[phone] }

// apiToken is a configured token as the server compares it.
type apiToken struct {
	// sum is the token's SHA-256: comparing hashes takes the same time
	// whatever the lengths of the presented and the configured token.
	sum   [sha256.Size]byte
	scope scope
}

// newAPITokens parses entries for the server, each token with its rate
// bound: its entry's, else rate and burst.
func newAPITokens(entries []string, rate float64, burst int) ([]apiToken, error) {
	parsed, err := ParseAPITokens(entries)
	if err != nil {
		return nil, err
	}
	out := make([]apiToken, 0, len(parsed))
	for _, t := range parsed {
		sc := scope{entry: t.Entry, rate: newCallerRate(t.Rate, t.Burst, rate, burst)}
		if sc.rate == nil && t.Burst > 0 {
			return nil, fmt.Errorf("entry %d gives burst= but its token has no rate bound (neither its own rate= nor INGEST_API_RATE): give a rate, or drop the burst", t.Entry)
		}
		if len(t.PhoneNumberIDs) > 0 {
			sc.phones = map[string]bool{}
			for _, id := range t.PhoneNumberIDs {
				sc.phones[id] = true
			}
		}
		out = append(out, apiToken{sum: sha256.Sum256([]byte(t.Token)), scope: sc})
	}
	return out, nil
}

// authorise returns the scope of a presented token. Every configured token
// is compared, in constant time, and the match is chosen without a branch:
// how long it takes does not depend on which entry matched, nor on its
// phone numbers.
func (s *Server) authorise(token string) (scope, bool) {
	sum := sha256.Sum256([]byte(token))
	found, at := 0, 0
	for i := range s.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], s.tokens[i].sum[:])
		at = subtle.ConstantTimeSelect(eq, i, at)
		found |= eq
	}
	if found == 0 || token == "" {
		return scope{}, false
	}
	return s.tokens[at].scope, true
}
