package jobs_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// When every request of a call fails, Graph answers with the first item's
// code but still lists each item's own reason: each is reported with its
// own code, in either order.
func TestEveryFailedJoinRequestKeepsItsOwnCode(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "All fail", "approval_required")
	ids := s.joinRequests(t, g, "15550000401", "15550000402")
	if err := s.sim.SetTOS("15550000401", false); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.RevokeJoinRequest(ids[1]); err != nil {
		t.Fatal(err)
	}
	for n, order := range [][]string{{ids[0], ids[1]}, {ids[1], ids[0]}} {
		id := fmt.Sprintf("appr-allfail-%d", n)
		s.publish(t, command(id, events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: order}))
		r := s.terminal(t, id)
		wantOutcome(t, r, events.OutcomeFailed)
		if len(r.Items) != 2 {
			t.Fatalf("order %d: %d items, want 2: %+v", n, len(r.Items), r.Items)
		}
		for _, it := range r.Items {
			want := 131213 // revoked
			if it.ID == ids[0] {
				want = 131203 // terms not accepted
			}
			if it.Code != want {
				t.Errorf("order %d: request %d reported with code %d (%.60s), want %d", n, slices.Index(ids, it.ID), it.Code, it.Reason, want)
			}
		}
	}
}

// A throttled rejection certainly did nothing. If the user revokes the
// request meanwhile, the retry's 131213 is not this command's doing: the
// request is not reported as rejected.
func TestARequestRevokedAfterAThrottleIsNotReportedRejected(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: 131208,
			ThrottleRetryAfter: time.Second, Endpoints: []string{sim.EndpointRejectJoin}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Revoker", "approval_required")
	ids := s.joinRequests(t, g, "15550000501")
	s.publish(t, command("rej-revoked", events.RejectJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
	s.waitForCall(t, sim.EndpointRejectJoin)
	if err := s.sim.RevokeJoinRequest(ids[0]); err != nil {
		t.Fatal(err)
	}
	r := s.terminal(t, "rej-revoked")
	if n := s.calls(sim.EndpointRejectJoin); n != 2 {
		t.Fatalf("%d reject calls, want 2 (throttled, then retried)", n)
	}
	if len(r.Items) != 1 || r.Items[0].Outcome != events.ItemFailed || r.Items[0].Code != 131213 {
		t.Fatalf("items %+v, want the revoked request failed with 131213, not rejected by this command", r.Items)
	}
}

// An approval whose answer is lost and whose in-process retry is then
// throttled: the next delivery's 131213 is judged "approved" (the user is
// a member), the throttle notwithstanding.
func TestALostApprovalRetriedIntoAThrottleIsStillReportedApproved(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointApproveJoin}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Lost approval", "approval_required")
	ids := s.joinRequests(t, g, "15550000951")
	s.publish(t, command("appr-lost-thr", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
	s.waitForCall(t, sim.EndpointApproveJoin)
	if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: 131208, ThrottleRetryAfter: time.Second, Endpoints: []string{sim.EndpointApproveJoin}}); err != nil {
		t.Fatal(err)
	}
	r := s.terminal(t, "appr-lost-thr")
	t.Logf("calls %d, outcome %s items %+v", s.calls(sim.EndpointApproveJoin), r.Outcome, r.Items)
	if len(r.Items) != 1 || r.Items[0].Outcome != events.ItemApproved {
		t.Fatalf("items %+v, want approved", r.Items)
	}
}
