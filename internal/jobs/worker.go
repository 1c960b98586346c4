package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// Config configures a Worker.
type Config struct {
	// JS is the JetStream handle. The topology (events.Ensure) must exist.
	// Required.
	JS jetstream.JetStream
	// Names builds subjects, streams and buckets. Defaults to the "groups"
	// prefix.
	Names events.Names
	// Graph makes the Graph API calls. Required.
	Graph Graph
	// Limiter paces calls per phone number and shares throttles between
	// workers. Nil: calls are not paced (tests, benchmarks).
	Limiter Limiter
	// Accounts knows which account each number belongs to, from
	// configuration and from every webhook: the Limiter's WABAOf, for
	// 80007 throttles, and the check of an ensure_invite_template's
	// waba_id, which teaches it what a listing of an account's numbers
	// shows. Defaults to an empty one of the worker's own.
	Accounts *ratelimit.Accounts
	// WorkerID names this worker in ledger claims and logs; unique among
	// running workers. Defaults to host name, process id and a random suffix.
	WorkerID string
	// Concurrency is how many commands one worker executes at once, and
	// how many messages it pulls ahead. Defaults to 16.
	Concurrency int
	// WebhookConcurrency is how many webhook items one worker processes at
	// once. Defaults to Concurrency.
	WebhookConcurrency int
	// WebhookTimeout is how long an asynchronous command (create, delete,
	// settings, remove) waits for its webhook before it fails with
	// webhook_timeout. Defaults to 10 minutes.
	WebhookTimeout time.Duration
	// SweepInterval is how often the worker looks for commands whose
	// webhook is overdue. Defaults to WebhookTimeout/10, between 1 s and 1 min.
	SweepInterval time.Duration
	// HandlerTimeout bounds one execution attempt. Defaults to 2 minutes.
	HandlerTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight commands may run on after
	// Run's context is cancelled; what has not finished by then is nak'ed
	// and its claim released. Defaults to 10 seconds.
	ShutdownTimeout time.Duration
	// RetryMaxElapsed bounds the short in-process retries of a transient
	// error on a call that is safe to repeat. Defaults to 2 seconds.
	RetryMaxElapsed time.Duration
	// ReconcileGrace is how long after an ambiguous create_group a worker
	// keeps looking for the group it may have created before it concludes
	// the call never took effect. Defaults to 30 seconds.
	ReconcileGrace time.Duration
	// CredentialsWait is how long commands wait, and how often the token
	// is tried again, while Graph refuses the access token (code 190,
	// HTTP 401). Defaults to 30s.
	CredentialsWait time.Duration
	// ParkAfter is how far off a rate-limited command's turn must be for
	// the worker to park it (a copy scheduled for its turn, out of the
	// consumer's way) instead of naking it; a command handed back a second
	// time is parked too. Defaults to DefaultParkAfter; negative never
	// parks.
	ParkAfter time.Duration
	// NakDelay is the delay before a transient failure is retried on
	// delivery n (1-based). Defaults to 500ms·2^(n-1), capped at 1 minute.
	NakDelay func(delivery uint64) time.Duration
	// HTTPClient fetches profile pictures given by URL. Defaults to a
	// client with a 30 second timeout that connects to public addresses
	// only, directly: a command's URL naming an internal host (loopback,
	// private, link-local such as a cloud metadata service) fails its
	// picture. Give another client to fetch from internal hosts.
	HTTPClient *http.Client
	// Handlers adds or replaces handlers by command type.
	Handlers map[string]Handler
	// Campaigns tunes invite campaigns (fan-out window, checkpoints,
	// progress events). Zero fields take their defaults.
	Campaigns CampaignConfig
	// Middleware wraps every handler, outermost first, inside the
	// built-in recovery, expiry and timeout middleware and outside the
	// check that a command's group is its number's (Owners).
	Middleware []Middleware
	// Reads is the query service's shared cache (query.Invalidator): the
	// worker makes the cached answers an event changes stale before it
	// publishes the event — one bucket write per command or webhook item
	// that changes a group, none for reads, messages and campaigns. A
	// failed write holds the event back and the message is retried, as
	// after a failed publish. Nil invalidates nothing (no query service
	// shares the bucket).
	Reads ReadCache
	// Tracer starts a consumer span per message, continuing the trace in
	// its headers; Graph calls made under it are its children when the
	// Graph client's transport is traced. Defaults to a no-op tracer.
	Tracer trace.Tracer
	// Metrics records commands, throttles and webhooks. Nil records
	// nothing.
	Metrics *telemetry.Metrics
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock tells the time. Defaults to time.Now.
	Clock func() time.Time
}

