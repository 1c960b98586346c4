package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

const phone = "106540352242922"

// stack is the real path a command takes: JetStream, a worker, the
// simulator over HTTP, and the simulator's webhooks coming back through
// the webhook handler into the webhook stream.
type stack struct {
	natsBundle
	sim    *sim.Server
	simURL string
	// hooksURL is the webhook handler's: Meta's side of the ingest.
	hooksURL string
	graph    *graph.Client
	events   *testutil.EventLog
	// parkAfter is stackOpts.parkAfter, for every worker started.
	parkAfter time.Duration
}

type stackOpts struct {
	// noWatch skips decoding every event in the test (benchmarks).
	noWatch  bool
	sim      sim.Config
	ackWait  time.Duration
	maxDeliv int
	// fileStore keeps streams and buckets on disk, as deployments (and
	// make bench) do; tests default to memory.
	fileStore bool
	// maxAckPending of the shared consumers (the topology's default if 0).
	maxAckPending int
	// parkAfter is every worker's Config.ParkAfter (its default if 0;
	// negative: the worker naks, never parks).
	parkAfter time.Duration
	// noSchedules makes the parked stream as a server before 2.12 has
	// it: without message schedules.
	noSchedules bool
	// legacy makes the command stream as Ensure made it while parked
	// copies waited in it (events.LegacyCommandStream).
	legacy bool
	// maxPayload is the server's max_payload (natsembed's default if 0);
	// 1 MiB is what a server without the setting takes.
	maxPayload int32
}

func setup(t testing.TB, opts ...func(*stackOpts)) *stack {
	t.Helper()
	o := stackOpts{
		sim: sim.Config{WebhookDelay: 5 * time.Millisecond, GroupOpsPerSecond: -1, MPS: -1, PairInterval: -1,
			WebhookRetryBackoff: 10 * time.Millisecond,
			// Two businesses: each number's account lists it before use.
			Accounts: map[string]string{phone: sim.DefaultWABAID, otherPhone: otherWABA}},
		ackWait:  2 * time.Second,
		maxDeliv: 4,
	}
	for _, f := range opts {
		f(&o)
	}
	storage := jetstream.MemoryStorage
	if o.fileStore {
		storage = jetstream.FileStorage
	}
	topo := events.TopologyConfig{AckWait: o.ackWait, MaxDeliver: o.maxDeliv, MaxAckPending: o.maxAckPending, Storage: storage}
	var b natsBundle
	if o.maxPayload != 0 {
		b = setupNATSOn(t, natsembed.RunTestWith(t, natsembed.Options{MaxPayload: o.maxPayload}), topo)
	} else {
		b = setupNATSWith(t, topo)
	}
	if o.noSchedules {
		withoutSchedules(t, b, topo)
	}
	if o.legacy {
		legacyCommands(t, b, topo)
	}

	hooks := httptest.NewServer(&webhook.Handler{
		AppSecret: []byte(sim.DefaultAppSecret),
		Publisher: webhook.JetStreamPublisher{JS: b.js, Names: b.names},
		Logger:    slog.New(slog.DiscardHandler),
	})
	t.Cleanup(hooks.Close)
	o.sim.WebhookURL = hooks.URL
	s := sim.New(o.sim)
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	// Keep as many idle connections as workers make calls at once, as
	// cmd/worker does; the default two would redial under concurrency.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	gc, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken, Timeout: 2 * time.Second,
		HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{natsBundle: b, sim: s, simURL: srv.URL, hooksURL: hooks.URL, graph: gc, parkAfter: o.parkAfter}
	if o.noWatch {
		st.events = &testutil.EventLog{}
	} else {
		st.events = testutil.WatchEvents(t, b.js, b.names.EventStream())
	}
	return st
}

func setupNATSWith(t testing.TB, cfg events.TopologyConfig) natsBundle {
	t.Helper()
	return setupNATS(t, cfg)
}

