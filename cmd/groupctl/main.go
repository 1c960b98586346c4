// Command groupctl is groupflow's operator CLI: submit a command, follow
// events, show a command's ledger state and a campaign's progress, list,
// replay or purge the dead-letter queue, check stream and consumer health,
// and read groups through the query service. `groupctl demo` walks through
// the laptop stack that `make run` starts.
//
// It connects to NATS like the other binaries (NATS_URL, NATS_CREDS, …,
// GROUPFLOW_PREFIX, NATS_INBOX_PREFIX); --nats-url, --creds, --prefix and
// --inbox-prefix override them.
// Exit codes: 0 done, 1 failed (or unhealthy, or a waited-for command did
// not succeed), 2 usage error. Errors are one line on stderr.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitError ends the program with code; err (if any) is printed as the one
// line of explanation.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports a mistake in how groupctl was called (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// failed reports a failure (exit 1): err, or nil when the explanation is
// already on stdout.
func failed(err error) error { return &exitError{code: exitFailure, err: err} }

// run is the whole program: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := newApp(getenv, stdin, stdout, stderr)
	if slices.Contains(args, "--print-config") {
		if err := config.PrintVars(stdout, a.env.Vars()); err != nil {
			fmt.Fprintln(stderr, "groupctl:", err)
			return exitFailure
		}
		return exitOK
	}
	defer a.close(ctx)
	// The commands' RunE read ctx back through c.Context() (ExecuteContext).
	root := a.rootCommand() //nolint:contextcheck // see above
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailure
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		code = exitUsage // cobra's own, for safety: every other path is typed
	}
	if msg := err.Error(); ee == nil || ee.err != nil {
		fmt.Fprintln(stderr, "groupctl:", oneLine(msg))
	}
	return code
}

// oneLine keeps an error to one line whatever it wraps.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// app holds what every command shares: configuration, output and the NATS
// connection, opened on first use.
type app struct {
	env    *config.Env
	getenv func(string) string
	nats   config.NATS
	// phone is GROUPCTL_PHONE_NUMBER_ID: the business number commands and
	// queries use when --phone is not given.
	phone string

	stdin          io.Reader
	stdout, stderr io.Writer

	// Global flags.
	natsURL, creds, prefix, inboxPrefix string
	timeout                             time.Duration

	nc      *nats.Conn
	js      jetstream.JetStream
	refused refusals
	tel     *telemetry.Telemetry
	tracer  trace.Tracer
}