func (c Config) withDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, 16)
	c.WebhookConcurrency = cmp.Or(c.WebhookConcurrency, c.Concurrency)
	c.WebhookTimeout = cmp.Or(c.WebhookTimeout, 10*time.Minute)
	if c.SweepInterval == 0 {
		c.SweepInterval = min(max(c.WebhookTimeout/10, time.Second), time.Minute)
	}
	c.HandlerTimeout = cmp.Or(c.HandlerTimeout, 2*time.Minute)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	c.RetryMaxElapsed = cmp.Or(c.RetryMaxElapsed, 2*time.Second)
	c.ReconcileGrace = cmp.Or(c.ReconcileGrace, 30*time.Second)
	c.CredentialsWait = cmp.Or(c.CredentialsWait, 30*time.Second)
	c.ParkAfter = cmp.Or(c.ParkAfter, DefaultParkAfter)
	if c.NakDelay == nil {
		c.NakDelay = defaultNakDelay
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = pictureClient()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	c.WorkerID = cmp.Or(c.WorkerID, NewWorkerID())
	return c
}

func (c Config) validate() error {
	switch {
	case c.JS == nil:
		return errors.New("jobs: Config.JS is required")
	case c.Graph == nil:
		return errors.New("jobs: Config.Graph is required")
	case c.Concurrency < 1 || c.WebhookConcurrency < 1:
		return errors.New("jobs: concurrency must be at least 1")
	}
	return nil
}

// NewWorkerID returns a worker id unique among running workers: host
// name, process id and a random suffix, in characters valid in a KV key.
func NewWorkerID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && (r == '-' || r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return r
		}
		return '-'
	}, cmp.Or(host, "worker"))
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

func defaultNakDelay(delivery uint64) time.Duration {
	d := 500 * time.Millisecond
	for i := uint64(1); i < delivery && d < time.Minute; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

// DefaultParkAfter is Config.ParkAfter's default, half the limiter's
// default wait bound: a command whose turn is that close is naked (a
// short wait among the consumer's unacknowledged messages), anything
// deeper is parked.
const DefaultParkAfter = 500 * time.Millisecond

// Worker executes commands from the shared command consumer and turns
// webhook items into events. Run any number of workers side by side.
type Worker struct {
	cfg      Config
	names    events.Names
	js       jetstream.JetStream
	graph    Graph
	limiter  Limiter
	log      *slog.Logger
	id       string
	now      func() time.Time
	ledger   *Ledger
	corr     *Correlations
	owners   *Owners
	accounts *ratelimit.Accounts
	handlers map[string]Handler
	handler  Handler // dispatch wrapped in middleware
	tracer   trace.Tracer
	metrics  *telemetry.Metrics

	// campaigns runs invite campaigns: their entries as seen here, and
	// the fan-outs this worker holds.
	campaigns *campaigns

	// Filled by Run from the consumers' configuration.
	maxDeliver int
	ackWait    time.Duration
	// parkAfter is cfg.ParkAfter, or 0 when parked copies would not come
	// back (Run checks); legacyParking, that they wait in a legacy
	// command stream (see parkSubjects).
	parkAfter     time.Duration
	legacyParking bool
	parkings      *parkings

	// shutdown is closed when Run's context is done: in-flight work may
	// finish (within ShutdownTimeout), new work is nak'ed at once.
	shutdown     chan struct{}
	shutdownOnce sync.Once

	creds credentialsGate
}

// CredentialsRefused reports whether Graph refuses the worker's access
// token (its last answer was code 190 or HTTP 401): commands wait meanwhile,
// and the worker should not count as ready.
func (w *Worker) CredentialsRefused() bool { return w.creds.Refused() }

// New checks cfg and returns a worker. It opens the ledger and
// correlation buckets, which must exist.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ledgerKV, err := cfg.JS.KeyValue(ctx, cfg.Names.LedgerBucket())
	if err != nil {
		return nil, fmt.Errorf("jobs: open ledger bucket: %w", err)
	}
	corrKV, err := cfg.JS.KeyValue(ctx, cfg.Names.CorrelationBucket())
	if err != nil {
		return nil, fmt.Errorf("jobs: open correlation bucket: %w", err)
	}
	campaignKV, err := cfg.JS.KeyValue(ctx, cfg.Names.CampaignBucket())
	if err != nil {
		return nil, fmt.Errorf("jobs: open campaign bucket: %w", err)
	}
	ownerKV, err := cfg.JS.KeyValue(ctx, cfg.Names.OwnerBucket())
	if err != nil {
		return nil, fmt.Errorf("jobs: open owner bucket: %w", err)
	}
	w := &Worker{
		cfg: cfg, names: cfg.Names, js: cfg.JS, graph: cfg.Graph, limiter: cfg.Limiter,
		log: cfg.Logger.With(slog.String("worker_id", cfg.WorkerID)), id: cfg.WorkerID, now: cfg.Clock,
		ledger: NewLedger(ledgerKV, cfg.Clock), corr: NewCorrelations(corrKV), owners: NewOwners(ownerKV),
		accounts: cfg.Accounts,
		shutdown: make(chan struct{}), tracer: cfg.Tracer, metrics: cfg.Metrics,
		parkings: newParkings(),
	}
	if w.accounts == nil {
		w.accounts = ratelimit.NewAccounts(nil)
	}
	w.creds.log, w.creds.wait = w.log, cfg.CredentialsWait
	w.campaigns = newCampaigns(w, campaignKV, cfg.Campaigns)
	w.handlers = w.builtinHandlers()
	for t, h := range cfg.Handlers {
		w.handlers[t] = h
	}
	h := w.ownGroup(HandlerFunc(w.dispatch))
	for i := len(cfg.Middleware) - 1; i >= 0; i-- {
		h = cfg.Middleware[i](h)
	}
	h = Timeout(cfg.HandlerTimeout)(h)
	h = Expiry(cfg.Clock)(h)
	h = Recover()(h)
	w.handler = h
	return w, nil
}

