package jobs_test

import (
	"context"
	"encoding/json"
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

// A worker dies part-way through an all_pending approval of a list too
// big for one ledger entry on the default max_payload (about 5,800
// requests), and another takes the command over. No chunk
// is sent twice: not those whose answers the first worker saved (their
// refused requests are still pending), nor the one whose answer it may
// not have seen (those requests are pending no more, and are judged from
// the group as a 131213 would be).
func TestAllPendingTakenOverMidwayRepeatsNoChunk(t *testing.T) {
	t.Parallel()
	s, g, ids, users := bigPendingList(t, 7_000)
	// One request in each chunk of 100 is refused and stays pending.
	outcomes := make(map[string]string, len(ids))
	for i, id := range ids {
		outcomes[id] = events.ItemApproved
		if i%100 == 0 {
			outcomes[id] = events.ItemFailed
			if err := s.sim.SetTOS(users[i], false); err != nil {
				t.Fatal(err)
			}
		}
	}
	kill := s.startKillableWorker(t, "worker-a")
	s.publish(t, command("appr-all", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true}))
	// A liveness bound, not a speed check.
	deadline := time.Now().Add(2 * time.Minute)
	for s.calls(sim.EndpointApproveJoin) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("worker A made %d approval calls in 2 minutes, want 3 before it is killed", s.calls(sim.EndpointApproveJoin))
		}
		time.Sleep(time.Millisecond)
	}
	kill()
	chunks := len(ids) / 100
	if n := s.calls(sim.EndpointApproveJoin); n >= chunks {
		t.Fatalf("worker A made all %d calls before it was killed: nothing was left to take over", n)
	}
	s.startWorker(t)

	r := s.terminalWithin(t, "appr-all", 3*time.Minute)
	wantOutcome(t, r, events.OutcomePartiallySucceeded)
	if r.Attempts < 2 {
		t.Fatalf("the command ended after %d attempts, want the takeover's too", r.Attempts)
	}
	checkItems(t, r, events.ItemCounts{Approved: len(ids) - chunks, Failed: chunks}, outcomes)
	// Worker A saved at least two chunks before its third call: sending
	// them again would take two calls more. The chunk A's last call sent
	// may be sent again, if A did not save its answer: the requests it
	// let in are pending no more, the one refused is (nothing says it
	// was refused, and approving it again is harmless).
	if n := s.calls(sim.EndpointApproveJoin); n < chunks || n > chunks+1 {
		t.Fatalf("%d approval calls, want %d, one per chunk of 100, or one more for what was left of the chunk in flight", n, chunks)
	}
	if st, _ := s.sim.Group(g.ID); len(st.Participants) != len(ids)-chunks || len(st.JoinRequests) != chunks {
		t.Fatalf("the group has %d participants and %d join requests, want %d and %d",
			len(st.Participants), len(st.JoinRequests), len(ids)-chunks, chunks)
	}
}

// A command under way while workers were upgraded has its whole progress
// in its ledger entry, as workers before its parts kept it: whom each
// request was for and each saved outcome. A new worker goes on from it,
// as the old one would have: the saved outcome is reported without a
// call, the request an earlier call may have handled unseen is judged
// from the group, and only the requests still pending are sent.
func TestAllPendingGoesOnFromProgressKeptInItsEntry(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	g := s.newGroup(t, "Upgraded", "approval_required")
	users := []string{"15550000601", "15550000602", "15550000603", "15550000604"}
	ids := s.joinRequests(t, g, users...)
	// The old worker's calls: the first request approved and saved, the
	// second approved, its answer lost.
	if _, err := s.graph.ApproveJoinRequests(ctx, g.ID, ids[:2]); err != nil {
		t.Fatal(err)
	}
	type requester struct {
		WAID string `json:"wa_id"`
	}
	progress := map[string]any{
		"requesters": map[string]requester{ids[0]: {users[0]}, ids[1]: {users[1]}, ids[2]: {users[2]}, ids[3]: {users[3]}},
		"done":       map[string]events.ItemOutcome{ids[0]: {ID: ids[0], Outcome: events.ItemApproved}},
	}
	c := command("appr-upgraded", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true})
	body, _ := json.Marshal(c)
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	req := jobs.ClaimRequest{CommandID: c.ID, CommandType: c.Type, PhoneNumberID: c.PhoneNumberID,
		Subject: s.names.Command(phone, c.Type), Command: body, Token: "old/1/1", Lease: time.Minute}
	if status, _, err := ledger.Claim(ctx, req); err != nil || status != jobs.Claimed {
		t.Fatalf("claim: %v %v", status, err)
	}
	if err := ledger.SetProgress(ctx, c.ID, req.Token, progress); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Release(ctx, c.ID, req.Token, jobs.Attempt{At: time.Now(), Outcome: "ambiguous"}); err != nil {
		t.Fatal(err)
	}

	s.startWorker(t)
	s.publishRaw(t, req.Subject, c.ID, body)
	r := s.terminal(t, c.ID)
	wantOutcome(t, r, events.OutcomeSucceeded)
	got := map[string]string{}
	for _, it := range r.Items {
		got[it.ID] = it.Outcome
	}
	for _, id := range ids {
		if got[id] != events.ItemApproved || len(r.Items) != len(ids) {
			t.Fatalf("items %+v, want each of the %d requests approved", r.Items, len(ids))
		}
	}
	if n := s.calls(sim.EndpointApproveJoin); n != 2 {
		t.Fatalf("%d approval calls, want 2: the old worker's and one for the requests still pending", n)
	}
}
