package jobs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// slowGraph takes d before each invite link read; started counts them.
type slowGraph struct {
	jobs.Graph
	d       time.Duration
	started atomic.Int32
}

func (g *slowGraph) InviteLink(ctx context.Context, groupID string) (string, error) {
	g.started.Add(1)
	select {
	case <-time.After(g.d):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	return g.Graph.InviteLink(ctx, groupID)
}

// A call slower than the consumer's AckWait keeps its delivery alive
// (InProgress) and its claim: the server does not hand the command to
// another worker meanwhile, and the call is made once.
func TestACallSlowerThanAckWaitIsNotRedelivered(t *testing.T) {
	t.Parallel()
	// Beats come every AckWait/3: 2 s leaves each one more than a second
	// of slack on a loaded machine.
	const ackWait = 2 * time.Second
	s := setup(t, func(o *stackOpts) { o.ackWait = ackWait })
	g := s.newGroup(t, "Slow", "")
	for _, id := range []string{"slow-a", "slow-b"} { // the second is free to take a redelivery
		s.startWorker(t, func(c *jobs.Config) { c.Graph, c.WorkerID = &slowGraph{Graph: s.graph, d: 5 * ackWait / 2}, id })
	}
	s.publish(t, command("slow-1", events.GetInviteLink, g.ID, nil))
	r := s.terminal(t, "slow-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	cons, err := s.js.Consumer(context.Background(), s.names.CommandStream(), s.names.CommandConsumer())
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The consumer's sequence counts every delivery, redeliveries too.
	if n := s.calls(sim.EndpointGetInviteLink); n != 1 || r.Attempts != 1 || info.Delivered.Consumer != 1 {
		t.Fatalf("%d calls, %d attempts, %d deliveries; want 1 call in 1 delivery", n, r.Attempts, info.Delivered.Consumer)
	}
}
