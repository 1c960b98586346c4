package jobs

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lockstepWriter writes invite lines into a pipe, never more than ahead
// lines past what the reader has taken: a list reader that needed more
// than that (reading the whole object first) would wait forever.
func lockstepWriter(t *testing.T, n, ahead int, taken *atomic.Int64, array bool) io.ReadCloser {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		defer func() { _ = pw.Close() }() // a PipeWriter's Close always returns nil
		if array {
			_, _ = io.WriteString(pw, "[\n")
		}
		for i := range n {
			for int64(i) > taken.Load()+int64(ahead) {
				time.Sleep(50 * time.Microsecond)
			}
			sep := "\n"
			if array && i < n-1 {
				sep = ",\n"
			}
			if _, err := fmt.Fprintf(pw, `{"to":"+1555%07d","group_id":"G%d"}%s`, i, i%97, sep); err != nil {
				return
			}
		}
		if array {
			_, _ = io.WriteString(pw, "]\n")
		}
	}()
	return pr
}

func TestInviteListIsReadAsAStream(t *testing.T) {
	t.Parallel()
	// A line is about 45 bytes; the reader buffers 64 KiB, so ~1,500
	// lines is all it may hold ahead of what it returned.
	const n, ahead = 200_000, 3000
	for _, array := range []bool{false, true} {
		t.Run(fmt.Sprintf("array=%v", array), func(t *testing.T) {
			t.Parallel()
			var taken atomic.Int64
			l := newStreamList(lockstepWriter(t, n, ahead, &taken, array), "", "test")
			defer func() { _ = l.Close() }() // only read
			got := make(chan error, 1)
			go func() {
				for i := range n {
					inv, err := l.Next()
					if err != nil {
						got <- fmt.Errorf("invite %d: %w", i, err)
						return
					}
					if want := fmt.Sprintf("+1555%07d", i); inv.To != want {
						got <- fmt.Errorf("invite %d is to %s, want %s", i, inv.To, want)
						return
					}
					taken.Store(int64(i))
				}
				switch inv, err := l.Next(); {
				case err == nil:
					got <- fmt.Errorf("after the last invite: one to %s, want the end", inv.To)
					return
				case !errors.Is(err, errEndOfList):
					got <- fmt.Errorf("after the last invite: %w, want the end", err)
					return
				}
				got <- nil
			}()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(time.Minute):
				t.Fatalf("stuck at invite %d: the reader wants more than %d invites ahead of what it returned", taken.Load(), ahead)
			}
		})
	}
}

func TestInviteListFormats(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, in string
		want     []string // recipients, or an error substring as the only element prefixed "error:"
	}{
		{"ndjson with blank lines and no final newline", "\n{\"to\":\"1\",\"group_id\":\"g\"}\n\n  {\"to\":\"2\",\"group_id\":\"g\"}", []string{"1", "2"}},
		{"crlf", "{\"to\":\"1\",\"group_id\":\"g\"}\r\n{\"to\":\"2\",\"group_id\":\"g\"}\r\n", []string{"1", "2"}},
		{"array", " [ {\"to\":\"1\",\"group_id\":\"g\"} , {\"to\":\"2\",\"group_id\":\"g\"} ] ", []string{"1", "2"}},
		{"empty", "", nil},
		{"empty array", "[]", nil},
		{"unknown field", "{\"to\":\"1\",\"group_id\":\"g\",\"x\":1}\n", []string{"error:line 1"}},
		{"two values on a line", "{\"to\":\"1\",\"group_id\":\"g\"} {\"to\":\"2\",\"group_id\":\"g\"}\n", []string{"error:line 1"}},
		{"not json", "{\"to\":\"1\",\"group_id\":\"g\"}\nnope\n", []string{"1", "error:line 2"}},
		{"line too long", "{\"to\":\"" + strings.Repeat("1", maxInviteLine) + "\",\"group_id\":\"g\"}\n", []string{"error:longer than"}},
		{"array invite too long", "[{\"to\":\"1\",\"group_id\":\"g\"},{\"to\":\"" + strings.Repeat("1", 4*maxInviteLine) + "\",\"group_id\":\"g\"}]", []string{"1", "error:longer than"}},
		{"array longer than an invite", "[" + strings.Repeat("{\"to\":\"1\",\"group_id\":\"g\"},", 3*maxInviteLine/30) + "{\"to\":\"2\",\"group_id\":\"g\"}]", append(slices.Repeat([]string{"1"}, 3*maxInviteLine/30), "2")},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := newStreamList(io.NopCloser(strings.NewReader(c.in)), "", "test")
			var got []string
			for {
				inv, err := l.Next()
				if errors.Is(err, errEndOfList) {
					break
				}
				if err != nil {
					got = append(got, "error:"+err.Error())
					break
				}
				got = append(got, inv.To)
			}
			if len(got) != len(c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
			for i := range got {
				w := c.want[i]
				msg, isErr := strings.CutPrefix(w, "error:")
				if got[i] != w && (!isErr || !strings.Contains(got[i], msg)) {
					t.Fatalf("got %q, want %q", got, c.want)
				}
			}
		})
	}
}

func TestInviteIDs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		id   string
		cid  string
		n    int
		isOK bool
	}{
		{"spring:0", "spring", 0, true},
		{"a:b:17", "a:b", 17, true},
		{"spring:007", "", 0, false},
		{"spring:", "", 0, false},
		{":3", "", 0, false},
		{"spring:-3", "", 0, false},
		{"spring", "", 0, false},
		{"x:99999999999999999999999", "", 0, false},
	} {
		cid, n, ok := parseInviteID(c.id)
		if ok != c.isOK || (ok && (cid != c.cid || n != c.n)) {
			t.Errorf("parseInviteID(%q) = %q, %d, %v; want %q, %d, %v", c.id, cid, n, ok, c.cid, c.n, c.isOK)
		}
		if ok && inviteID(cid, n) != c.id {
			t.Errorf("inviteID(%q, %d) = %q, want %q", cid, n, inviteID(cid, n), c.id)
		}
	}
}

func FuzzInviteLine(f *testing.F) {
	f.Add([]byte(`{"to":"+15550000001","group_id":"G1"}`))
	f.Add([]byte(`{"to":1}`))
	f.Add([]byte(`[{"to":"1","group_id":"g"}]`))
	f.Fuzz(func(_ *testing.T, b []byte) {
		l := newStreamList(io.NopCloser(strings.NewReader(string(b))), "", "fuzz")
		for range 1000 {
			if _, err := l.Next(); err != nil {
				return
			}
		}
	})
}
