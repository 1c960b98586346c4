package jobs

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// A call cut short by shutdown (its context cancelled in the limiter's
// wait, before anything was sent) clears its intent all the same: left
// open, the next delivery would reconcile a call that was never made.
func TestClearIntentWritesWithACancelledContext(t *testing.T) {
	t.Parallel()
	js := embeddedJS(t)
	ctx := context.Background()
	names := events.Names{}
	if err := events.Ensure(ctx, js, events.TopologyConfig{Names: names, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, names.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	ledger := NewLedger(kv, nil)
	cmd := events.Command{ID: "cut-1", Type: events.SendGroupInvite, PhoneNumberID: "106540352242922"}
	body, _ := json.Marshal(cmd)
	req := ClaimRequest{CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID, Command: body, Token: "w/1/1", Lease: time.Minute}
	if status, _, err := ledger.Claim(ctx, req); err != nil || status != Claimed {
		t.Fatalf("claim: %v %v", status, err)
	}
	job := &Job{Command: cmd, token: req.Token, w: &Worker{ledger: ledger, now: time.Now}}
	if err := job.RecordIntent(ctx, events.SendGroupInvite); err != nil {
		t.Fatal(err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := job.ClearIntent(cancelled); err != nil {
		t.Fatalf("ClearIntent after shutdown: %v", err)
	}
	e, _, err := ledger.Get(ctx, cmd.ID)
	if err != nil {
		t.Fatal(err)
	}
	if e.Intent != nil {
		t.Fatalf("intent %+v left open: the next delivery would reconcile a send never made", e.Intent)
	}
}