// withoutSchedules recreates the parked stream without message
// schedules, as a server before 2.12 keeps it whatever it is asked.
func withoutSchedules(t testing.TB, b natsBundle, topo events.TopologyConfig) {
	t.Helper()
	recreateStream(t, b, topo, b.names.ParkedStream(), func(sc *jetstream.StreamConfig) {
		sc.AllowMsgSchedules, sc.AllowRollup = false, false
	})
}

// legacyCommands recreates the command stream and its consumer as Ensure
// made them while parked copies waited in the command stream: with
// message schedules, roll-ups and the parked subjects, sourcing nothing.
func legacyCommands(t testing.TB, b natsBundle, topo events.TopologyConfig) {
	t.Helper()
	name := b.names.CommandStream()
	recreateStream(t, b, topo, name, func(sc *jetstream.StreamConfig) {
		sc.Subjects = append(sc.Subjects, b.names.AllLegacyParked())
		sc.AllowMsgSchedules, sc.AllowRollup, sc.Sources = true, true, nil
	})
	topo.Names = b.names
	if _, err := b.js.CreateConsumer(context.Background(), name, topo.Consumers()[name]); err != nil {
		t.Fatal(err)
	}
}

// recreateStream deletes stream and creates it again as topo has it,
// changed by change.
func recreateStream(t testing.TB, b natsBundle, topo events.TopologyConfig, stream string, change func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := context.Background()
	if err := b.js.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	topo.Names = b.names
	for _, sc := range topo.Streams() {
		if sc.Name == stream {
			change(&sc)
			if _, err := b.js.CreateStream(ctx, sc); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// startWorker runs a worker until the test ends (or stop is called) and
// fails the test if Run returns an error.
func (s *stack) startWorker(t testing.TB, mutate ...func(*jobs.Config)) (w *jobs.Worker, stop func()) {
	t.Helper()
	cfg := jobs.Config{
		JS: s.js, Names: s.names, Graph: s.graph, Concurrency: 4,
		WebhookTimeout: time.Minute, ShutdownTimeout: 2 * time.Second,
		NakDelay:  func(uint64) time.Duration { return 50 * time.Millisecond },
		Logger:    testLogger(t),
		ParkAfter: s.parkAfter,
	}
	for _, f := range mutate {
		f(&cfg)
	}
	w, err := jobs.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("worker Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// publish sends a command the way callers do: to its subject with
// Nats-Msg-Id set to its id.
func (s *stack) publish(t testing.TB, c events.Command) {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	s.publishRaw(t, s.names.Command(c.PhoneNumberID, c.Type), c.ID, b)
}

func (s *stack) publishRaw(t testing.TB, subject, msgID string, body []byte) {
	t.Helper()
	m := &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := s.js.PublishMsg(context.Background(), m, opts...); err != nil {
		t.Fatalf("publish command: %v", err)
	}
}

func command(id, typ, group string, params any) events.Command {
	c := events.Command{ID: id, Type: typ, PhoneNumberID: phone, GroupID: group}
	if params != nil {
		c.Params, _ = json.Marshal(params)
	}
	return c
}

// terminal waits for the command's terminal event and returns it.
func (s *stack) terminal(t testing.TB, commandID string) events.CommandResult {
	t.Helper()
	_, r := s.events.Terminal(t, commandID)
	return r
}

// calls counts the simulator's calls to endpoint.
// waitForCall waits until the simulator has seen a call of endpoint, for
// a test to change the faults under a command already under way.
func (s *stack) waitForCall(t testing.TB, endpoint string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.calls(endpoint) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %s call within 10 s", endpoint)
		}
		time.Sleep(time.Millisecond)
	}
}

func (s *stack) calls(endpoint string) int {
	n := 0
	for _, c := range s.sim.Calls() {
		if c.Endpoint == endpoint {
			n++
		}
	}
	return n
}

func ptr[T any](v T) *T { return &v }

var _ = fmt.Sprint
