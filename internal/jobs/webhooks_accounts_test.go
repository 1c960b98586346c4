package jobs_test

import (
	"testing"

	"github.com/groupflow/groupflow/internal/events"
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
