package jobs_test

import (
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// all_pending acts on the requests pending when it runs. Requests an
// earlier delivery approved, whose answer was lost, are pending no more on
// the next delivery: they are still reported, as approved, not left out
// of a command that would otherwise succeed with no items at all.
func TestAllPendingReportsWhatAnEarlierDeliveryHandled(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, func(c *jobs.Config) { c.RetryMaxElapsed = time.Millisecond }) // no retry in process
	g := s.newGroup(t, "Lost door", "approval_required")
	ids := s.joinRequests(t, g, "15550000501", "15550000502")
	if err := s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointApproveJoin}, LostResponse: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("all-pending-1", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true}))
	r := s.terminal(t, "all-pending-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	got := map[string]string{}
	for _, it := range r.Items {
		got[it.ID] = it.Outcome
	}
	for _, id := range ids {
		if got[id] != events.ItemApproved {
			t.Errorf("join request %s: %q, want approved (items %+v)", id, got[id], r.Items)
		}
	}
	if n := s.calls(sim.EndpointApproveJoin); n != 1 {
		t.Fatalf("%d approval calls, want 1: the second delivery has nothing left to approve", n)
	}
}
