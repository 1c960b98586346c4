// Command ingest receives Meta's webhooks and callers' commands over HTTP and
// publishes them to NATS JetStream, answering only once JetStream has them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/run"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/webhook"
)

func main() {
	if err := runMain(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

type settings struct {
	nats          config.NATS
	addr          string
	metricsAddr   string
	appSecret     string
	verifyToken   string
	apiTokens     []string
	apiRate       float64
	apiBurst      int
	maxBody       int64
	shutdownGrace time.Duration
	drain         time.Duration
	logLevel      string
}

func load(getenv func(string) string) (settings, *config.Env) {
	e := config.NewEnv(getenv)
	s := settings{
		nats:          config.LoadNATS(e),
		addr:          e.String("INGEST_ADDR", ":8080", "address the ingest listens on"),
		metricsAddr:   e.String("INGEST_METRICS_ADDR", "", "address of a private listener for /metrics, /healthz and /readyz (as the worker's WORKER_ADDR); when set, INGEST_ADDR, which Meta and the command API's callers reach, no longer serves /metrics"),
		appSecret:     e.Secret("WHATSAPP_APP_SECRET", "Meta app secret that signs webhooks"),
		verifyToken:   e.Secret("WHATSAPP_VERIFY_TOKEN", "token Meta echoes in the webhook verification handshake"),
		apiTokens:     e.SecretList("INGEST_API_TOKENS", "bearer tokens of the command API, comma separated: a token acts for every phone number, TOKEN@ID+ID… only for the phone_number_ids named; ;rate=R and ;burst=B after either set that token's own rate bound"),
		apiRate:       e.Float("INGEST_API_RATE", 0, 0, "requests a second each API token may make to the command API (POST and GET together) on this ingest, each replica bounding its own; over it: 429 with Retry-After, nothing published; an entry's own ;rate= takes its place; 0: no bound"),
		apiBurst:      e.Int("INGEST_API_BURST", 0, 0, "requests a token may make at once beyond INGEST_API_RATE after a quiet spell; an entry's own ;burst= takes its place; 0: one second of the token's rate, at least 1"),
		maxBody:       int64(e.Int("INGEST_MAX_BODY_BYTES", 4<<20, 1024, "largest webhook body accepted (Meta sends ≤ 3 MB)")),
		shutdownGrace: e.Duration("INGEST_SHUTDOWN_GRACE", 15*time.Second, "time in-flight requests get to finish on SIGTERM"),
		drain:         e.Duration("INGEST_DRAIN", 0, "on SIGTERM, time /readyz answers 503 while requests are still served, before the listener closes (a load balancer's time to stop sending; 5s or more behind one)"),
		logLevel:      e.String("LOG_LEVEL", "info", "debug, info, warn or error"),
	}
	e.Require("WHATSAPP_APP_SECRET", s.appSecret, "webhooks cannot be verified without it")
	e.Require("WHATSAPP_VERIFY_TOKEN", s.verifyToken, "Meta's verification handshake needs it")
	if _, err := ingest.ParseAPITokens(s.apiTokens); err != nil {
		e.Check(false, "INGEST_API_TOKENS", "%v", err) // err names the entry by its place, never its text
	}
	_, _, aerr := net.SplitHostPort(s.addr)
	e.Check(aerr == nil, "INGEST_ADDR", "want host:port or :port, got %q", s.addr)
	if s.metricsAddr != "" {
		_, _, merr := net.SplitHostPort(s.metricsAddr)
		e.Check(merr == nil, "INGEST_METRICS_ADDR", "want host:port or :port, got %q", s.metricsAddr)
	}
	return s, e
}

// gcPercent is the ingest's GOGC unless the environment sets one. Its live
// heap is small (connections, pooled buffers) and nearly all it allocates
// dies with the request, so at Go's default of 100 it collected dozens of
// times a second under load: a tenth of its CPU per webhook. Under make
// bench's load the peak resident memory goes from 27 to 40 MB.
const gcPercent = 400

// version is the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func runMain(ctx context.Context, args []string, getenv func(string) string) error {
	_, known := load(getenv) // the variables, for the flags that mirror them
	fl := config.NewFlags("ingest", known.Vars(), os.Stdout, nil)
	switch err := fl.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return nil
	case err != nil:
		return err
	}
	s, e := load(fl.Getenv(getenv))
	if fl.PrintConfig {
		return config.PrintVars(os.Stdout, e.Vars())
	}
	if err := e.Err(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return fmt.Errorf("invalid configuration: LOG_LEVEL: %w", err)
	}
	log := slog.New(telemetry.NewLogHandler(os.Stderr, level))
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "groupflow-ingest", ServiceVersion: version(), Getenv: getenv, Component: telemetry.ComponentIngest})
	if err != nil {
		return err
	}
	tel.InstallGlobal(func(err error) { log.Warn("telemetry", slog.Any("error", err)) })
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second) // ctx may be cancelled by now
		defer cancel()
		_ = tel.Shutdown(flushCtx)
	}()
	if len(s.apiTokens) == 0 {
		log.Warn("INGEST_API_TOKENS is empty: the command API refuses every request")
	}

	nc, err := s.nats.Connect("groupflow-ingest", s.nats.LogAttempts(log),
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
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	names := events.Names{Prefix: s.nats.Prefix}
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = events.Ensure(setupCtx, js, events.TopologyConfig{Names: names, Replicas: s.nats.Replicas, MaxAckPending: s.nats.MaxAckPending, Logger: log})
	cancel()
	if err != nil {
		return fmt.Errorf("set up JetStream (is NATS at %s running with JetStream?): %w", config.RedactURL(s.nats.URL), err)
	}

	ledgerKV, err := js.KeyValue(ctx, names.LedgerBucket())
	if err != nil {
		return fmt.Errorf("open the ledger bucket: %w", err)
	}
	handler, err := ingest.New(ingest.Config{
		Conn:      nc,
		JS:        js,
		Names:     names,
		APITokens: s.apiTokens,
		APIRate:   s.apiRate,
		APIBurst:  s.apiBurst,
		Logger:    log,
		Telemetry: tel,
		// Off the public listener when the operator gave metrics one.
		PrivateMetrics: s.metricsAddr != "",
		Ledger:         ingest.JobsLedger(jobs.NewLedger(ledgerKV, nil)),
		Webhook: &webhook.Handler{
			AppSecret:   []byte(s.appSecret),
			VerifyToken: s.verifyToken,
			MaxBody:     s.maxBody,
			Publisher:   &webhook.JetStreamPublisher{JS: js, Names: names, Tracer: tel.Tracer("github.com/groupflow/groupflow/internal/webhook")},
			Logger:      log,
			Metrics:     tel.Metrics(),
		},
	})
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on INGEST_ADDR %s: %w", s.addr, err)
	}
	// The ingest faces the internet: every phase of a connection has a
	// bound, so that slow or idle clients cannot hold goroutines, memory
	// and descriptors for ever. A 3 MB webhook arrives well within 30 s;
	// the write bound covers the body, the publish and the answer.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30*time.Second + webhook.DefaultPublishTimeout + 5*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	var private *http.Server
	var privateLn net.Listener
	if s.metricsAddr != "" {
		if privateLn, err = lc.Listen(ctx, "tcp", s.metricsAddr); err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on INGEST_METRICS_ADDR %s: %w", s.metricsAddr, err)
		}
		// Scrapers and probes only, as the worker's WORKER_ADDR.
		private = &http.Server{Handler: handler.Private(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10}
	}

	var g run.Group
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	g.Add(func() error {
		log.Info("ingest listening", slog.String("addr", ln.Addr().String()), slog.String("nats", config.RedactURL(s.nats.URL)))
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		if s.drain > 0 {
			// Unready but still serving, until the load balancer has
			// taken this instance out: closing the listener first refuses
			// the requests still routed here.
			handler.Drain()
			log.Info("draining: /readyz answers 503, requests are still served", slog.Duration("for", s.drain))
			time.Sleep(s.drain)
		}
		// Finish in-flight requests: each answers only after JetStream acked.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	})
	if private != nil {
		// Added after the public server, so it is stopped after it: the
		// metrics and probes still answer while the ingest drains.
		g.Add(func() error {
			log.Info("metrics and probes listening", slog.String("addr", privateLn.Addr().String()))
			if err := private.Serve(privateLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func(error) {
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = private.Shutdown(shutdownCtx)
		})
	}
	err = g.Run()
	var sig *run.SignalError // run returns a pointer; As into a value matches with a nil Signal
	switch {
	case errors.As(err, &sig):
		log.Info("ingest stopped", slog.String("signal", sig.Signal.String()))
		return nil
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		log.Info("ingest stopped")
		return nil
	}
	return err
}
