package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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
	"github.com/groupflow/groupflow/internal/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The command stream's source of the parked stream: the server
		// waits for its consumer's answer in a goroutine that a shutdown
		// does not end, for up to 30 s.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"),
		// The embedded server's and the HTTP transport's background
		// goroutines outlive single tests by design.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	)
}

const phone = "106540352242922"

// bundle is a JetStream server with the groupflow topology, and a way to
// run groupctl against it.
type bundle struct {
	url   string
	nc    *nats.Conn
	js    jetstream.JetStream
	names events.Names
}

func setupNATS(t testing.TB, topo ...events.TopologyConfig) bundle {
	t.Helper()
	srv := natsembed.RunTest(t)
	b := connect(t, srv.ClientURL())
	cfg := events.TopologyConfig{MaxDeliver: 3, AckWait: 2 * time.Second, Storage: jetstream.MemoryStorage}
	if len(topo) > 0 {
		cfg = topo[0]
	}
	cfg.Names = b.names
	if err := events.Ensure(context.Background(), b.js, cfg); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	return b
}

func connect(t testing.TB, url string) bundle {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return bundle{url: url, nc: nc, js: js}
}

// result is one groupctl run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// groupctl runs the CLI in-process against the bundle's server.
func (b bundle) groupctl(t testing.TB, args ...string) result {
	t.Helper()
	return b.groupctlIn(t, "", args...)
}

func (b bundle) groupctlIn(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	env := map[string]string{"NATS_URL": b.url}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (b bundle) kv(t testing.TB, name string) jetstream.KeyValue {
	t.Helper()
	kv, err := b.js.KeyValue(context.Background(), name)
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	return kv
}

// wantCode fails the test unless r ended with code.
func wantCode(t testing.TB, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %s", code, r)
	}
}

func wantContains(t testing.TB, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Fatalf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

// eventually polls cond until it holds; the deadline only stops a hung
// test, it asserts nothing about speed.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stack is the real path of a command: JetStream, a worker with a rate
// limiter, the query service, the simulator over HTTP, and its webhooks
// coming back through the webhook handler.
type stack struct {
	bundle
	sim     *sim.Server
	simURL  string
	graph   *graph.Client
	limiter *ratelimit.Limiter
}

type stackOpts struct {
	faults          sim.Faults
	retryMaxElapsed time.Duration
}

func setupStack(t testing.TB, opts ...func(*stackOpts)) *stack {
	t.Helper()
	var o stackOpts
	for _, f := range opts {
		f(&o)
	}
	b := setupNATS(t)
	hooks := httptest.NewServer(&webhook.Handler{
		AppSecret: []byte(sim.DefaultAppSecret),
		Publisher: webhook.JetStreamPublisher{JS: b.js, Names: b.names},
		Logger:    slog.New(slog.DiscardHandler),
	})
	t.Cleanup(hooks.Close)
	s := sim.New(sim.Config{WebhookURL: hooks.URL, WebhookDelay: 5 * time.Millisecond, GroupOpsPerSecond: -1, MPS: -1,
		PairInterval: -1, WebhookRetryBackoff: 10 * time.Millisecond, Faults: o.faults, Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	gc, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{bundle: b, sim: s, simURL: srv.URL, graph: gc}
	st.limiter = startLimiter(t, b, "worker-test")

	w, err := jobs.New(context.Background(), jobs.Config{
		JS: b.js, Names: b.names, Graph: gc, Limiter: st.limiter, WorkerID: "worker-test", Concurrency: 4,
		WebhookTimeout: time.Minute, ShutdownTimeout: 2 * time.Second, RetryMaxElapsed: o.retryMaxElapsed,
		NakDelay: func(uint64) time.Duration { return 20 * time.Millisecond },
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	runActor(t, "worker", w.Run)

	svc, err := query.New(query.Config{Conn: b.nc, JS: b.js, Names: b.names, Graph: gc, Limiter: st.limiter,
		Ledger: jobs.NewLedger(b.kv(t, b.names.LedgerBucket()), nil), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Started before the test goes on, so a query finds it.
	if err := svc.Start(context.Background()); err != nil {
		t.Fatalf("start query service: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Stop(ctx); err != nil {
			t.Errorf("stop query service: %v", err)
		}
	})
	return st
}

// startLimiter runs a rate limiter, which heartbeats the worker into the
// workers bucket, until the test ends.
func startLimiter(t testing.TB, b bundle, id string) *ratelimit.Limiter {
	t.Helper()
	lim, err := ratelimit.New(ratelimit.Config{
		Workers: b.kv(t, b.names.WorkersBucket()), Throttle: b.kv(t, b.names.ThrottleBucket()), WorkerID: id,
		Defaults: ratelimit.Limits{Messages: 1000, GroupOps: 1000, Reads: 1000}, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	runActor(t, "rate limiter", lim.Run)
	return lim
}

// runActor runs fn until the test ends and fails the test if it returns
// an error.
func runActor(t testing.TB, name string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	})
}

// createGroup creates a group through groupctl and returns its id.
func (s *stack) createGroup(t testing.TB, id, subject string, extra ...string) events.CreateGroupResult {
	t.Helper()
	args := append([]string{"submit", "create_group", "--phone", phone, "--id", id, "--subject", subject, "--wait", "--json"}, extra...)
	r := s.groupctl(t, args...)
	wantCode(t, r, 0)
	res := terminalOf(t, r.stdout)
	var cg events.CreateGroupResult
	if err := json.Unmarshal(res.Result, &cg); err != nil || cg.GroupID == "" {
		t.Fatalf("create_group result %s: want a group id (%v)", res.Result, err)
	}
	return cg
}

// terminalOf decodes the CloudEvent `submit --wait --json` prints.
func terminalOf(t testing.TB, stdout string) *events.CommandResult {
	t.Helper()
	e, err := events.Unmarshal([]byte(strings.TrimSpace(stdout)))
	if err != nil {
		t.Fatalf("stdout is not one CloudEvent: %v\n%s", err, stdout)
	}
	d, err := events.DataOf(e)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := d.(*events.CommandResult)
	if !ok {
		t.Fatalf("event %s is not a terminal event", e.Type())
	}
	return r
}

// simJoin makes a simulated user open an invite link.
func (s *stack) simJoin(t testing.TB, waID, link string) sim.JoinResult {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"invite_link": link})
	resp, err := http.Post(s.simURL+"/_sim/users/"+waID+"/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var jr sim.JoinResult
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &jr) != nil {
		t.Fatalf("join %s: %s %s", waID, resp.Status, b)
	}
	return jr
}
