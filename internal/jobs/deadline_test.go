package jobs_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// The deadline holds inside a command too: what was sent before it is
// reported, and nothing is sent after it. Every Graph call takes 1.5 s
// here (the worker's client gives up after 2 s), so a call is answered
// 0.75 s past a deadline it was sent 0.75 s before.
func TestNothingIsSentPastTheDeadlineMidCommand(t *testing.T) {
	t.Parallel()

	t.Run("the chunks left of a removal expire beside those removed", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Late crowd", "")
		var members []string
		for i := range 8 { // a group's most
			members = append(members, fmt.Sprintf("155500003%02d", i))
		}
		s.members(t, g, members...)
		// Two chunks: seven members and a stranger, then the last member.
		names := append(slices.Clone(members[:7]), "15559999903", members[7])
		if err := s.sim.SetFaults(sim.Faults{Latency: 1500 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		c := command("late-rm-1", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: names})
		dl := time.Now().Add(750 * time.Millisecond)
		c.Deadline = &dl
		s.publish(t, c)

		r := s.terminal(t, "late-rm-1")
		wantOutcome(t, r, events.OutcomePartiallySucceeded)
		got := map[string]events.ItemOutcome{}
		for _, it := range r.Items {
			got[it.ID] = it
		}
		for _, m := range members[:7] {
			if got[m].Outcome != events.ItemRemoved {
				t.Errorf("%s: %+v, want removed (its chunk went out before the deadline)", m, got[m])
			}
		}
		if x := got["15559999903"]; x.Outcome != events.ItemFailed || x.Code != graph.CodeParticipantNotInGroup {
			t.Errorf("the stranger: %+v, want failed with 131212", x)
		}
		last := members[7]
		if got[last].Outcome != events.ItemFailed || !strings.HasPrefix(got[last].Reason, events.ReasonExpired) {
			t.Errorf("%s: %+v, want failed as expired", last, got[last])
		}
		if n := s.calls(sim.EndpointRemoveParticipant); n != 1 {
			t.Fatalf("%d removal calls, want 1: the second chunk was due after the deadline", n)
		}
		if st, _ := s.sim.Group(g.ID); !hasParticipant(st, last) {
			t.Fatalf("%s was removed after the deadline", last)
		}
	})

	t.Run("an approval whose answer was lost is not repeated past the deadline", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Late door", "approval_required")
		ids := s.joinRequests(t, g, "15550000401")
		// The listing and the approval take 1.5 s each: the approval is
		// sent 0.75 s before the deadline and made (the user joins), but
		// its answer never comes; only a retry, due 0.75 s after the
		// deadline, could learn the outcome.
		if err := s.sim.SetFaults(sim.Faults{Latency: 1500 * time.Millisecond, Endpoints: []string{sim.EndpointApproveJoin}, LostResponse: 1, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		c := command("late-approve-1", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids})
		dl := time.Now().Add(2250 * time.Millisecond)
		c.Deadline = &dl
		s.publish(t, c)

		r := s.terminal(t, "late-approve-1")
		wantFailure(t, r, events.ReasonOutcomeUnknown)
		if n := s.calls(sim.EndpointApproveJoin); n != 1 {
			t.Fatalf("%d approval calls, want 1: the retry was due after the deadline", n)
		}
		if st, _ := s.sim.Group(g.ID); !hasParticipant(st, "15550000401") {
			t.Fatal("the lost approval did not take effect; the test proves nothing")
		}
	})
}

func hasParticipant(g sim.GroupState, waID string) bool { return slices.Contains(g.Participants, waID) }
