package query_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/testutil"
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

const phone = "106540352242922"

// bundle is a running query service over embedded JetStream and the Graph
// simulator, with the limiter and ledger a worker would give it.
type bundle struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	names   events.Names
	sim     *sim.Server
	graph   *graph.Client
	limiter *ratelimit.Limiter
	ledger  *jobs.Ledger
	svc     *query.Service
}

type options struct {
	cfg    func(*query.Config)
	limits ratelimit.Limits
	noSvc  bool
}

func setup(tb testing.TB, opts ...func(*options)) *bundle {
	tb.Helper()
	o := options{limits: ratelimit.Limits{Reads: 1000}}
	for _, f := range opts {
		f(&o)
	}
	ctx := context.Background()
	srv := natsembed.RunTest(tb)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	names := events.Names{}
	if err := events.Ensure(ctx, js, events.TopologyConfig{Names: names, Storage: jetstream.MemoryStorage}); err != nil {
		tb.Fatalf("ensure topology: %v", err)
	}

	s := sim.New(sim.Config{WebhookDelay: time.Millisecond, GroupOpsPerSecond: -1, MPS: -1, PairInterval: -1})
	hs := httptest.NewServer(s)
	tb.Cleanup(func() { hs.Close(); s.Close() })
	gc, err := graph.New(graph.Config{BaseURL: hs.URL, AccessToken: sim.DefaultAccessToken, Timeout: 5 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}

	lim, err := ratelimit.New(ratelimit.Config{
		Workers: kv(tb, js, names.WorkersBucket()), Throttle: kv(tb, js, names.ThrottleBucket()),
		Defaults: o.limits, MaxWait: 50 * time.Millisecond, Logger: discard(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = lim.Run(runCtx) }()
	tb.Cleanup(func() { cancel(); <-done })
	eventually(tb, func() bool { return lim.LiveWorkers() == 1 && lim.Rate(phone, ratelimit.Reads) > 0 }, "limiter never got a share")

	b := &bundle{nc: nc, js: js, names: names, sim: s, graph: gc, limiter: lim, ledger: jobs.NewLedger(kv(tb, js, names.LedgerBucket()), nil)}
	if !o.noSvc {
		b.svc = b.start(tb, o.cfg)
	}
	return b
}

// start runs a query service (on a connection of its own, like a worker)
// until the test ends.
func (b *bundle) start(tb testing.TB, mutate func(*query.Config)) *query.Service {
	tb.Helper()
	nc, err := nats.Connect(b.nc.ConnectedUrl())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	cfg := query.Config{Conn: nc, JS: js, Names: b.names, Graph: b.graph, Limiter: b.limiter, Ledger: b.ledger, Logger: discard()}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := query.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if err := svc.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := svc.Stop(context.Background()); err != nil {
			tb.Errorf("Stop: %v", err)
		}
	})
	return svc
}

func kv(tb testing.TB, js jetstream.JetStream, name string) jetstream.KeyValue {
	tb.Helper()
	b, err := js.KeyValue(context.Background(), name)
	if err != nil {
		tb.Fatalf("bucket %s: %v", name, err)
	}
	return b
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// eventually polls cond while state propagates; it asserts no speed.
func eventually(tb testing.TB, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf(format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ask sends a query and returns the reply message.
func (b *bundle) ask(tb testing.TB, name, phoneID string, req any) *nats.Msg {
	tb.Helper()
	var data []byte
	switch r := req.(type) {
	case nil:
	case string:
		data = []byte(r)
	default:
		var err error
		if data, err = json.Marshal(r); err != nil {
			tb.Fatal(err)
		}
	}
	msg, err := b.nc.Request(b.names.Query(phoneID, name), data, 10*time.Second)
	if err != nil {
		tb.Fatalf("request %s: %v", name, err)
	}
	return msg
}

// askOK sends a query that must succeed and decodes its reply into v.
func (b *bundle) askOK(tb testing.TB, name string, req, v any) *nats.Msg {
	tb.Helper()
	msg := b.ask(tb, name, phone, req)
	if qe := query.ReplyError(msg); qe != nil {
		tb.Fatalf("%s: want a reply, got error %d %q", name, qe.Code, qe.Message)
	}
	checkSchema(tb, "query."+name+".reply.json", msg.Data)
	if v != nil {
		if err := json.Unmarshal(msg.Data, v); err != nil {
			tb.Fatalf("%s: reply %s: %v", name, msg.Data, err)
		}
	}
	return msg
}

// askErr sends a query that must fail with code.
func (b *bundle) askErr(tb testing.TB, name, phoneID string, req any, code int) *query.Error {
	tb.Helper()
	msg := b.ask(tb, name, phoneID, req)
	qe := query.ReplyError(msg)
	if qe == nil {
		tb.Fatalf("%s: want error %d, got reply %s", name, code, msg.Data)
	}
	if qe.Code != code || msg.Header.Get("Nats-Service-Error-Code") != fmt.Sprint(code) {
		tb.Fatalf("%s: want code %d, got body code %d header %q (%s)", name, code, qe.Code, msg.Header.Get("Nats-Service-Error-Code"), qe.Message)
	}
	if msg.Header.Get("Nats-Service-Error") == "" {
		tb.Errorf("%s: no Nats-Service-Error header", name)
	}
	checkSchema(tb, "query.error.json", msg.Data)
	return qe
}

// graphCalls counts the simulator's calls of one endpoint.
func (b *bundle) graphCalls(endpoint string) int {
	n := 0
	for _, c := range b.sim.Calls() {
		if c.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// createGroup creates a group through the Graph API and returns the
// simulator's view of it. The group is recorded as the number's, as a
// worker records it from its group_create webhook: reads about it make no
// listing of the number's groups (see createUnknownGroup).
func (b *bundle) createGroup(tb testing.TB, subject, description, mode string) sim.GroupState {
	tb.Helper()
	g := b.createUnknownGroup(tb, subject, description, mode)
	b.knownAs(tb, g.ID, phone)
	return g
}

// createUnknownGroup creates a group that groupflow has not heard of.
func (b *bundle) createUnknownGroup(tb testing.TB, subject, description, mode string) sim.GroupState {
	tb.Helper()
	if _, err := b.graph.CreateGroup(context.Background(), phone, graph.CreateGroupRequest{Subject: subject, Description: description, JoinApprovalMode: mode}); err != nil {
		tb.Fatalf("create group: %v", err)
	}
	for _, n := range b.sim.State().Numbers {
		for _, g := range n.Groups {
			if n.PhoneNumberID == phone && g.Subject == subject {
				return g
			}
		}
	}
	tb.Fatalf("group %q not in the simulator", subject)
	return sim.GroupState{}
}

// knownAs records groupID as number's group, as a worker does from the
// group's webhooks.
func (b *bundle) knownAs(tb testing.TB, groupID, number string) {
	tb.Helper()
	if err := jobs.NewOwners(kv(tb, b.js, b.names.OwnerBucket())).Learn(context.Background(), groupID, number); err != nil {
		tb.Fatal(err)
	}
}

func (b *bundle) group(tb testing.TB, id string) sim.GroupState {
	tb.Helper()
	g, ok := b.sim.Group(id)
	if !ok {
		tb.Fatalf("group %s not in the simulator", id)
	}
	return g
}

// join makes waID a participant (or a requester, for approval groups).
func (b *bundle) join(tb testing.TB, g sim.GroupState, waID string) sim.JoinResult {
	tb.Helper()
	r, err := b.sim.Join(waID, g.InviteLink)
	if err != nil {
		tb.Fatalf("join %s: %v", waID, err)
	}
	return r
}

// checkSchema validates data against one of the events package's schemas,
// so replies cannot drift from the documented contract.
func checkSchema(tb testing.TB, name string, data []byte) {
	tb.Helper()
	if err := testutil.ValidateSchema(tb, name, data); err != nil {
		tb.Errorf("reply does not match %s: %v\n%s", name, err, data)
	}
}
