package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// A worker that died between recording a command as awaiting its webhook
// and indexing it for the sweeper left a command nothing would time out.
// The redelivery indexes it again, so the webhook that never comes ends
// it with webhook_timeout.
func TestARedeliveredAwaitingCommandIsIndexedForTheSweeper(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	kv, err := s.js.KeyValue(ctx, s.names.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	ledger := jobs.NewLedger(kv, nil)
	g := s.newGroup(t, "Awaited", "")
	c := command("await-1", events.DeleteGroup, g.ID, nil)
	body, _ := json.Marshal(c)
	req := jobs.ClaimRequest{CommandID: c.ID, CommandType: c.Type, PhoneNumberID: c.PhoneNumberID,
		Subject: s.names.Command(phone, c.Type), Command: body, Token: "dead/1/1", Lease: time.Minute}
	if status, _, err := ledger.Claim(ctx, req); err != nil || status != jobs.Claimed {
		t.Fatalf("claim: %v %v", status, err)
	}
	// The dead worker's last writes: awaiting a webhook that will never
	// come (no call was made), and the index lost.
	if _, err := ledger.Await(ctx, c.ID, req.Token, []jobs.Pending{{RequestID: "never-comes"}}, time.Now().Add(200*time.Millisecond), jobs.Attempt{At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := ledger.Unindex(ctx, c.ID); err != nil {
		t.Fatal(err)
	}

	s.startWorker(t, func(cfg *jobs.Config) {
		cfg.WebhookTimeout, cfg.SweepInterval = 200*time.Millisecond, 50*time.Millisecond
	})
	s.publishRaw(t, req.Subject, "await-1#redelivered", body)
	wantFailure(t, s.terminal(t, "await-1"), events.ReasonWebhookTimeout)
}
