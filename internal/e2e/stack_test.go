package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
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
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

const phone = "106540352242922"

// secrets are what must never leak. The defaults are distinctive enough
// that a substring search finds any copy of them.
type secrets struct {
	AccessToken string
	AppSecret   string
	APIToken    string
	VerifyToken string
}

var defaultSecrets = secrets{
	AccessToken: "EAAG-e2e-ACCESS-TOKEN-7f3a9c2e51d8",
	AppSecret:   "e2e-APP-SECRET-4b8d1f6a93c0",
	APIToken:    "gf-e2e-API-TOKEN-2c7e5a9b1d34",
	VerifyToken: "e2e-VERIFY-TOKEN-8a1c3e5f7b92",
}

type stackOpts struct {
	secrets secrets
	// limiter runs a ratelimit.Limiter in front of the Graph calls (its
	// first share comes about a second after it starts).
	limiter bool
	// limits are the limiter's defaults (zero fields: ratelimit's).
	limits ratelimit.Limits
	// maxDeliver of the command consumer.
	maxDeliver int
	// tracing off: no span exporter (the benchmark's baseline).
	noTracing bool
	// spanExporter replaces the in-memory exporter.
	spanExporter sdktrace.SpanExporter
	sim          sim.Config
	concurrency  int
	// bench: logs go nowhere (through the same handler) and events are
	// not collected, so the process does only what a worker does.
	bench bool
	// moreTokens are INGEST_API_TOKENS entries beside secrets.APIToken
	// (a token limited to phone numbers: "<token>@<id>+<id>").
	moreTokens []string
}

// stack is groupflow as deployed, in one process: the ingest handler
// (its own Telemetry, as its own process would have), a worker (another
// Telemetry), JetStream, and the simulator calling back the ingest's
// /webhook. Every span goes to one in-memory exporter, every log line of
// all three to logs.
type stack struct {
	t         testing.TB
	opts      stackOpts
	nc        *nats.Conn
	natsURL   string
	js        jetstream.JetStream
	names     events.Names
	spans     *tracetest.InMemoryExporter
	ingestTel *telemetry.Telemetry
	workerTel *telemetry.Telemetry
	logs      *testutil.SyncBuffer
	log       *slog.Logger
	sim       *sim.Server
	simURL    string
	ingestURL string
	gate      *gate
	ledger    *jobs.Ledger
	events    *testutil.EventLog
	client    *http.Client
	transport *http.Transport
}

