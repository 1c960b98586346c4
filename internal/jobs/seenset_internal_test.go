package jobs

import (
	"fmt"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
)

func TestSeenSet(t *testing.T) {
	t.Parallel()

	t.Run("one number with or without its plus is one recipient", func(t *testing.T) {
		t.Parallel()
		s := newSeenSet(4)
		steps := []struct {
			inv   events.Invite
			first bool
		}{
			{events.Invite{To: "15550000001", GroupID: "g1"}, true},
			{events.Invite{To: "+15550000001", GroupID: "g1"}, false},
			{events.Invite{To: "15550000001", GroupID: "g1"}, false},
			{events.Invite{To: "15550000001", GroupID: "g2"}, true},
			{events.Invite{To: "15550000002", GroupID: "g1"}, true},
		}
		for i, st := range steps {
			if got := s.add(st.inv); got != st.first {
				t.Fatalf("step %d: add(%+v) = %v, want %v", i, st.inv, got, st.first)
			}
		}
	})

	t.Run("more invites than it was sized for are still told apart", func(t *testing.T) {
		t.Parallel()
		s := newSeenSet(10)
		for round, want := range []bool{true, false} {
			for i := range 1000 {
				inv := events.Invite{To: fmt.Sprintf("1555%07d", i), GroupID: "g"}
				if got := s.add(inv); got != want {
					t.Fatalf("round %d, invite %d: add = %v, want %v", round, i, got, want)
				}
			}
		}
		if s.n != 1000 {
			t.Fatalf("%d invites held, want 1000", s.n)
		}
	})
}
