package sim

import (
	"strings"
	"sync"
	"testing"
)

func TestMetaEscapeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "abc", "Z", "ZZ", "a=", "==", "ZD", "ZA=Z"} {
		got, ok := metaUnescape(metaEscape(s))
		if !ok || got != s {
			t.Fatalf("metaUnescape(metaEscape(%q)) = %q, %v", s, got, ok)
		}
	}
	if _, ok := metaUnescape("abZ"); ok {
		t.Fatal("a trailing Z was accepted")
	}
	if _, ok := metaUnescape("aZQ"); ok {
		t.Fatal("ZQ was accepted")
	}
}

func TestMetaSampleIDs(t *testing.T) {
	t.Parallel()
	// Samples from Meta's pages decode to what the fact sheet describes.
	plain, ok := decodeMetaID("Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD")
	if !ok || plain != "capi_group:17055550139:120363404694233820" {
		t.Fatalf("group id decodes to %q", plain)
	}
	plain, ok = decodeMetaID("MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw")
	if !ok || plain != "16467043595:120363404694233820" {
		t.Fatalf("join request id decodes to %q", plain)
	}
	if id := groupID("17055550139", "120363404694233820"); id != "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD" {
		t.Fatalf("groupID = %s, want Meta's sample", id)
	}
}

func TestIDsAreReproducibleAndShaped(t *testing.T) {
	t.Parallel()
	a, b := &idGen{seed: 9}, &idGen{seed: 9}
	for range 100 {
		x, y := a.linkID(), b.linkID()
		if x != y || len(x) != 22 || strings.Trim(x, alnum) != "" {
			t.Fatalf("link ids %q %q", x, y)
		}
	}
	if r := a.requestID(); len(r) != 36 || strings.Count(r, "-") != 4 {
		t.Fatalf("request id %q is not UUID-shaped", r)
	}
	if w := a.wamid("16505551234"); !strings.HasPrefix(w, "wamid.HBgL") {
		t.Fatalf("wamid %q does not start like Meta's", w)
	}
	if g := a.groupNumber(); len(g) != 18 || !strings.HasPrefix(g, "120363") || !isDigits(g) {
		t.Fatalf("group number %q", g)
	}
}

func TestCallLogKeepsTheNewest(t *testing.T) {
	t.Parallel()
	l := newCallLog(100000)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 37500 {
				l.add(Call{Method: "GET", Path: "/x", Status: w*100000 + i})
			}
		}()
	}
	wg.Wait()
	calls := l.since(0, 0)
	if n := len(calls); n < 100000 || n > 100000+callChunk {
		t.Fatalf("kept %d calls, want about 100000", n)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Seq != calls[i-1].Seq+1 {
			t.Fatalf("seq gap at %d: %d after %d", i, calls[i].Seq, calls[i-1].Seq)
		}
	}
	if last := calls[len(calls)-1].Seq; last != 150000 {
		t.Fatalf("last seq %d, want 150000", last)
	}
	if got := l.since(149990, 5); len(got) != 5 || got[0].Seq != 149991 {
		t.Fatalf("since = %+v", got)
	}
	l.reset()
	if l.len() != 0 {
		t.Fatal("reset kept calls")
	}
}

func FuzzMetaID(f *testing.F) {
	for _, s := range []string{"", "Y2FwaV9ncm91cDoxNzA1ZD", "ZAZD", "abc", "Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if plain, ok := decodeMetaID(s); ok {
			_ = isGroupIDShape(s)
			if got, ok := decodeMetaID(encodeMetaID(plain)); !ok || got != plain {
				t.Fatalf("re-encoding %q: %q %v", plain, got, ok)
			}
		}
		if u, ok := metaUnescape(metaEscape(s)); !ok || u != s {
			t.Fatalf("escape round trip of %q gave %q", s, u)
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor(3, "v1-1"), "v1-1")
	f.Add("garbage", "v")
	f.Fuzz(func(t *testing.T, c, version string) {
		if seq, ok := decodeCursor(c, version); ok {
			if again, ok := decodeCursor(encodeCursor(seq, version), version); !ok || again != seq {
				t.Fatalf("cursor %d does not round-trip", seq)
			}
		}
	})
}

func FuzzRoute(f *testing.F) {
	s := &Server{}
	for _, p := range []string{"/v23.0/123/groups", "/x", "/v1/", "//", "/v23.0/message_template_library", "/a/b/c"} {
		f.Add("GET", p)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt, _, _ := s.route(method, path)
		if rt.endpoint == "" || rt.h == nil {
			t.Fatalf("route(%q, %q) has no handler", method, path)
		}
	})
}