func setup(t testing.TB, mutate ...func(*stackOpts)) *stack {
	t.Helper()
	o := stackOpts{
		secrets:    defaultSecrets,
		maxDeliver: 4,
		sim: sim.Config{WebhookDelay: time.Millisecond, GroupOpsPerSecond: -1, MPS: -1, PairInterval: -1,
			WebhookRetryBackoff: 10 * time.Millisecond},
		concurrency: 4,
	}
	for _, f := range mutate {
		f(&o)
	}
	s := &stack{t: t, opts: o, logs: &testutil.SyncBuffer{}, names: events.Names{}}
	s.log = slog.New(telemetry.NewLogHandler(s.logs, slog.LevelDebug))
	if o.bench {
		s.log = slog.New(telemetry.NewLogHandler(io.Discard, slog.LevelInfo))
	}

	srv := natsembed.RunTest(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	s.nc, s.natsURL = nc, srv.ClientURL()
	if s.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(context.Background(), s.js, events.TopologyConfig{
		Names: s.names, AckWait: 5 * time.Second, MaxDeliver: o.maxDeliver, Storage: jetstream.MemoryStorage,
	}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	ledgerKV, err := s.js.KeyValue(context.Background(), s.names.LedgerBucket())
	if err != nil {
		t.Fatal(err)
	}
	s.ledger = jobs.NewLedger(ledgerKV, nil)

	s.spans = tracetest.NewInMemoryExporter()
	exporter := sdktrace.SpanExporter(s.spans)
	switch {
	case o.noTracing:
		exporter = nil
	case o.spanExporter != nil:
		exporter = o.spanExporter
	}
	s.ingestTel = newTelemetry(t, "groupflow-ingest", telemetry.ComponentIngest, exporter)
	s.workerTel = newTelemetry(t, "groupflow-worker", telemetry.ComponentWorker, exporter)

	// The ingest, as cmd/ingest wires it.
	handler, err := ingest.New(ingest.Config{
		Conn: nc, JS: s.js, Names: s.names, APITokens: append([]string{o.secrets.APIToken}, o.moreTokens...),
		Logger: s.log, Telemetry: s.ingestTel, Ledger: ingest.JobsLedger(s.ledger),
		Webhook: &webhook.Handler{
			AppSecret: []byte(o.secrets.AppSecret), VerifyToken: o.secrets.VerifyToken,
			Publisher: &webhook.JetStreamPublisher{JS: s.js, Names: s.names,
				Tracer: s.ingestTel.Tracer("github.com/groupflow/groupflow/internal/webhook")},
			Logger: s.log, Metrics: s.ingestTel.Metrics(),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ingestSrv := httptest.NewServer(handler)
	t.Cleanup(ingestSrv.Close)
	s.ingestURL = ingestSrv.URL
	s.gate = newGate(handler)
	gateSrv := httptest.NewServer(s.gate)
	t.Cleanup(gateSrv.Close)
	t.Cleanup(s.gate.release) // a held webhook must not block the servers' Close

	// The simulator, posting its webhooks to the ingest through the gate.
	simCfg := o.sim
	simCfg.AccessToken, simCfg.AppSecret = o.secrets.AccessToken, o.secrets.AppSecret
	simCfg.WebhookURL = gateSrv.URL + "/webhook"
	simCfg.Logger = s.log.With(slog.String("component", "sim"))
	s.sim = sim.New(simCfg)
	simSrv := httptest.NewServer(s.sim)
	t.Cleanup(func() { simSrv.Close(); s.sim.Close() })
	s.simURL = simSrv.URL

	s.transport = &http.Transport{}
	t.Cleanup(s.transport.CloseIdleConnections)
	s.client = &http.Client{Transport: s.transport, Timeout: 10 * time.Second}
	s.events = &testutil.EventLog{}
	if !o.bench {
		s.events = testutil.WatchEvents(t, s.js, s.names.EventStream())
	}
	return s
}

func newTelemetry(t testing.TB, service string, component telemetry.Component, exp sdktrace.SpanExporter) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{
		ServiceName: service, ServiceVersion: "e2e", Getenv: func(string) string { return "" }, Component: component,
		SpanExporter: exp, Sampler: sdktrace.AlwaysSample(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

// workerOpts tweak one worker.
type workerOpts struct {
	graphURL string // defaults to the stack's simulator
	// accessToken defaults to the one the simulator takes.
	accessToken string
	cfg         func(*jobs.Config)
}

// startWorker runs a worker wired as cmd/worker wires it (traced Graph
// transport, OnResponse metrics, limiter wait metrics, DLQ, lag, parked and
// access-token observers) until the test ends or stop is called.
func (s *stack) startWorker(t testing.TB, wo workerOpts) (stop func()) {
	t.Helper()
	tel, metrics := s.workerTel, s.workerTel.Metrics()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	graphURL := wo.graphURL
	if graphURL == "" {
		graphURL = s.simURL
	}
	gc, err := graph.New(graph.Config{
		BaseURL: graphURL, AccessToken: cmp.Or(wo.accessToken, s.opts.secrets.AccessToken), Timeout: 5 * time.Second,
		HTTPClient: &http.Client{Transport: tel.HTTPTransport(tr)},
		OnResponse: func(endpoint string, status, code int, d time.Duration) {
			metrics.GraphCall(context.Background(), endpoint, status, code, d)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A connection of its own, as a worker process has: a stopped
	// worker's pending pulls die with it instead of swallowing messages
	// meant for the next one.
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cfg := jobs.Config{
		JS: js, Names: s.names, Graph: gc, Concurrency: s.opts.concurrency,
		WebhookTimeout: time.Minute, ShutdownTimeout: 2 * time.Second, RetryMaxElapsed: 200 * time.Millisecond,
		NakDelay: func(uint64) time.Duration { return 20 * time.Millisecond },
		Tracer:   tel.Tracer("github.com/groupflow/groupflow/internal/jobs"), Metrics: metrics, Logger: s.log,
	}
	readsKV, err := js.KeyValue(ctx, s.names.ReadsBucket())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Reads = query.NewInvalidator(readsKV) // as cmd/worker
	var limiterStop func()
	if s.opts.limiter {
		workersKV, err := js.KeyValue(ctx, s.names.WorkersBucket())
		if err != nil {
			t.Fatal(err)
		}
		throttleKV, err := js.KeyValue(ctx, s.names.ThrottleBucket())
		if err != nil {
			t.Fatal(err)
		}
		lim, err := ratelimit.New(ratelimit.Config{
			Workers: workersKV, Throttle: throttleKV, Logger: s.log, MaxWait: 5 * time.Second, Defaults: s.opts.limits,
			MaxQueue: max(1, s.opts.concurrency/2), // as cmd/worker
			OnWait: func(ctx context.Context, class ratelimit.Class, outcome string, d time.Duration) {
				metrics.RateLimitWait(ctx, class.String(), outcome, d)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		limCtx, limCancel := context.WithCancel(context.Background())
		wg.Go(func() {
			if err := lim.Run(limCtx); err != nil {
				t.Errorf("limiter Run: %v", err)
			}
		})
		limiterStop = limCancel
		cfg.Limiter = lim
	}
	if wo.cfg != nil {
		wo.cfg(&cfg)
	}
	w, err := jobs.New(ctx, cfg)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	dlqObs, err := metrics.ObserveDLQ(jobs.DLQDepth(js, s.names))
	if err != nil {
		t.Fatal(err)
	}
	lagObs, err := metrics.ObserveConsumers(jobs.ConsumerLag(js, s.names))
	if err != nil {
		t.Fatal(err)
	}
	parkedObs, err := metrics.ObserveParked(jobs.ParkedCommands(js, s.names))
	if err != nil {
		t.Fatal(err)
	}
	tokenObs, err := metrics.ObserveAccessToken(w.CredentialsRefused)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
			if limiterStop != nil {
				limiterStop()
			}
			wg.Wait()
			_ = dlqObs.Unregister()
			_ = lagObs.Unregister()
			_ = parkedObs.Unregister()
			_ = tokenObs.Unregister()
			_ = nc.Flush() // events published while stopping leave first
			nc.Close()
			tr.CloseIdleConnections()
		})
	}
	t.Cleanup(stop)
	return stop
}

// post sends a command to the ingest's API with the stack's API token
// (token "" sends none) and returns the status and body.
func (s *stack) post(t testing.TB, cmd events.Command, token string, header ...string) (int, []byte) {
	t.Helper()
	body, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, s.ingestURL+"/v1/commands", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return s.do(t, req)
}

func (s *stack) do(t testing.TB, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func command(id, typ, group string, params any) events.Command {
	c := events.Command{ID: id, Type: typ, PhoneNumberID: phone, GroupID: group}
	if params != nil {
		c.Params, _ = json.Marshal(params)
	}
	return c
}

// flush exports every span ended so far and returns them all.
func (s *stack) flush(t testing.TB) tracetest.SpanStubs {
	t.Helper()
	for _, tel := range []*telemetry.Telemetry{s.ingestTel, s.workerTel} {
		if err := tel.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return s.spans.GetSpans()
}

// awaitState waits until the ledger has the command in state. A guard
// against hangs, not a timing assertion.
func (s *stack) awaitState(t testing.TB, id string, state jobs.State) jobs.Entry {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		e, _, err := s.ledger.Get(context.Background(), id)
		if err == nil && e.State == state {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s never reached state %s (last: %+v, %v)", id, state, e.State, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// awaitSettled waits until the worker has settled every command and
// webhook item it was given: none undelivered or unacknowledged on either
// consumer. A message is acknowledged after all its work, so whatever it
// writes is written by then.
func (s *stack) awaitSettled(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	s.events.WaitFor(t, "every command and webhook item settled", func() bool {
		for stream, name := range map[string]string{s.names.CommandStream(): s.names.CommandConsumer(), s.names.WebhookStream(): s.names.WebhookConsumer()} {
			c, err := s.js.Consumer(ctx, stream, name)
			if err != nil {
				t.Fatal(err)
			}
			info, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.NumPending > 0 || info.NumAckPending > 0 {
				return false
			}
		}
		return true
	})
}

// awaitLinked waits until command id awaits its webhooks and the worker
// has linked each of its requests to it: a webhook let through then
// completes the command itself. The ledger says awaiting a step before the
// links are made, and a webhook that comes in between is left for the
// worker to apply ("uncorrelated").
func (s *stack) awaitLinked(t testing.TB, id string) jobs.Entry {
	t.Helper()
	entry := s.awaitState(t, id, jobs.StateAwaitingWebhook)
	kv, err := s.js.KeyValue(context.Background(), s.names.CorrelationBucket())
	if err != nil {
		t.Fatal(err)
	}
	corr := jobs.NewCorrelations(kv)
	s.events.WaitFor(t, "the requests of "+id+" linked to it", func() bool {
		for _, p := range entry.Pending {
			if linked, err := corr.Lookup(context.Background(), p.RequestID); err != nil || linked != id {
				return false
			}
		}
		return true
	})
	return entry
}

// gate passes webhook deliveries to the ingest, or holds them while
// closed: a test closes it to make a webhook come after the command
// awaits it, as Meta's usually do, rather than race it.
type gate struct {
	next http.Handler
	mu   sync.Mutex
	open chan struct{} // closed while the gate is open
}

func newGate(next http.Handler) *gate {
	g := &gate{next: next, open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-r.Context().Done():
		return
	}
	g.next.ServeHTTP(w, r)
}

// logLines decodes the JSON log lines of b; a line that is not JSON fails
// the test (every logger of the stack writes JSON).
func logLines(t testing.TB, b *testutil.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", ln)
		}
		out = append(out, m)
	}
	return out
}
