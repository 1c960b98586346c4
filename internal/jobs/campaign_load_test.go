package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/natsembed"
)

// A holder whose load fails part-way (NATS gone, the worker stopping)
// must not leave half-read chunks behind: release would checkpoint them
// and dereference the chunks it never read.
func TestFanoutLoadFailureLeavesNothingLoaded(t *testing.T) {
	t.Parallel()
	js := embeddedJS(t)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "load_test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, campaignChunkKey("c1", 0), []byte(`{"done":"","sent":1}`)); err != nil {
		t.Fatal(err)
	}
	f := &fanout{c: &campaigns{kv: kv}, w: &Worker{now: time.Now}, st: campaignState{CampaignID: "c1", Total: 3 * campaignChunkSize, State: campaignRunning}}

	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.load(stopped); err == nil {
		t.Fatal("load with a cancelled context succeeded")
	}
	if f.chunks != nil || f.sent != 0 {
		t.Fatalf("after a failed load: %d chunks, sent %d; want nothing loaded", len(f.chunks), f.sent)
	}
	f.release(ctx) // panicked on the nil chunks of a half-done load

	if err := f.load(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.chunks) != 3 || f.sent != 1 {
		t.Fatalf("after a load: %d chunks, sent %d; want 3 and 1", len(f.chunks), f.sent)
	}
}

// embeddedJS is a JetStream handle on a real in-process server of the
// test's own.
func embeddedJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	srv := natsembed.RunTest(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}
