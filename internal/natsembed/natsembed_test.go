package natsembed_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The nats-server keeps a few process-wide goroutines after shutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return js
}

func TestServerKeepsDataAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := natsembed.Start(natsembed.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	js := connect(t, s.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("one")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	s.Shutdown()

	s2, err := natsembed.Start(s.Options())
	if err != nil {
		t.Fatalf("restart on the same store: %v", err)
	}
	t.Cleanup(s2.Shutdown)
	if got, want := s2.ClientURL(), s.ClientURL(); got != want {
		t.Fatalf("restarted server listens on %s, want %s", got, want)
	}
	js2 := connect(t, s2.ClientURL())
	stream, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatalf("stream is gone after the restart: %v", err)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("message published before the restart is gone: %v", err)
	}
	if string(msg.Data) != "one" {
		t.Fatalf("message data = %q, want %q", msg.Data, "one")
	}
}

func TestClusterSurvivesLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	// Liveness bounds, not speed checks: a loaded machine (other race-
	// enabled test binaries) slows elections and catch-up a lot.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := natsembed.RunTestCluster(t, 3)
	if got := len(c.Leader().JetStreamClusterPeers()); got != 3 {
		t.Fatalf("leader sees %d peers, want 3", got)
	}
	js := connect(t, c.ClientURL())
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatalf("create R3 stream: %v", err)
	}
	if _, err := js.Publish(ctx, "r3.a", []byte("before")); err != nil {
		t.Fatalf("publish: %v", err)
	}

	streamLeader := -1
	for i, s := range c.Servers {
		if s.JetStreamIsStreamLeader("$G", "R3") {
			streamLeader = i
		}
	}
	if streamLeader < 0 {
		t.Fatal("no server leads stream R3")
	}
	c.Servers[streamLeader].Shutdown()

	// A new stream leader is elected and the message published before is still there.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// Each attempt on its own short clock: a publish sent while no
		// leader answers waits for its ack until its context ends.
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(pctx, "r3.b", []byte("after"), jetstream.WithMsgID("after")) // a retry of a stored publish is dropped
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish succeeded after the stream leader died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	info, err := js.Stream(ctx, "R3")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("stream holds %d messages after leader loss, want 2", n)
	}
	if err := c.Restart(streamLeader); err != nil {
		t.Fatalf("restart the killed server: %v", err)
	}
	if err := c.WaitReady(2 * time.Minute); err != nil {
		t.Fatal(err)
	}
}

func TestMaxPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		set  int32
		want int64
	}{
		{"left out it is what deploy/nats sets", 0, 8 << 20},
		{"set it is what a server takes", 1 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := natsembed.RunTestWith(t, natsembed.Options{MaxPayload: tc.set})
			js := connect(t, s.ClientURL())
			if got := js.Conn().MaxPayload(); got != tc.want {
				t.Errorf("max payload %d, want %d", got, tc.want)
			}
		})
	}
}