func newApp(getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) *app {
	e := config.NewEnv(getenv)
	a := &app{env: e, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	a.nats = config.LoadNATS(e)
	a.phone = e.String("GROUPCTL_PHONE_NUMBER_ID", "", "business phone number id groupctl submits and queries for when --phone is not given")
	return a
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "groupctl",
		Short: "Operate groupflow: submit commands, follow events, inspect the ledger, DLQ and health",
		Long: `groupctl talks to groupflow through NATS: it publishes commands, follows the
event stream, reads the command ledger and campaign progress, manages the
dead-letter queue and reports the health of streams, consumers and workers.

Configuration comes from the same environment as the other binaries (NATS_URL,
NATS_CREDS, NATS_NKEY, NATS_USER/NATS_PASSWORD, NATS_TLS_*, GROUPFLOW_PREFIX,
NATS_INBOX_PREFIX); the global flags override it. --print-config lists every
variable read.

Exit codes: 0 done, 1 failed or unhealthy, 2 usage error.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noSubcommand,
		RunE:          func(c *cobra.Command, _ []string) error { return c.Help() },
		Version:       version(),
	}
	root.CompletionOptions.HiddenDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%v (see %s --help)", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.natsURL, "nats-url", "", "NATS server URL(s), comma separated (env NATS_URL, default "+nats.DefaultURL+")")
	pf.StringVar(&a.creds, "creds", "", "NATS .creds file (env NATS_CREDS)")
	pf.StringVar(&a.prefix, "prefix", "", "prefix of subjects, streams and buckets (env GROUPFLOW_PREFIX, default groups)")
	pf.StringVar(&a.inboxPrefix, "inbox-prefix", "", "prefix of reply subjects, the one your NATS user may subscribe to (env NATS_INBOX_PREFIX, default _INBOX)")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "time limit of each request to NATS")
	pf.Bool("print-config", false, "print the environment variables groupctl reads, as JSON lines, and exit")

	root.AddCommand(
		a.submitCommand(),
		a.eventsCommand(),
		a.statusCommand(),
		a.campaignCommand(),
		a.dlqCommand(),
		a.healthCommand(),
		a.migrateCommand(),
		a.groupCommand(),
		a.demoCommand(),
	)
	return root
}

// noSubcommand makes a parent command refuse an unknown subcommand (cobra
// would print the help and succeed).
func noSubcommand(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unknown command %q for %q (see %s --help)", args[0], c.CommandPath(), c.CommandPath())
	}
	return nil
}

// parentCommand is a command that only groups subcommands.
func parentCommand(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use: use, Short: short, Args: noSubcommand,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	c.AddCommand(subs...)
	return c
}

// exactArgs demands the named positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s needs %d argument(s): %s, got %d (see %s --help)",
				c.CommandPath(), len(names), strings.Join(names, " "), len(args), c.CommandPath())
		}
		return nil
	}
}

// names is the subject and bucket naming of the configured prefix.
func (a *app) names() events.Names {
	if a.prefix != "" {
		return events.Names{Prefix: a.prefix}
	}
	return events.Names{Prefix: a.nats.Prefix}
}

// connect opens the NATS connection on first use. Unlike the services,
// groupctl does not wait for a server that is not there: it fails fast.
func (a *app) connect(ctx context.Context) (jetstream.JetStream, error) {
	if a.js != nil {
		return a.js, nil
	}
	if err := a.env.Err(); err != nil {
		return nil, usageErrorf("invalid configuration: %v", err)
	}
	n := a.nats
	if a.natsURL != "" {
		n.URL = a.natsURL
	}
	if a.creds != "" {
		n.Creds = a.creds
	}
	if a.inboxPrefix != "" {
		if !config.ValidInboxPrefix(a.inboxPrefix) {
			return nil, usageErrorf("--inbox-prefix %q is not a subject prefix (no wildcards, spaces or empty tokens)", a.inboxPrefix)
		}
		n.InboxPrefix = a.inboxPrefix
	}
	if !events.ValidPrefix(a.names().Prefix) {
		return nil, usageErrorf("prefix %q: want ASCII letters, digits, - and _ (it names subjects, streams and buckets)", a.names().Prefix)
	}
	nc, err := n.Connect("groupctl",
		nats.RetryOnFailedConnect(false),
		nats.MaxReconnects(10),
		nats.Timeout(min(a.timeout, 5*time.Second)),
		nats.ErrorHandler(a.refused.handle),
	)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "groupctl", ServiceVersion: version(), Getenv: a.getenv})
	if err != nil {
		nc.Close()
		return nil, err
	}
	a.nc, a.js, a.tel = nc, js, tel
	a.tracer = tel.Tracer("github.com/groupflow/groupflow/cmd/groupctl")
	return js, nil
}

// close flushes telemetry and NATS; ctx may be cancelled already (Ctrl-C),
// so only its values are kept.
func (a *app) close(ctx context.Context) {
	if a.tel != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = a.tel.Shutdown(ctx)
		cancel()
	}
	if a.nc != nil {
		_ = a.nc.FlushTimeout(2 * time.Second)
		a.nc.Close()
	}
}

// requestCtx bounds one request by --timeout.
func (a *app) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// phoneOr is the --phone value, else GROUPCTL_PHONE_NUMBER_ID.
func (a *app) phoneOr(flag string) (string, error) {
	p := flag
	if p == "" {
		p = a.phone
	}
	if p == "" {
		return "", usageErrorf("--phone is required (or set GROUPCTL_PHONE_NUMBER_ID)")
	}
	if !events.ValidToken(p) {
		return "", usageErrorf("--phone %q is not a phone number id", p)
	}
	return p, nil
}

func (a *app) printf(format string, args ...any) { fmt.Fprintf(a.stdout, format, args...) }

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}
