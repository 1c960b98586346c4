package webhook

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// searchOwners is attachOrphanInitiatedBy as it was: every orphan searched
// the list outward for its owner, which cost the square of the list. It is
// kept as the specification the one-pass version must match.
func searchOwners(t *tree, objs []int32) (kept, leftover []int32) {
	isOrphan := func(m int32) bool { return t.nodes[m].n == 1 && t.has(m, "initiated_by") }
	owner := func(i int) int32 {
		for j := i - 1; j >= 0; j-- {
			if !isOrphan(objs[j]) {
				return objs[j]
			}
		}
		for j := i + 1; j < len(objs); j++ {
			if !isOrphan(objs[j]) {
				return objs[j]
			}
		}
		return noNode
	}
	for i, m := range objs {
		if !isOrphan(m) {
			kept = append(kept, m)
			continue
		}
		if o := owner(i); o != noNode && !t.has(o, "initiated_by") {
			t.set(o, "initiated_by", t.get(m, "initiated_by"))
		} else {
			leftover = append(leftover, m)
		}
	}
	return kept, leftover
}

// TestOrphanOwnersMatchTheSearch runs both over every groups[] list of up
// to seven elements built from the shapes that matter: an empty object
// (it turns into an orphan once given initiated_by), an orphan, a group
// object with and without initiated_by.
func TestOrphanOwnersMatchTheSearch(t *testing.T) {
	t.Parallel()
	shapes := []string{`{}`, `{"initiated_by":"o%d"}`, `{"type":"t%d"}`, `{"type":"t%d","initiated_by":"g%d"}`}
	render := func(tr *tree, list []int32) string {
		var b []byte
		for _, m := range list {
			b = tr.appendJSON(append(b, ' '), m)
		}
		return string(b)
	}
	cases := 0
	for n := 0; n <= 7; n++ {
		total := 1
		for range n {
			total *= len(shapes)
		}
		for code := range total {
			elems := make([]string, n)
			for i, c := 0, code; i < n; i, c = i+1, c/len(shapes) {
				elems[i] = strings.ReplaceAll(shapes[c%len(shapes)], "%d", fmt.Sprint(i))
			}
			list := "[" + strings.Join(elems, ",") + "]"
			var got, want [3]string
			for k, run := range []func(*tree, []int32) ([]int32, []int32){
				func(tr *tree, objs []int32) ([]int32, []int32) {
					return (&parser{t: tr}).attachOrphanInitiatedBy(objs, nil)
				},
				searchOwners,
			} {
				tr := new(tree)
				root, ok := tr.parse(list)
				if !ok {
					t.Fatalf("%s is not JSON", list)
				}
				var objs []int32
				for _, m := range tr.elems(root) {
					objs = append(objs, m.val)
				}
				kept, leftover := run(tr, objs)
				out := [3]string{render(tr, kept), render(tr, leftover), render(tr, objs)}
				if k == 0 {
					got = out
				} else {
					want = out
				}
			}
			if got != want {
				t.Fatalf("groups %s:\nkept, leftover, all = %q\nthe search gives   %q", list, got, want)
			}
			cases++
		}
	}
	if cases < 20000 {
		t.Fatalf("only %d lists tried", cases)
	}
}

// scanContacts is findContact as it was, the specification of
// contactIndex.find: the first object entry whose wa_id or user_id
// matches.
func scanContacts(t *tree, list int32, waID, userID string) int32 {
	if list == noNode || waID == "" && userID == "" {
		return noNode
	}
	for _, c := range t.elems(list) {
		if t.isObject(c.val) && (waID != "" && t.text(t.get(c.val, "wa_id")) == waID || userID != "" && t.text(t.get(c.val, "user_id")) == userID) {
			return c.val
		}
	}
	return noNode
}

// TestContactIndexMatchesTheScan looks up ids in contacts[] lists on both
// sides of contactScanMax, with repeated ids, numeric wa_ids, entries that
// are not objects and statuses whose wa_id and user_id name different
// entries.
func TestContactIndexMatchesTheScan(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	id := func(prefix string) string {
		if rng.IntN(6) == 0 {
			return ""
		}
		return fmt.Sprintf("%s%d", prefix, rng.IntN(30))
	}
	for _, n := range []int{0, 1, contactScanMax, contactScanMax + 1, 60} {
		for round := range 50 {
			entries := make([]string, n)
			for i := range entries {
				switch rng.IntN(8) {
				case 0:
					entries[i] = `"not an object"`
				case 1:
					entries[i] = fmt.Sprintf(`{"wa_id":%d}`, rng.IntN(30)) // a number's text matches
				default:
					entries[i] = fmt.Sprintf(`{"n":%d,"wa_id":%q,"user_id":%q}`, i, id("1650"), id("US."))
				}
			}
			tr := new(tree)
			list, ok := tr.parse("[" + strings.Join(entries, ",") + "]")
			if !ok {
				t.Fatal("contacts are not JSON")
			}
			idx := contactIndex{list: list}
			for range 100 {
				wa, user := id("1650"), id("US.")
				if rng.IntN(4) == 0 {
					wa = fmt.Sprint(rng.IntN(30))
				}
				if got, want := idx.find(tr, wa, user), scanContacts(tr, list, wa, user); got != want {
					t.Fatalf("%d contacts (round %d): find(%q, %q) = node %d, the scan finds node %d", n, round, wa, user, got, want)
				}
			}
		}
	}
}

// A body's announced length sizes the buffer only up to maxPresize: the
// length is the client's word, and announcing 3 MB must not allocate them.
func TestReadBodyDoesNotTrustTheAnnouncedLength(t *testing.T) {
	bp, err := readBody(strings.NewReader("{}"), 3<<20, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	if string(*bp) != "{}" {
		t.Fatalf("body = %q", *bp)
	}
	if c := cap(*bp); c > maxPresize {
		t.Fatalf("buffer of %d bytes for a 2-byte body announced as 3 MB, want at most %d", c, maxPresize)
	}
	big := strings.Repeat("x", 1<<20)
	bp, err = readBody(strings.NewReader(big), int64(len(big)), 4<<20)
	if err != nil || len(*bp) != len(big) {
		t.Fatalf("a 1 MB body read as %d bytes, %v", len(*bp), err)
	}
}
