package jobs

import (
	"regexp"
	"strings"
	"testing"
)

// validKey is what NATS accepts as a KV key (jetstream's validKeyRe plus
// its rules on dots).
var validKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

// FuzzEscapeKey: any command id or request id maps to a valid KV key, and
// distinct ids never share one.
func FuzzEscapeKey(f *testing.F) {
	for _, s := range []string{"order-4711", "a:b", "..", "", "=3A", "wamid.HBgL==", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := escapeKey(s)
		full := "cmd." + k
		if !validKey.MatchString(full) || strings.Contains(full, "..") || strings.HasSuffix(full, ".") {
			t.Fatalf("escapeKey(%q) = %q is not a valid KV key", s, k)
		}
		if s != "" && unescapeKey(k) != s {
			t.Fatalf("unescapeKey(escapeKey(%q)) = %q", s, unescapeKey(k))
		}
	})
}
