package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// Config wires the ingest's HTTP handler.
type Config struct {
	// Conn is the NATS connection, used for readiness.
	Conn *nats.Conn
	// JS publishes commands and reads the ledger.
	JS jetstream.JetStream
	// Names of subjects, streams and buckets. Defaults to the "groups" prefix.
	Names events.Names
	// Webhook serves GET and POST /webhook (webhook.Handler).
	Webhook http.Handler
	// APITokens are the bearer tokens accepted by the command API, each
	// entry written as INGEST_API_TOKENS has it (ParseAPITokens): a plain
	// token acts for every phone number; "<token>@<id>+<id>…" only for
	// those, and sees only their commands. With none, the command API
	// refuses every request.
	APITokens []string
	// APIRate bounds the requests each API token makes to the command API
	// (POST /v1/commands and GET /v1/commands/{id} together) on this
	// server, per second: a request over it is answered 429 with
	// Retry-After, before its body is read, and nothing is published. An
	// entry's own ";rate=" takes its place for its token. 0 (the default):
	// no bound.
	APIRate float64
	// APIBurst is how many requests a token may make at once, beyond its
	// rate, after a quiet spell. An entry's own ";burst=" takes its place.
	// Defaults to one second of the token's rate, at least 1.
	APIBurst int
	// Now tells the API tokens' rate bounds the time. Defaults to time.Now.
	Now func() time.Time
	// Ledger answers GET /v1/commands/{id} (with query.CommandStatus, the
	// command_status query's documented reply, never the raw entry) and
	// recognises re-sent command ids after the stream's duplicate window.
	// Without it, the status endpoint answers 404 and duplicates are found
	// by the stream alone.
	Ledger Ledger
	// MaxCommandBytes caps a command body. Defaults to 1 MiB.
	MaxCommandBytes int64
	// PublishTimeout bounds one JetStream publish. Defaults to 5 seconds.
	PublishTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Telemetry traces requests and publishes (when its tracing is on),
	// counts requests in http.server.request.duration and serves GET
	// /metrics. Optional: without it nothing is traced and /metrics is
	// absent.
	Telemetry *telemetry.Telemetry
	// PrivateMetrics serves GET /metrics on Server.Private only, and not
	// on this handler, which faces Meta and the command API's callers:
	// the metrics name the deployment's command types, error codes and
	// load, nothing the internet needs to read. Off by default: /metrics
	// is on this handler too.
	PrivateMetrics bool
}

// Ledger is what the ingest reads of the worker's command ledger.
type Ledger interface {
	// Lookup returns the command's ledger entry, or found = false when the
	// ledger does not know the id.
	Lookup(ctx context.Context, commandID string) (entry jobs.Entry, found bool, err error)
}

// Server is the ingest's HTTP handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	private *http.ServeMux
	tracer  trace.Tracer
	tokens  []apiToken
	metrics *telemetry.Metrics

	readyMu    sync.Mutex
	readyUntil time.Time
	draining   atomic.Bool
}

// Drain makes /readyz answer 503 from now on, while every other route
// keeps serving: on SIGTERM a load balancer stops sending new requests
// once it sees that, before the listener closes under requests in flight
// to it.
func (s *Server) Drain() { s.draining.Store(true) }

var _ http.Handler = (*Server)(nil)

