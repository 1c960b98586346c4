package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// DESIGN §5: on SIGTERM the worker stops pulling and lets its in-flight
// calls finish within the bound: a call that ends in time completes its
// command on the stopping worker, and a command pulled but not begun is
// handed back, unclaimed, for another worker.
func TestShutdownLetsACallThatEndsInTimeFinish(t *testing.T) {
	t.Parallel()
	s := setup(t)
	slow := &slowGraph{Graph: s.graph, d: 700 * time.Millisecond}
	_, stop := s.startWorker(t, func(c *jobs.Config) {
		c.Graph, c.Concurrency, c.ShutdownTimeout, c.WorkerID = slow, 1, 30*time.Second, "stopping"
	})
	g := s.newGroup(t, "Finished in time", "")
	s.publish(t, command("in-time", events.GetInviteLink, g.ID, nil))
	s.events.WaitFor(t, "the call under way", func() bool { return slow.started.Load() == 1 })
	s.publish(t, command("not-begun", events.GetInviteLink, g.ID, nil))
	stop()

	// Run has returned: the call that was under way finished, and its
	// command with it.
	s.seenEveryEvent(t)
	if rs := s.events.Terminals("in-time"); len(rs) != 1 || rs[0].Outcome != events.OutcomeSucceeded || rs[0].Attempts != 1 {
		t.Fatalf("terminal events of the command in flight: %+v, want it succeeded in one delivery", rs)
	}
	if rs := s.events.Terminals("not-begun"); len(rs) != 0 {
		t.Fatalf("the command not begun ended on the stopping worker: %+v", rs)
	}
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	if e, _, err := ledger.Get(context.Background(), "not-begun"); err == nil && e.Owner != "" || err != nil && !errors.Is(err, jobs.ErrNotFound) {
		t.Fatalf("the command not begun: owner %q, err %v; want no claim", e.Owner, err)
	}
	if n, calls := slow.started.Load(), s.calls(sim.EndpointGetInviteLink); n != 1 || calls != 1 {
		t.Fatalf("%d calls begun, %d made, want the one in flight", n, calls)
	}

	s.startWorker(t, func(c *jobs.Config) { c.WorkerID = "staying" })
	wantOutcome(t, s.terminal(t, "not-begun"), events.OutcomeSucceeded)
}