// checkParking turns parking on (Config.ParkAfter) only if parked copies
// come back. A legacy command stream (events.LegacyCommandStream) holds
// them itself, as it did before the parked stream. Otherwise the parked
// stream must schedule messages (a server before 2.12 ignores the
// setting), the command stream must source its due copies, and the
// server must acknowledge what it sources from a work queue only once
// stored (JetStream API level 4, NATS 2.14): before, a due copy left the
// parked stream as it was sent, and one the command stream failed to
// store (a leader change) was lost.
func (w *Worker) checkParking(ctx context.Context) error {
	if w.cfg.ParkAfter <= 0 {
		return nil
	}
	cmds, err := w.js.Stream(ctx, w.names.CommandStream())
	if err != nil {
		return fmt.Errorf("jobs: command stream: %w", err)
	}
	if cfg := cmds.CachedInfo().Config; events.LegacyCommandStream(&cfg) {
		w.parkAfter, w.legacyParking = w.cfg.ParkAfter, true
		return nil
	}
	parked, err := w.js.Stream(ctx, w.names.ParkedStream())
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("jobs: parked stream: %w", err)
	}
	var why string
	switch {
	case parked == nil:
		why = "there is no parked stream"
	case !parked.CachedInfo().Config.AllowMsgSchedules:
		why = "the parked stream does not schedule messages (NATS server before 2.12?)"
	case apiLevel(parked.CachedInfo().Config.Metadata) < durableSourcingLevel:
		why = "the NATS server may lose a parked copy on its way back to the command stream (before 2.14, sourcing does not wait for the copy to be stored)"
	case !slices.ContainsFunc(cmds.CachedInfo().Config.Sources, func(s *jetstream.StreamSource) bool { return s.Name == w.names.ParkedStream() }):
		why = "the command stream does not source the parked stream's due copies"
	}
	if why != "" {
		w.log.WarnContext(ctx, why+": deep backlogs are naked, not parked, and can hold up other numbers' commands",
			slog.String("stream", w.names.ParkedStream()))
		return nil
	}
	w.parkAfter = w.cfg.ParkAfter
	return nil
}

// parkSubjects are the subject a copy of a command of cmdType for phone
// waits on when parked by delivery seq, and the one it is scheduled to
// come back on (see checkParking).
func (w *Worker) parkSubjects(phone, cmdType string, seq uint64) (subject, target string) {
	if w.legacyParking {
		return w.names.LegacyParked(phone, cmdType, seq), w.names.Command(phone, cmdType)
	}
	return w.names.Parked(phone, cmdType, seq), w.names.Due(phone, cmdType)
}

// durableSourcingLevel is the JetStream API level from which a stream
// sourcing from a work queue acknowledges each message once stored.
const durableSourcingLevel = 4

