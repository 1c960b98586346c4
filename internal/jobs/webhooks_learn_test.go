package jobs_test

import (
	"encoding/json"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Every webhook names its account and number: the worker learns from them
// which account each number belongs to, so that an account's throttle
// (80007) pauses only its own numbers.
func TestWebhooksTeachTheWorkerEachNumbersAccount(t *testing.T) {
	t.Parallel()
	s := setup(t)
	acc := ratelimit.NewAccounts(nil)
	s.startWorker(t, func(c *jobs.Config) { c.Accounts = acc })
	if got := acc.Of(phone); got != "" {
		t.Fatalf("account of %s before any webhook: %q", phone, got)
	}
	// create_group completes by its webhook, so the webhook was handled
	// by the time the command is done.
	s.publish(t, command("accounts-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Accounts"}))
	wantOutcome(t, s.terminal(t, "accounts-1"), events.OutcomeSucceeded)
	if got := acc.Of(phone); got != sim.DefaultWABAID {
		t.Fatalf("account of %s after its webhook: %q, want %s", phone, got, sim.DefaultWABAID)
	}
}

// The join an approval lets in names the approve_join_requests command in
// group.participants_joined.
func TestAJoinNamesTheApprovalThatLetItIn(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "Approved door", graph.JoinApprovalRequired)
	ids := s.joinRequests(t, g, "15550000601")
	s.publish(t, command("let-in-1", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
	wantOutcome(t, s.terminal(t, "let-in-1"), events.OutcomeSucceeded)

	joined := func() []events.ParticipantsJoined {
		var out []events.ParticipantsJoined
		for _, e := range s.events.OfType(events.EventGroupParticipantsJoined) {
			var d events.ParticipantsJoined
			if json.Unmarshal(e.Data, &d) == nil && d.GroupID == g.ID {
				out = append(out, d)
			}
		}
		return out
	}
	s.events.WaitFor(t, "the approved join", func() bool { return len(joined()) == 1 })
	if got := joined()[0]; got.CommandID != "let-in-1" || len(got.Participants) != 1 || got.Participants[0].WAID != "15550000601" {
		t.Fatalf("participants_joined = %+v, want 15550000601 let in by let-in-1", got)
	}

	// Reported, the approval is forgotten: a later join of the same user
	// (through the link, after leaving) is nobody's command.
	kv, err := s.js.KeyValue(t.Context(), s.names.CorrelationBucket())
	if err != nil {
		t.Fatal(err)
	}
	s.events.WaitFor(t, "the approval forgotten", func() bool {
		keys, err := kv.ListKeysFiltered(t.Context(), "join.>")
		if err != nil {
			return false
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n == 0
	})
}
