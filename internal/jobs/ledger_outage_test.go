package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

// While the ledger refuses writes for longer than a command's deliveries
// last, the command cannot be claimed: it is handed back and, before its
// last delivery, re-queued as a fresh copy. Once the ledger is back it
// runs. Before, it used up its deliveries, and the dead-letter path, which
// needs the ledger too, failed: no terminal event, no DLQ entry, ever.
func TestACommandOutlastsALedgerOutage(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) { o.maxDeliv = 3 })
	s.startWorker(t)
	g := s.newGroup(t, "Ledger outage", "")
	ctx := context.Background()
	kv, err := s.js.KeyValue(ctx, s.names.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "filler", []byte("{}")); err != nil { // refuseWrites caps at what it holds
		t.Fatal(err)
	}
	restore := s.refuseWrites(t, "KV_"+s.names.LedgerBucket())
	s.publish(t, command("outage-1", events.GetInviteLink, g.ID, nil))
	// Three deliveries a second or more apart: longer than the consumer
	// allows the message.
	time.Sleep(4 * time.Second)
	restore()
	wantOutcome(t, s.terminal(t, "outage-1"), events.OutcomeSucceeded)
	if n := len(s.events.Terminals("outage-1")); n != 1 {
		t.Fatalf("%d terminal events, want 1", n)
	}
}