// apiLevel is the JetStream API level of the server that described a
// stream (its "_nats.level" metadata, NATS 2.11+), or 0.
func apiLevel(metadata map[string]string) int {
	n, err := strconv.Atoi(metadata["_nats.level"])
	if err != nil {
		return 0
	}
	return n
}

// minMaxPayload is the least max_payload with room for the largest
// command and a result as large in one ledger entry.
const minMaxPayload = 2 * events.MaxCommandSize

// checkMaxPayload warns when the server's max_payload leaves the largest
// commands no room for their ledger entries: they are rejected (see
// processCommand), which an operator would rather hear of now.
func (w *Worker) checkMaxPayload(ctx context.Context) {
	if mp := w.js.Conn().MaxPayload(); mp < minMaxPayload {
		w.log.WarnContext(ctx, "the NATS server's max_payload leaves no room for the ledger entries of the largest commands: they will be rejected; deploy/nats sets 8MB",
			slog.Int64("max_payload", mp), slog.Int("want_at_least", minMaxPayload))
	}
}

// ID is the worker's id.
func (w *Worker) ID() string { return w.id }

// Ledger is the worker's ledger (for status queries).
func (w *Worker) Ledger() *Ledger { return w.ledger }

// Owners is the worker's record of which number each group belongs to,
// for the query service of its process to share (query.Config.Owners).
func (w *Worker) Owners() *Owners { return w.owners }

func (w *Worker) dispatch(ctx context.Context, job *Job) (Result, error) {
	h, ok := w.handlers[job.Command.Type]
	if !ok {
		return Result{}, Permanent(fmt.Errorf("no handler for command type %q", job.Command.Type))
	}
	return h.Handle(ctx, job)
}

// Run consumes commands and webhooks, sweeps overdue commands and
// dead-letters commands the server gave up on, until ctx is cancelled.
// Then it stops pulling, lets in-flight work finish within
// ShutdownTimeout, naks the rest (releasing its claims) and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	cmdCons, err := w.js.Consumer(ctx, w.names.CommandStream(), w.names.CommandConsumer())
	if err != nil {
		return fmt.Errorf("jobs: command consumer: %w", err)
	}
	hookCons, err := w.js.Consumer(ctx, w.names.WebhookStream(), w.names.WebhookConsumer())
	if err != nil {
		return fmt.Errorf("jobs: webhook consumer: %w", err)
	}
	ci := cmdCons.CachedInfo().Config
	w.maxDeliver, w.ackWait = ci.MaxDeliver, cmp.Or(ci.AckWait, 30*time.Second)
	if err := w.checkParking(ctx); err != nil {
		return err
	}
	w.checkMaxPayload(ctx)

	// work outlives ctx by ShutdownTimeout so in-flight calls can finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	go func() {
		<-ctx.Done()
		w.shutdownOnce.Do(func() { close(w.shutdown) })
		t := time.NewTimer(w.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-work.Done():
		}
	}()

	adv, err := w.subscribeAdvisories(work)
	if err != nil {
		return err
	}
	// Unsubscribe fails only on a closed or draining connection, or a
	// subscription already gone: each ends it anyway.
	defer func() { _ = adv.Unsubscribe() }()

	errs := make(chan error, 3)
	var wg sync.WaitGroup
	wg.Go(func() {
		errs <- w.consume(ctx, cmdCons, w.cfg.Concurrency, "commands", func(m jetstream.Msg) bool { return w.processCommand(work, m) })
	})
	wg.Go(func() {
		errs <- w.consume(ctx, hookCons, w.cfg.WebhookConcurrency, "webhooks", func(m jetstream.Msg) bool { w.processWebhook(work, m); return false })
	})
	wg.Go(func() { w.sweep(ctx) })
	wg.Go(func() { w.campaigns.supervise(ctx) })
	wg.Wait()
	cancelWork()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// shuttingDown reports whether Run's context is done.
func (w *Worker) shuttingDown() bool {
	select {
	case <-w.shutdown:
		return true
	default:
		return false
	}
}

// cleanupCtx is for the ledger writes and acks that end a delivery: they
// must happen even when the work context was just cancelled.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// headerTraceparent reads the W3C trace context from NATS headers.
func headerTraceparent(h nats.Header) string {
	if h == nil {
		return ""
	}
	return cmp.Or(h.Get("traceparent"), h.Get("Traceparent"))
}
