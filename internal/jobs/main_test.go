package jobs_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The command stream's source of the parked stream: the server
		// waits for its consumer's answer in a goroutine that a shutdown
		// does not end, for up to 30 s.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"),
		// The embedded server's and the HTTP transport's background goroutines
		// outlive single tests by design; they stop with the process.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

// natsBundle is a JetStream with the groupflow topology in place.
type natsBundle struct {
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	names events.Names
}

func setupNATS(t testing.TB, cfgs ...events.TopologyConfig) natsBundle {
	t.Helper()
	return setupNATSOn(t, natsembed.RunTest(t), cfgs...)
}

// setupNATSOn is setupNATS on a server the test started.
func setupNATSOn(t testing.TB, srv *natsembed.Server, cfgs ...events.TopologyConfig) natsBundle {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := events.Names{}
	cfg := events.TopologyConfig{MaxDeliver: 4}
	if len(cfgs) > 0 {
		cfg = cfgs[0]
	}
	cfg.Names = names
	if err := events.Ensure(context.Background(), js, cfg); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return natsBundle{url: srv.ClientURL(), nc: nc, js: js, names: names}
}

func (b natsBundle) kv(t testing.TB, name string) jetstream.KeyValue {
	t.Helper()
	kv, err := b.js.KeyValue(context.Background(), name)
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	return kv
}
