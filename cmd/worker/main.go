// Command worker executes groupflow commands: it pull-consumes the command
// and webhook streams, calls the Graph API within each number's rate limits,
// keeps the ledger and publishes events. Run any number of copies.
//
// With --embedded-nats (or WORKER_EMBEDDED_NATS=true) it first starts an
// in-process JetStream server, data under ./data, listening on
// 127.0.0.1:4222, so a laptop stack needs no separate NATS.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/telemetry"
)

func main() {
	if err := runMain(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

type settings struct {
	nats           config.NATS
	embedded       bool
	embeddedAddr   string
	embeddedDir    string
	graphURL       string
	graphShown     string // graphURL without its password, for logs
	graphVersion   string
	accessToken    string
	concurrency    int
	addr           string
	webhookTimeout time.Duration
	shutdownGrace  time.Duration
	limits         ratelimit.Limits
	limitJitter    time.Duration
	limitMaxWait   time.Duration
	parkAfter      time.Duration
	parking        bool
	overrides      map[string]ratelimit.Limits
	accounts       map[string]string // phone number id → WABA id
	workerID       string
	logLevel       string
	queryCacheTTL  time.Duration
	// printConfig is set by --print-config: print it and exit.
	printConfig []config.Var
	// warnings are settings that work but not as their value suggests,
	// logged at start-up.
	warnings []string
}

// readsBucketTTL caps QUERY_CACHE_TTL: it is the TTL events.Ensure gives
// the reads bucket (events.TopologyConfig.ReadsTTL's default), after which
// NATS drops a cached answer whatever the cache's own TTL.
const readsBucketTTL = 30 * time.Second

// load reads the settings from the environment and from the flags that
// mirror it (config.Flags). --help prints the usage and returns
// flag.ErrHelp.
func load(args []string, getenv func(string) string) (settings, error) {
	_, known := read(getenv) // the variables, for the flags that mirror them
	var embedded bool
	fl := config.NewFlags("worker", known.Vars(), os.Stdout, func(fs *flag.FlagSet) {
		fs.BoolVar(&embedded, "embedded-nats", false, "short for --worker-embedded-nats")
	})
	if err := fl.Parse(args); err != nil {
		return settings{}, err
	}
	flagged := fl.Getenv(getenv)
	getenv = func(name string) string {
		if name == "WORKER_EMBEDDED_NATS" && embedded {
			return "true"
		}
		return flagged(name)
	}
	s, e := read(getenv)
	if fl.PrintConfig {
		return settings{printConfig: e.Vars()}, nil
	}
	if err := e.Err(); err != nil {
		return settings{}, err
	}
	return s, nil
}

// read reads the settings through getenv; check the Env's Err.
func read(getenv func(string) string) (settings, *config.Env) {
	e := config.NewEnv(getenv)
	s := settings{
		nats:           config.LoadNATS(e),
		embedded:       e.Bool("WORKER_EMBEDDED_NATS", false, "start an in-process JetStream server others can connect to"),
		embeddedAddr:   e.String("WORKER_EMBEDDED_NATS_ADDR", "127.0.0.1:4222", "host:port the embedded NATS server listens on"),
		embeddedDir:    e.String("WORKER_EMBEDDED_NATS_DIR", "./data", "directory of the embedded server's JetStream store"),
		graphURL:       e.String("GRAPH_API_BASE_URL", "https://graph.facebook.com", "Graph API root (the simulator's URL on a laptop)"),
		graphVersion:   e.String("GRAPH_API_VERSION", "v23.0", "Graph API version"),
		accessToken:    e.Secret("WHATSAPP_ACCESS_TOKEN", "system-user access token for the Graph API"),
		concurrency:    e.Int("WORKER_CONCURRENCY", 16, 1, "commands one worker executes at once"),
		addr:           e.String("WORKER_ADDR", ":8081", "address of /healthz and /metrics"),
		webhookTimeout: e.Duration("WEBHOOK_TIMEOUT", 10*time.Minute, "how long an async command waits for its webhook"),
		shutdownGrace:  e.Duration("WORKER_SHUTDOWN_GRACE", 10*time.Second, "time in-flight commands get to finish on SIGTERM"),
		limits: ratelimit.Limits{
			Messages: e.Float("RATE_LIMIT_MESSAGES", ratelimit.DefaultMessages, 1, "messages per second per phone number, all workers together"),
			GroupOps: e.Float("RATE_LIMIT_GROUP_OPS", ratelimit.DefaultGroupOps, 1, "group operations per second per phone number, all workers together"),
			Reads:    e.Float("RATE_LIMIT_READS", ratelimit.DefaultReads, 1, "reads per second per phone number, all workers together"),
		},
		limitJitter:   e.Duration("RATE_LIMIT_JITTER", ratelimit.DefaultJitter, "how much later or earlier than its limiter token a call may reach Meta with the limits still kept there (network and scheduling variance); the limits are used at about 1/(1 + jitter/1s) at best"),
		limitMaxWait:  e.Duration("RATE_LIMIT_MAX_WAIT", ratelimit.DefaultMaxWait, "longest a command waits in the worker for its number's rate-limit token or for a throttle to end; beyond it the command goes back to the queue until its turn, for any worker to take (shorter: the backlog's end is spread over all workers; longer: fewer redeliveries)"),
		parkAfter:     e.Duration("RATE_LIMIT_PARK_AFTER", jobs.DefaultParkAfter, "a command whose number's limit cannot take it within this (or that was handed back before) is parked: a copy GROUPS_PARKED holds until its booked turn, out of other commands' way"),
		parking:       e.Bool("RATE_LIMIT_PARKING", true, "park deep backlogs (needs NATS 2.14+; a worker on an older server naks instead by itself); false: always nak, and a deep backlog waits among the consumer's MaxAckPending"),
		queryCacheTTL: e.Duration("QUERY_CACHE_TTL", readsBucketTTL, "how long a read answer (group info, lists, invite link) is served from the shared cache; at most 30s, the reads bucket's TTL"),
		workerID:      e.String("WORKER_ID", "", "unique name of this worker (default: host, pid and a random suffix)"),
		logLevel:      e.String("LOG_LEVEL", "info", "debug, info, warn or error"),
	}
	overrides := e.List("RATE_LIMIT_OVERRIDES", "per-number limits: <phone_number_id>:<messages>/<group_ops>/<reads>, comma separated; empty parts keep the default")
	var err error
	s.overrides, err = parseOverrides(overrides)
	e.Check(err == nil, "RATE_LIMIT_OVERRIDES", "%v", err)
	accounts := e.List("RATE_LIMIT_ACCOUNTS", "the WhatsApp Business Account of each number: <phone_number_id>:<waba_id>, comma separated, so that an account's throttle (80007) pauses only its numbers, and an ensure_invite_template names only its number's account; numbers are also learnt from their webhooks, and one not known yet is paused by every account's throttle and costs its first ensure_invite_template a listing of the account's numbers")
	s.accounts, err = parseAccounts(accounts)
	e.Check(err == nil, "RATE_LIMIT_ACCOUNTS", "%v", err)
	e.Require("WHATSAPP_ACCESS_TOKEN", s.accessToken, "the Graph API refuses calls without it")
	u, uerr := url.Parse(s.graphURL)
	if uerr == nil {
		s.graphShown = u.Redacted() // a proxy's password stays out of the log
	}
	e.Check(uerr == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "GRAPH_API_BASE_URL", "want an http(s) URL, got %q", cmp.Or(s.graphShown, "an unparsable value"))
	if s.embedded {
		_, port, perr := net.SplitHostPort(s.embeddedAddr)
		_, aerr := strconv.Atoi(port)
		e.Check(perr == nil && aerr == nil, "WORKER_EMBEDDED_NATS_ADDR", "want host:port, got %q", s.embeddedAddr)
	}
	// What the limiter and the listener would refuse only once NATS is
	// set up (and not while it is down), refused now, by name.
	e.Check(s.limitJitter < time.Second, "RATE_LIMIT_JITTER", "want less than 1s (the limits' window), got %s", s.limitJitter)
	e.Check(s.workerID == "" || ratelimit.ValidWorkerID(s.workerID), "WORKER_ID", "want letters, digits, '-', '_' or '=' (it is a key in the workers bucket), got %q", s.workerID)
	_, _, aerr := net.SplitHostPort(s.addr)
	e.Check(aerr == nil, "WORKER_ADDR", "want host:port or :port, got %q", s.addr)
	// Graph would read "23.0" as an object id and fail every call.
	e.Check(graphVersion.MatchString(s.graphVersion), "GRAPH_API_VERSION", "want a version such as v23.0, got %q", s.graphVersion)
	// Refused rather than capped: the reads bucket is shared by every
	// worker and no setting here raises its TTL, so a longer value could
	// only be ignored, and a cap said in a log line goes unread.
	e.Check(s.queryCacheTTL <= readsBucketTTL, "QUERY_CACHE_TTL", "want at most %s (the reads bucket's TTL, after which NATS drops a cached answer), got %s", readsBucketTTL, s.queryCacheTTL)
	if s.concurrency > s.nats.MaxAckPending {
		s.warnings = append(s.warnings, fmt.Sprintf("WORKER_CONCURRENCY=%d is above GROUPFLOW_MAX_ACK_PENDING=%d: "+
			"the shared consumers hand out at most %[2]d unacknowledged messages across all workers, so this worker never runs more than %[2]d commands at once "+
			"and the rest of its slots stay idle; set GROUPFLOW_MAX_ACK_PENDING, alike in every process, to at least the sum of the workers' WORKER_CONCURRENCY",
			s.concurrency, s.nats.MaxAckPending))
	}
	if !s.parking {
		s.parkAfter = -1 // jobs.Config: never park
	}
	return s, e
}

// graphVersion is the form of a Graph API version: v23.0.
var graphVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// numericID reports whether s can be a Graph phone number id, as commands
// must carry it (events.Command.Validate): digits only.
func numericID(s string) bool {
	return s != "" && len(s) <= 32 && strings.Trim(s, "0123456789") == ""
}

// parseAccounts reads "<phone_number_id>:<waba_id>" entries.
func parseAccounts(entries []string) (map[string]string, error) {
	out := map[string]string{}
	for _, ent := range entries {
		phone, waba, ok := strings.Cut(ent, ":")
		phone, waba = strings.TrimSpace(phone), strings.TrimSpace(waba)
		if !ok || !events.ValidToken(phone) || !events.ValidToken(waba) {
			return nil, fmt.Errorf("want <phone_number_id>:<waba_id>, got %q", ent)
		}
		if !numericID(phone) {
			return nil, fmt.Errorf("phone number id %q in %q is not numeric, so no command's number could match it", phone, ent)
		}
		if prev, dup := out[phone]; dup && prev != waba {
			return nil, fmt.Errorf("number %s is given two accounts, %s and %s", phone, prev, waba)
		}
		out[phone] = waba
	}
	return out, nil
}

// parseOverrides reads "<phone>:<messages>/<group_ops>/<reads>" entries.
func parseOverrides(entries []string) (map[string]ratelimit.Limits, error) {
	out := map[string]ratelimit.Limits{}
	for _, ent := range entries {
		phone, spec, ok := strings.Cut(ent, ":")
		phone = strings.TrimSpace(phone)
		if !ok || !events.ValidToken(phone) {
			return nil, fmt.Errorf("want <phone_number_id>:<messages>/<group_ops>/<reads>, got %q", ent)
		}
		if !numericID(phone) {
			return nil, fmt.Errorf("phone number id %q in %q is not numeric, so no command's number could match it", phone, ent)
		}

		parts := strings.Split(spec, "/")
		if len(parts) > 3 {
			return nil, fmt.Errorf("want at most three limits in %q", ent)
		}
		var vals [3]float64
		for i, p := range parts {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("limit %q in %q is not a number ≥ 1", p, ent)
			}
			vals[i] = v
		}
		l := ratelimit.Limits{Messages: vals[0], GroupOps: vals[1], Reads: vals[2]}
		if prev, dup := out[phone]; dup && prev != l {
			return nil, fmt.Errorf("number %s is given two sets of limits; keep one entry", phone)
		}
		out[phone] = l
	}
	return out, nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// gcPercent is the worker's GOGC unless the environment sets one. Nearly
// everything it allocates lives for one command (messages, JSON, ledger
// entries), so at Go's default of 100 the collector took about a tenth of
// its CPU under load. make bench's worker section, both settings alternated
// three times in one session: 122–143 µs of worker CPU per command at 400
// against 151–180 at 100, peak resident memory 81–84 MB against 50–51.
const gcPercent = 400

func runMain(ctx context.Context, args []string, getenv func(string) string) error {
	s, err := load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if s.printConfig != nil {
		return config.PrintVars(os.Stdout, s.printConfig)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return fmt.Errorf("invalid configuration: LOG_LEVEL: %w", err)
	}
	log := slog.New(telemetry.NewLogHandler(os.Stderr, level))
	for _, w := range s.warnings {
		log.Warn("configuration warning", slog.String("warning", w))
	}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "groupflow-worker", ServiceVersion: version(), Getenv: getenv, Component: telemetry.ComponentWorker})
	if err != nil {
		return err
	}
	tel.InstallGlobal(func(err error) { log.Warn("telemetry", slog.Any("error", err)) })
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second) // ctx may be cancelled by now
		defer cancel()
		_ = tel.Shutdown(flushCtx)
	}()

	if s.embedded {
		host, port, _ := net.SplitHostPort(s.embeddedAddr)
		p, _ := strconv.Atoi(port)
		srv, err := natsembed.Start(natsembed.Options{Dir: s.embeddedDir, Host: host, Port: p, ServerName: "groupflow"})
		if err != nil {
			return fmt.Errorf("start embedded NATS on %s: %w", s.embeddedAddr, err)
		}
		defer srv.Shutdown() // last: everything below still needs it while stopping
		s.nats.URL = srv.ClientURL()
		log.Info("embedded NATS started", slog.String("url", s.nats.URL), slog.String("dir", s.embeddedDir))
	}

	nc, err := s.nats.Connect("groupflow-worker", s.nats.LogAttempts(log),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close
				log.Warn("nats disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("nats reconnected") }))
	if err != nil {
		return err
	}
	defer nc.Close()
	defer func() {
		// Events published during shutdown leave before the close. With
		// NATS unreachable nothing can leave: a flush would wait its 10 s.
		if nc.IsConnected() {
			_ = nc.Flush()
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	names := events.Names{Prefix: s.nats.Prefix}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = events.Ensure(setupCtx, js, events.TopologyConfig{Names: names, Replicas: s.nats.Replicas, MaxAckPending: s.nats.MaxAckPending, Logger: log})
	var workersKV, throttleKV jetstream.KeyValue
	if err == nil {
		workersKV, err = js.KeyValue(setupCtx, names.WorkersBucket())
	}
	if err == nil {
		throttleKV, err = js.KeyValue(setupCtx, names.ThrottleBucket())
	}
	cancel()
	if err != nil {
		return fmt.Errorf("set up JetStream (is NATS at %s running with JetStream?): %w", config.RedactURL(s.nats.URL), err)
	}

	metrics := tel.Metrics()
	// OnResponse carries no context. Measurements must not stop when ctx is
	// cancelled: calls still finish while the worker drains.
	metricsCtx := context.WithoutCancel(ctx)
	// One idle connection per concurrent call: the default (two per host)
	// would close and redial connections to Graph under load.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = max(s.concurrency, tr.MaxIdleConnsPerHost)
	gc, err := graph.New(graph.Config{
		BaseURL: s.graphURL, Version: s.graphVersion, AccessToken: s.accessToken,
		HTTPClient: &http.Client{Transport: tel.HTTPTransport(tr)},
		OnResponse: func(endpoint string, status, code int, d time.Duration) {
			metrics.GraphCall(metricsCtx, endpoint, status, code, d)
		},
	})
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	workerID := s.workerID
	if workerID == "" {
		workerID = jobs.NewWorkerID()
	}
	accounts := ratelimit.NewAccounts(s.accounts)
	limiter, err := ratelimit.New(ratelimit.Config{
		Workers: workersKV, Throttle: throttleKV, WorkerID: workerID, WABAOf: accounts.Of,
		Defaults: s.limits, Overrides: s.overrides, Jitter: s.limitJitter, MaxWait: s.limitMaxWait, Logger: log,
		MaxQueue: max(1, s.concurrency/2),
		OnWait: func(ctx context.Context, class ratelimit.Class, outcome string, d time.Duration) {
			metrics.RateLimitWait(ctx, class.String(), outcome, d)
		},
	})
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	// The worker makes cached reads stale before it announces a change,
	// whether or not this process's query service is up yet (or still):
	// the cache is every worker's.
	readsKV, err := js.KeyValue(ctx, names.ReadsBucket())
	if err != nil {
		return fmt.Errorf("open the reads bucket: %w", err)
	}
	worker, err := jobs.New(ctx, jobs.Config{
		JS: js, Names: names, Graph: gc, Limiter: limiter, Accounts: accounts, WorkerID: workerID, Reads: query.NewInvalidator(readsKV),
		Concurrency: s.concurrency, WebhookTimeout: s.webhookTimeout, ShutdownTimeout: s.shutdownGrace, ParkAfter: s.parkAfter,
		Tracer: tel.Tracer("github.com/groupflow/groupflow/internal/jobs"), Metrics: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	ledgerKV, err := js.KeyValue(ctx, names.LedgerBucket())
	if err != nil {
		return fmt.Errorf("open the ledger bucket: %w", err)
	}
	reads, err := query.New(query.Config{
		Conn: nc, JS: js, Names: names, Graph: gc, Limiter: limiter,
		Ledger: jobs.NewLedger(ledgerKV, nil), Owners: worker.Owners(), CacheTTL: s.queryCacheTTL,
		Logger: log, Tracer: tel.Tracer("github.com/groupflow/groupflow/internal/query"),
	})
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	// DLQ depth, consumer lag and parked commands are read from JetStream
	// at each scrape (or OTLP export); unregistered before the connection
	// closes.
	dlqObs, err := metrics.ObserveDLQ(jobs.DLQDepth(js, names))
	if err != nil {
		return fmt.Errorf("observe the DLQ: %w", err)
	}
	defer func() { _ = dlqObs.Unregister() }()
	lagObs, err := metrics.ObserveConsumers(jobs.ConsumerLag(js, names))
	if err != nil {
		return fmt.Errorf("observe consumer lag: %w", err)
	}
	defer func() { _ = lagObs.Unregister() }()
	parkedObs, err := metrics.ObserveParked(jobs.ParkedCommands(js, names))
	if err != nil {
		return fmt.Errorf("observe parked commands: %w", err)
	}
	defer func() { _ = parkedObs.Unregister() }()
	tokenObs, err := metrics.ObserveAccessToken(worker.CredentialsRefused)
	if err != nil {
		return fmt.Errorf("observe the access token: %w", err)
	}
	defer func() { _ = tokenObs.Unregister() }()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on WORKER_ADDR %s: %w", s.addr, err)
	}
	mux := http.NewServeMux()
	// Liveness is the process itself: a NATS outage delays work, and a
	// restart would not bring NATS back. Readiness follows NATS.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !nc.IsConnected() {
			http.Error(w, "nats disconnected", http.StatusServiceUnavailable)
			return
		}
		if worker.CredentialsRefused() {
			// Not ready: a rollout with a wrong token stops here, and
			// the commands wait rather than fail.
			http.Error(w, "Graph refuses the access token (code 190 / HTTP 401): replace WHATSAPP_ACCESS_TOKEN", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := js.Stream(ctx, names.CommandStream()); err != nil {
			http.Error(w, "stream "+names.CommandStream()+" unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", tel.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10}

	var g run.Group
	// The stop begins with the first interrupt, whichever actor ended.
	stopping, beginStop := context.WithCancel(context.WithoutCancel(ctx))
	defer beginStop()
	onSignal, interruptSignal := run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM)
	g.Add(onSignal, func(err error) { beginStop(); interruptSignal(err) })
	defer closeIfStillDown(stopping, nc, s.shutdownGrace, log)()

	// The worker stops first (it naks and releases what it cannot finish);
	// the limiter keeps pacing its last calls until then.
	workerCtx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan struct{})
	g.Add(func() error {
		defer close(workerDone)
		log.Info("worker running", slog.String("worker_id", workerID), slog.Int("concurrency", s.concurrency),
			slog.String("nats", config.RedactURL(s.nats.URL)), slog.String("graph", s.graphShown))
		return worker.Run(workerCtx)
	}, func(error) { stopWorker() })

	// Reads are answered by every worker as one queue group (nats micro).
	readsCtx, stopReads := context.WithCancel(ctx)
	g.Add(func() error { return reads.Run(readsCtx, s.shutdownGrace) }, func(error) { stopReads() })

	limiterCtx, stopLimiter := context.WithCancel(context.WithoutCancel(ctx))
	g.Add(func() error { return limiter.Run(limiterCtx) }, func(error) {
		stopWorker()
		<-workerDone
		stopLimiter()
	})

	g.Add(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	})

	err = g.Run()
	var sig *run.SignalError // run returns a pointer; As into a value matches with a nil Signal
	switch {
	case errors.As(err, &sig) && sig != nil:
		log.Info("worker stopped", slog.String("signal", sig.Signal.String()))
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		log.Info("worker stopped")
		return nil
	}
	return err
}

// closeIfStillDown closes nc if NATS is still unreachable grace after
// stopping is done. Every wait on the connection then ends at once: the
// consumers' drain (which flushes first), the query service's flush, the
// limiter's deregistration and its watches' clean-up, each with a
// time-out of its own, held a worker's exit 20 s and more past its grace
// while NATS was down. Nothing is lost that could have been saved: the
// commands in flight had their grace, and what was not acknowledged is
// delivered again. The function returned stops the wait.
func closeIfStillDown(stopping context.Context, nc *nats.Conn, grace time.Duration, log *slog.Logger) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		select {
		case <-stopping.Done():
		case <-done:
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-done:
			return
		}
		if !nc.IsConnected() {
			log.Warn("NATS is still unreachable at the end of the shutdown grace; closing the connection: what was not acknowledged is delivered again",
				slog.Duration("grace", grace))
			nc.Close()
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}