// New returns the ingest handler.
func New(cfg Config) (*Server, error) {
	if cfg.JS == nil || cfg.Conn == nil {
		return nil, errors.New("ingest: Conn and JS are required")
	}
	if cfg.Webhook == nil {
		return nil, errors.New("ingest: Webhook handler is required")
	}
	cfg.MaxCommandBytes = cmp.Or(cfg.MaxCommandBytes, 1<<20)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, 5*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.APIRate < 0 || math.IsNaN(cfg.APIRate) || math.IsInf(cfg.APIRate, 0) {
		return nil, fmt.Errorf("ingest: APIRate %v: want a number of requests a second ≥ 0", cfg.APIRate)
	}
	if cfg.APIBurst < 0 {
		return nil, fmt.Errorf("ingest: APIBurst %d: want 0 or more", cfg.APIBurst)
	}
	tokens, err := newAPITokens(cfg.APITokens, cfg.APIRate, cfg.APIBurst)
	if err != nil {
		return nil, fmt.Errorf("ingest: APITokens: %w", err)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), private: http.NewServeMux(), tracer: noop.NewTracerProvider().Tracer(""), tokens: tokens}
	if cfg.Telemetry != nil {
		s.metrics = cfg.Telemetry.Metrics()
	}
	webhookRoute := cfg.Webhook
	var postCommand, getCommand http.Handler = s.auth(s.postCommand), s.auth(s.getCommand)
	switch tel := cfg.Telemetry; {
	case tel != nil && tel.TracingEnabled():
		s.tracer = tel.Tracer("github.com/groupflow/groupflow/internal/ingest")
		// Meta's trace context is not ours to continue: the webhook route
		// starts a new trace (linked to any incoming one); callers of the
		// command API are continued so their trace runs through groupflow.
		webhookRoute = tel.PublicHTTPHandler(webhookRoute, "webhook")
		postCommand = tel.HTTPHandler(postCommand, "POST /v1/commands")
		getCommand = tel.HTTPHandler(getCommand, "GET /v1/commands/{id}")
	case tel != nil:
		// Nothing to trace: the same request metrics, at a fraction of
		// otelhttp's cost per request.
		m, err := newHTTPMetrics(tel.MeterProvider())
		if err != nil {
			return nil, fmt.Errorf("ingest: HTTP metrics: %w", err)
		}
		webhookRoute = m.handler(webhookRoute)
		postCommand = m.handler(postCommand)
		getCommand = m.handler(getCommand)
	}
	if cfg.Telemetry != nil {
		s.private.Handle("GET /metrics", cfg.Telemetry.MetricsHandler())
		if !cfg.PrivateMetrics {
			s.mux.Handle("GET /metrics", cfg.Telemetry.MetricsHandler())
		}
	}
	s.mux.Handle("/webhook", webhookRoute)
	s.mux.Handle("POST /v1/commands", postCommand)
	s.mux.Handle("GET /v1/commands/{id}", getCommand)
	// The probes are on both: a load balancer checks the port it sends
	// to, an orchestrator may check either.
	for _, mux := range []*http.ServeMux{s.mux, s.private} {
		mux.HandleFunc("GET /healthz", s.healthz)
		mux.HandleFunc("GET /readyz", s.readyz)
	}
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Private is the handler of the ingest's private listener (cmd/ingest's
// INGEST_METRICS_ADDR), for operators and their scrapers only: GET
// /metrics (with Config.Telemetry), /healthz and /readyz, as the worker
// serves them on its WORKER_ADDR. Its requests are neither traced nor
// counted.
func (s *Server) Private() http.Handler { return s.private }

