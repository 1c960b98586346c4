// Command graphsim serves the WhatsApp Groups API simulator
// (internal/graph/sim) on one port: the Graph API paths (any /vNN.N prefix)
// and the /_sim/ admin API. Every flag has an environment mirror
// (GRAPHSIM_<FLAG>, e.g. GRAPHSIM_ADDR for --addr); flags win. The access
// token and app secret may also come from files (GRAPHSIM_ACCESS_TOKEN_FILE,
// GRAPHSIM_APP_SECRET_FILE).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

func main() {
	if err := runMain(context.Background(), os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "graphsim:", err)
		os.Exit(1)
	}
}

type options struct {
	addr          string
	accessToken   string
	appSecret     string
	webhookURL    string
	wabaID        string
	numbers       string
	seed          int64
	webhookDelay  time.Duration
	hookAttempts  int
	hookBackoff   time.Duration
	mps           int
	pairInterval  time.Duration
	groupOps      int
	maxGroups     int
	bsuid         bool
	logLevel      string
	shutdownGrace time.Duration
}

// secretFlags come from the environment through config.Env.Secret, so they
// may also be read from <NAME>_FILE.
var secretFlags = map[string]bool{"access-token": true, "app-secret": true}

func envName(flagName string) string {
	return "GRAPHSIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads the environment mirrors first, then the flags, which win.
func parse(args []string, getenv func(string) string) (options, error) {
	var o options
	fs := flag.NewFlagSet("graphsim", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8090", "address to listen on")
	fs.StringVar(&o.accessToken, "access-token", sim.DefaultAccessToken, "bearer token Graph calls must carry")
	fs.StringVar(&o.appSecret, "app-secret", sim.DefaultAppSecret, "app secret that signs webhooks (X-Hub-Signature-256)")
	fs.StringVar(&o.webhookURL, "webhook-url", "", "where webhooks are POSTed (empty: recorded only, see /_sim/webhooks)")
	fs.StringVar(&o.wabaID, "waba-id", sim.DefaultWABAID, "WhatsApp Business Account id of every number")
	// The README's numbers: the worker checks that ensure_invite_template's
	// account is its number's, and an account lists a number it has not
	// used yet only when named here.
	fs.StringVar(&o.numbers, "numbers", "106540352242922,106540352242923", "phone number ids, comma separated, that GET /{waba-id}/phone_numbers lists from the start (others once used)")
	fs.Int64Var(&o.seed, "seed", 0, "seed for ids, faults and status behaviour (0: a new one each start, logged; set one to repeat a run)")
	fs.DurationVar(&o.webhookDelay, "webhook-delay", sim.DefaultWebhookDelay, "delay between an operation and its webhook")
	// Meta keeps retrying a webhook its endpoint refuses for hours; these
	// defaults give an ingest restarted under load about 10 minutes.
	fs.IntVar(&o.hookAttempts, "webhook-max-attempts", 30, "deliveries of one webhook before the simulator gives up on an endpoint that refuses it")
	fs.DurationVar(&o.hookBackoff, "webhook-retry-max-backoff", 30*time.Second, "longest wait between re-deliveries of a refused webhook (the first is 50ms, doubling)")
	fs.IntVar(&o.mps, "mps", sim.DefaultMPS, "messages per second per number before 130429 (negative: unlimited)")
	fs.DurationVar(&o.pairInterval, "pair-interval", sim.DefaultPairInterval, "minimum gap between 1:1 messages to one user before 131056 (negative: off)")
	fs.IntVar(&o.groupOps, "group-ops-per-second", sim.DefaultGroupOps, "group operations per second per number before 131208 (negative: unlimited)")
	fs.IntVar(&o.maxGroups, "max-groups", sim.MaxGroupsPerNumber, "active groups per number before 131211")
	fs.BoolVar(&o.bsuid, "bsuid", false, "add business-scoped user ids to participants and webhooks")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 5*time.Second, "time in-flight calls get to finish on SIGTERM")

	e := config.NewEnv(getenv)
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		var v string
		if secretFlags[f.Name] {
			v = e.Secret(name, f.Usage)
		} else {
			v = e.String(name, "", f.Usage)
		}
		if v == "" {
			return
		}
		if err := f.Value.Set(v); err != nil {
			e.Check(false, name, "want a value like %q", f.DefValue)
		}
	})
	if err := e.Err(); err != nil {
		return o, err
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

// safeURL drops credentials and the query string, which may hold secrets.
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func runMain(ctx context.Context, args []string, getenv func(string) string) error {
	o, err := parse(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("invalid configuration: log level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if o.seed == 0 {
		// A fixed default repeated every id (request ids, group ids, wamids)
		// after a restart, while the workers' correlation and ledger
		// buckets kept the previous run's: the second `make run` found its
		// first create_group's request id already linked to the first run's
		// command and never completed it.
		o.seed = time.Now().UnixNano()
	}
	cfg := sim.Config{
		AccessToken:            o.accessToken,
		AppSecret:              o.appSecret,
		WebhookURL:             o.webhookURL,
		WABAID:                 o.wabaID,
		Seed:                   o.seed,
		WebhookDelay:           o.webhookDelay,
		WebhookMaxAttempts:     o.hookAttempts,
		WebhookRetryMaxBackoff: o.hookBackoff,
		MPS:                    o.mps,
		PairInterval:           o.pairInterval,
		GroupOpsPerSecond:      o.groupOps,
		MaxGroupsPerNumber:     o.maxGroups,
		BSUID:                  o.bsuid,
		Logger:                 log,
	}
	for n := range strings.SplitSeq(o.numbers, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if strings.Trim(n, "0123456789") != "" {
			return fmt.Errorf("invalid configuration: --numbers: %q is not a phone number id (digits)", n)
		}
		if cfg.Accounts == nil {
			cfg.Accounts = map[string]string{}
		}
		cfg.Accounts[n] = o.wabaID
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	if o.webhookURL != "" {
		if u, err := url.Parse(o.webhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("invalid configuration: webhook URL must be an http(s) URL")
		}
	}

	s := sim.New(cfg)
	defer s.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.addr, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}

	var g run.Group
	g.Add(run.SignalHandler(ctx, os.Interrupt, syscall.SIGTERM))
	g.Add(func() error {
		log.Info("graphsim listening",
			slog.String("addr", ln.Addr().String()),
			slog.String("webhook_url", safeURL(o.webhookURL)),
			slog.String("waba_id", o.wabaID),
			slog.Int64("seed", o.seed),
			slog.String("webhook_delay", o.webhookDelay.String()),
			slog.Int("mps", o.mps),
			slog.Bool("default_credentials", o.accessToken == sim.DefaultAccessToken && o.appSecret == sim.DefaultAppSecret))
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}, func(error) {
		// Release calls hanging on an injected timeout first, so Shutdown
		// does not wait out its grace period for them.
		s.Close()
		// ctx may be cancelled already: shutdown gets its own deadline.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.shutdownGrace)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	})
	err = g.Run()
	if errors.Is(err, run.ErrSignal) || errors.Is(err, context.Canceled) {
		log.Info("graphsim stopped", slog.String("reason", err.Error()))
		return nil
	}
	return err
}
