package jobs

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/groupflow/groupflow/internal/graph"
)

func TestItemReasonsAreCutAtACharacterBoundary(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 300) // two bytes each: byte 200 is mid-character for an odd cut
	for _, tc := range []struct {
		name string
		got  string
	}{
		{"truncate at an odd byte", truncate("x"+long, 200)},
		{"Meta's item message", func() string { _, r := firstItemError([]graph.ItemError{{Code: 131000, Message: long}}); return r }()},
	} {
		if !utf8.ValidString(tc.got) {
			t.Errorf("%s: %q is not valid UTF-8", tc.name, tc.got)
		}
		if n := len(strings.TrimSuffix(tc.got, "…")); n > 200 {
			t.Errorf("%s: %d bytes before the ellipsis, want at most 200", tc.name, n)
		}
	}
}