// auth calls next with the scope of the request's bearer token, or
// answers 401, or 429 when the token is over its rate bound.
func (s *Server) auth(next func(http.ResponseWriter, *http.Request, scope)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 9110 section 11.1), and one
		// or more spaces follow it (section 11.4).
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		sc, valid := scope{}, false
		if ok && strings.EqualFold(scheme, "Bearer") {
			sc, valid = s.authorise(strings.TrimLeft(token, " "))
		}
		if !valid {
			w.Header().Set("WWW-Authenticate", `Bearer realm="groupflow"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{Error: "missing or invalid bearer token"})
			return
		}
		// Before the body is read: a refused request costs a hash and
		// this, and publishes nothing.
		if sc.rate != nil {
			now := s.cfg.Now()
			if retryIn, ok := sc.rate.admit(now); !ok {
				s.refuseRate(w, r, sc, now, retryIn)
				return
			}
		}
		next(w, r, sc)
	}
}

type errorBody struct {
	Error  string              `json:"error"`
	Errors []events.FieldError `json:"errors,omitempty"`
}

type acceptedBody struct {
	ID     string `json:"id"`
	Status string `json:"status"` // "accepted" or "duplicate"
}

func (s *Server) postCommand(w http.ResponseWriter, r *http.Request, sc scope) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxCommandBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("command larger than %d bytes", s.cfg.MaxCommandBytes)})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "cannot read body"})
		return
	}
	cmd, err := events.DecodeCommand("", body)
	if err != nil {
		var verr *events.ValidationError
		if errors.As(err, &verr) {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid command", Errors: verr.Errors})
			return
		}
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid command: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	if !sc.allows(cmd.PhoneNumberID) {
		s.scopeRefused(ctx, sc, "command refused: the API token may not act for its phone number", cmd.ID, cmd.PhoneNumberID)
		writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf(
			"this API token may not act for phone_number_id %q: INGEST_API_TOKENS limits it to other phone numbers", cmd.PhoneNumberID)})
		return
	}

	// A command the ledger already knows is a duplicate for as long as the
	// ledger remembers it, not only within the stream's duplicate window.
	// One that is done has its stored result re-published, as a re-send
	// over NATS has: the worker does that when a copy comes, and the copy
	// goes under its own message id, which the stream's window would
	// otherwise drop as the original.
	msgID, resend := cmd.ID, false
	if s.cfg.Ledger != nil {
		if entry, known, err := s.cfg.Ledger.Lookup(ctx, cmd.ID); err == nil && known {
			if !sc.allows(entry.PhoneNumberID) {
				// Ids are one space for every caller, so the id is taken;
				// but what took it is another number's, not this token's
				// to see: not its type, number or group.
				s.scopeRefused(ctx, sc, "command refused: its id is used by a command of a phone number the API token may not act for", cmd.ID, entry.PhoneNumberID)
				writeJSON(w, http.StatusConflict, errorBody{Error: fmt.Sprintf(
					"command id %q is already used by another command: give a new command a new id (ids are remembered 7 days, and one space for every caller)", cmd.ID)})
				return
			}
			if why := entry.Conflict(cmd); why != "" {
				writeJSON(w, http.StatusConflict, errorBody{Error: fmt.Sprintf(
					"command id %q is already used by another command (%s): a re-send must repeat the same command; give a new command a new id (ids are remembered 7 days)", cmd.ID, why)})
				return
			}
			if !entry.Finished() {
				writeJSON(w, http.StatusOK, acceptedBody{ID: cmd.ID, Status: "duplicate"})
				return
			}
			msgID, resend = events.CopyMsgID(cmd.ID, "resent", nuid.Next()), true
		}
	}
	msg := nats.NewMsg(s.cfg.Names.Command(cmd.PhoneNumberID, cmd.Type))
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	ack, err := telemetry.PublishMsg(ctx, s.tracer, s.cfg.JS, msg)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "publish command failed", slog.String("command_id", cmd.ID),
			slog.String("phone_number_id", cmd.PhoneNumberID), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "message broker unavailable, retry"})
		return
	}
	if ack.Duplicate || resend {
		writeJSON(w, http.StatusOK, acceptedBody{ID: cmd.ID, Status: "duplicate"})
		return
	}
	writeJSON(w, http.StatusAccepted, acceptedBody{ID: cmd.ID, Status: "accepted"})
}

// scopeRefused logs a request its token's scope refused, naming the token
// by its entry: an authenticated caller asking for another number, which
// its operator wants to hear of. The answer is counted, by its status, in
// http.server.request.duration as every other refusal of the command API.
func (s *Server) scopeRefused(ctx context.Context, sc scope, msg, commandID, phone string) {
	s.cfg.Logger.WarnContext(ctx, msg, slog.Int("caller_entry", sc.entry),
		slog.String("command_id", commandID), slog.String("phone_number_id", phone))
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request, sc scope) {
	id := r.PathValue("id")
	if s.cfg.Ledger == nil {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "command status is not available"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	entry, found, err := s.cfg.Ledger.Lookup(ctx, id)
	switch {
	case err != nil:
		s.cfg.Logger.WarnContext(ctx, "ledger lookup failed", slog.String("command_id", id), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "ledger unavailable, retry"})
	case !found:
		notInLedger(w)
	case !sc.allows(entry.PhoneNumberID):
		// Another number's command (or one rejected before its number was
		// known) is no business of a token limited to numbers: answered as
		// an unknown id, so ids of other callers do not show.
		s.scopeRefused(ctx, sc, "command status hidden: the command's phone number is not one the API token may act for", id, entry.PhoneNumberID)
		notInLedger(w)
	default:
		// The documented shape, as the command_status query answers it:
		// the entry itself has the claim and other internals in it.
		status, err := query.CommandStatus(entry)
		if err != nil {
			s.cfg.Logger.ErrorContext(ctx, "command status unreadable", slog.String("command_id", id), slog.Any("error", err))
			writeJSON(w, http.StatusInternalServerError, errorBody{Error: "command status unreadable"})
			return
		}
		writeJSON(w, http.StatusOK, status)
	}
}

// notInLedger answers GET /v1/commands/{id} for an id the ledger does not
// know. Nothing cheap tells an accepted command still in the stream from
// one never sent (the stream is not indexed by message id), and the POST
// path writes nothing but the command: say what each means.
func notInLedger(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, errorBody{Error: "command id not in the ledger: a command appears there once a worker takes it. " +
		"If POST /v1/commands answered 202 for it, it is waiting in the command stream (a backlog, or no worker running): ask again later. " +
		"Otherwise it was never received, or it is older than the ledger's 7 days"})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when NATS is connected and the streams the ingest
// publishes to exist. A success is cached for a second so probes stay cheap.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining: shutting down"})
		return
	}
	s.readyMu.Lock()
	fresh := time.Now().Before(s.readyUntil)
	s.readyMu.Unlock()
	if fresh {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	if !s.cfg.Conn.IsConnected() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "nats disconnected"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	for _, name := range []string{s.cfg.Names.CommandStream(), s.cfg.Names.WebhookStream()} {
		if _, err := s.cfg.JS.Stream(ctx, name); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stream " + name + " unavailable"})
			return
		}
	}
	s.readyMu.Lock()
	s.readyUntil = time.Now().Add(time.Second)
	s.readyMu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
