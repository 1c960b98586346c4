package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/telemetry"
)

const (
	// ServiceName is the micro service name (nats micro info groupflow-query).
	ServiceName = "groupflow-query"
	// QueueGroup is the queue group every worker serves the endpoints in.
	QueueGroup = "groupflow-query"
	// Version is the version of the query contract the service announces.
	Version = "1.0.0"
)

// Graph is what the service needs of the Graph API client.
type Graph interface {
	GroupInfo(ctx context.Context, groupID string, fields ...string) (graph.GroupInfo, error)
	ListGroups(ctx context.Context, phoneID string, opts graph.PageOptions) (graph.GroupsPage, error)
	ListJoinRequests(ctx context.Context, groupID string, opts graph.PageOptions) (graph.JoinRequestsPage, error)
	InviteLink(ctx context.Context, groupID string) (string, error)
}

var _ Graph = (*graph.Client)(nil)

// Limiter paces Graph reads per phone number and shares Meta's throttles
// with every worker (ratelimit.Limiter). Pause and AccountOf let a
// throttling answer to a read stop the number's calls everywhere, as one
// to a command does.
type Limiter interface {
	Wait(ctx context.Context, phone string, class ratelimit.Class) error
	Pause(ctx context.Context, scope ratelimit.Scope, until time.Time, reason string) error
	AccountOf(phone string) ratelimit.Scope
}

var _ Limiter = (*ratelimit.Limiter)(nil)

// Ledger is the command ledger (jobs.Ledger).
type Ledger interface {
	Get(ctx context.Context, commandID string) (jobs.Entry, uint64, error)
}

var _ Ledger = (*jobs.Ledger)(nil)

// Owners tells whether groups belong to a phone number (jobs.Owners),
// listing the number's groups through list when it does not know.
type Owners interface {
	Check(ctx context.Context, phone string, groups []string, list jobs.GroupLister) error
}

var _ Owners = (*jobs.Owners)(nil)

// Config configures a Service.
type Config struct {
	// Conn is the NATS connection the service answers on. Required.
	Conn *nats.Conn
	// JS opens the reads bucket (Names.ReadsBucket, made by events.Ensure).
	// Required unless the cache is off.
	JS jetstream.JetStream
	// Names gives subjects and bucket names. Defaults to prefix "groups".
	Names events.Names
	// Graph reads from the Graph API. Required.
	Graph Graph
	// Limiter paces the reads (class ratelimit.Reads). Required.
	Limiter Limiter
	// Ledger answers command_status. Required.
	Ledger Ledger
	// Owners answers a read about a group only for the group's own phone
	// number: callers may be allowed one number's subjects only, and every
	// number shares the worker's Graph access token. Defaults to records
	// over JS's owner bucket (Names.OwnerBucket); cmd/worker gives its
	// worker's (jobs.Worker.Owners), which shares what webhooks teach it.
	Owners Owners
	// CacheTTL is how long an answer is served from the cache. Defaults to
	// the reads bucket's TTL (events.TopologyConfig.ReadsTTL, 30 s), which
	// also caps it. Negative turns the cache off.
	CacheTTL time.Duration
	// Concurrency is how many requests one process answers at once.
	// Defaults to 64.
	Concurrency int
	// RequestTimeout bounds the work on one request (limiter wait, Graph
	// call, cache). Defaults to 15 s.
	RequestTimeout time.Duration
	// Version is announced in the micro service info. Defaults to Version.
	Version string
	// Logger receives failures. Defaults to slog.Default().
	Logger *slog.Logger
	// Tracer starts the consumer span of each request, continuing the
	// traceparent of its headers. Defaults to a no-op tracer.
	Tracer trace.Tracer
	// Now tells the time (cache age, retry-after). Defaults to time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	c.Concurrency = cmp.Or(c.Concurrency, 64)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, 15*time.Second)
	c.Version = cmp.Or(c.Version, Version)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Tracer == nil {
		c.Tracer = noop.NewTracerProvider().Tracer(telemetry.ScopeName)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	var missing []string
	for name, ok := range map[string]bool{
		"Conn": c.Conn != nil, "Graph": c.Graph != nil, "Limiter": c.Limiter != nil,
		"Ledger": c.Ledger != nil, "JS": c.JS != nil || c.CacheTTL < 0 && c.Owners != nil,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if missing != nil {
		return fmt.Errorf("query: config: %s required", strings.Join(missing, ", "))
	}
	if c.Concurrency < 1 || c.RequestTimeout <= 0 {
		return errors.New("query: config: Concurrency and RequestTimeout must be positive")
	}
	return nil
}

// Service answers the queries. Create it with New, then Start it (or Run).
type Service struct {
	cfg       Config
	log       *slog.Logger
	endpoints []*endpoint
	sem       chan struct{}

	mu      sync.Mutex
	state   int // 0 new, 1 started, 2 stopped
	svc     micro.Service
	cache   *cache // nil when the cache is off
	owners  Owners
	running sync.WaitGroup
	// base is the parent of every request's context: requests must outlive
	// Start's ctx, and Stop cancels them when it stops waiting.
	base   context.Context
	cancel context.CancelFunc
}

// endpoint is one query with its counters for the micro stats.
type endpoint struct {
	name, reqSchema, replySchema string
	cached                       bool
	handle                       func(ctx context.Context, phone string, data []byte) (body []byte, hit bool, err error)

	requests, errors, hits, misses, throttled, nanos atomic.Int64
	lastError                                        atomic.Value // string
}

// EndpointStats is each endpoint's data in micro's STATS answer: the
// counts micro cannot see because replies are sent off its goroutine.
type EndpointStats struct {
	Requests          int64   `json:"requests"`
	Errors            int64   `json:"errors"`
	Throttled         int64   `json:"throttled"`
	CacheHits         int64   `json:"cache_hits"`
	CacheMisses       int64   `json:"cache_misses"`
	AverageDurationMS float64 `json:"average_duration_ms"`
	LastError         string  `json:"last_error,omitempty"`
}

// New checks cfg and returns a Service; it makes no call.
func New(cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.Concurrency)}
	s.endpoints = []*endpoint{
		{name: events.QueryGroupInfo, cached: true, handle: s.groupInfo},
		{name: events.QueryListGroups, cached: true, handle: s.listGroups},
		{name: events.QueryListJoinRequests, cached: true, handle: s.listJoinRequests},
		{name: events.QueryInviteLink, cached: true, handle: s.inviteLink},
		{name: events.QueryCommandStatus, handle: s.commandStatus},
	}
	for _, ep := range s.endpoints {
		ep.reqSchema, ep.replySchema = "query."+ep.name+".request.json", "query."+ep.name+".reply.json"
	}
	return s, nil
}

// Start opens the cache and adds the micro service with its endpoints.
// ctx bounds the start only. A Service starts once.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 0 {
		return errors.New("query: service already started")
	}
	s.owners = s.cfg.Owners
	if s.owners == nil {
		kv, err := s.cfg.JS.KeyValue(ctx, s.cfg.Names.OwnerBucket())
		if err != nil {
			return fmt.Errorf("query: open owner bucket %s: %w", s.cfg.Names.OwnerBucket(), err)
		}
		s.owners = jobs.NewOwners(kv)
	}
	if s.cfg.CacheTTL >= 0 {
		kv, err := s.cfg.JS.KeyValue(ctx, s.cfg.Names.ReadsBucket())
		if err != nil {
			return fmt.Errorf("query: open reads bucket %s: %w", s.cfg.Names.ReadsBucket(), err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return fmt.Errorf("query: reads bucket status: %w", err)
		}
		ttl := s.cfg.CacheTTL
		if bt := st.TTL(); bt > 0 && (ttl == 0 || ttl > bt) {
			ttl = bt
		}
		if ttl == 0 {
			return fmt.Errorf("query: reads bucket %s has no TTL and Config.CacheTTL is 0", s.cfg.Names.ReadsBucket())
		}
		s.cache = &cache{kv: kv, ttl: ttl, now: s.cfg.Now}
	}
	s.base, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	// The endpoints' handlers run on NATS callbacks after Start returns; their
	// contexts derive from s.base, made from ctx just above.
	err := s.startLocked() //nolint:contextcheck // see above
	if err == nil {
		// The server has the subscriptions once it answers a ping: Start
		// returns when requests can reach this process.
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nats wants a deadline
		err = s.cfg.Conn.FlushWithContext(fctx)
		cancel()
	}
	if err != nil {
		_ = s.stopLocked()
		s.cancel()
		return err
	}
	s.state = 1
	return nil
}

func (s *Service) startLocked() error {
	svc, err := micro.AddService(s.cfg.Conn, micro.Config{
		Name:        ServiceName,
		Version:     s.cfg.Version,
		Description: "groupflow reads: groups, join requests, invite links and command state, rate-limited and cached",
		Metadata:    map[string]string{"prefix": s.prefix(), "cache_ttl": s.cacheTTL().String()},
		QueueGroup:  QueueGroup,
		StatsHandler: func(e *micro.Endpoint) any {
			if ep := s.endpoint(e.Name); ep != nil {
				return ep.stats()
			}
			return nil
		},
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			s.log.Error("query service", slog.String("subject", err.Subject), slog.String("error", err.Description))
		},
	})
	if err != nil {
		return fmt.Errorf("query: add micro service: %w", err)
	}
	s.svc = svc
	for _, ep := range s.endpoints {
		md := map[string]string{
			"request_schema": ep.reqSchema,
			"reply_schema":   ep.replySchema,
			"error_schema":   "query.error.json",
			"cached":         fmt.Sprint(ep.cached && s.cache != nil),
		}
		if err := svc.AddEndpoint(ep.name, s.handler(ep),
			micro.WithEndpointSubject(s.cfg.Names.Query("*", ep.name)),
			micro.WithEndpointMetadata(md)); err != nil {
			return fmt.Errorf("query: add endpoint %s: %w", ep.name, err)
		}
	}
	return nil
}

func (s *Service) prefix() string { return cmp.Or(s.cfg.Names.Prefix, events.DefaultPrefix) }

func (s *Service) cacheTTL() time.Duration {
	if s.cache == nil {
		return 0
	}
	return s.cache.ttl
}

// Stop stops taking requests, waits until ctx is done for those being
// answered (their callers get their answers), then cancels the rest, which
// answer 503. Requests still queued in the client when Stop begins answer
// 503 at once: the caller's retry goes to another worker.
func (s *Service) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.state != 1 {
		s.mu.Unlock()
		return nil
	}
	s.state = 2
	err := s.stopLocked()
	s.mu.Unlock()
	// Once the server answers a ping it has the unsubscriptions: no new
	// request is routed here after Stop returns.
	if ferr := s.cfg.Conn.FlushTimeout(5 * time.Second); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		err = errors.Join(err, fmt.Errorf("query: flush: %w", ferr))
	}

	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	return err
}

func (s *Service) stopLocked() error {
	if s.svc != nil {
		if err := s.svc.Stop(); err != nil {
			return fmt.Errorf("query: stop micro service: %w", err)
		}
	}
	return nil
}

// Run starts the service, serves until ctx is done, then stops, giving
// the requests being answered up to shutdown to finish.
func (s *Service) Run(ctx context.Context, shutdown time.Duration) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdown)
	defer cancel()
	return s.Stop(sctx)
}

func (s *Service) endpoint(name string) *endpoint {
	for _, ep := range s.endpoints {
		if ep.name == name {
			return ep
		}
	}
	return nil
}

// handler hands each request to a goroutine of its own (see doc.go),
// at most Concurrency at once.
func (s *Service) handler(ep *endpoint) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		if req.Reply() == "" {
			return // nobody is waiting: spend no quota on it
		}
		msg := &nats.Msg{Subject: req.Subject(), Reply: req.Reply(), Header: nats.Header(req.Headers()), Data: req.Data()}
		s.mu.Lock()
		if s.state != 1 {
			s.mu.Unlock()
			s.respondError(msg, asError(errStopping, s.cfg.Now()))
			return
		}
		s.running.Add(1)
		s.mu.Unlock()
		s.sem <- struct{}{}
		go func() {
			defer func() { <-s.sem; s.running.Done() }()
			s.serve(ep, msg)
		}()
	})
}

func (s *Service) serve(ep *endpoint, msg *nats.Msg) {
	start := s.cfg.Now()
	ctx, cancel := context.WithTimeout(s.base, s.cfg.RequestTimeout)
	defer cancel()
	ctx, span := telemetry.StartDelivery(ctx, s.cfg.Tracer, telemetry.Delivery{Subject: msg.Subject, Header: msg.Header, Consumer: QueueGroup})
	defer span.End()

	var body []byte
	var hit bool
	phone, err := s.phoneOf(msg.Subject)
	if err == nil {
		body, hit, err = ep.handle(ctx, phone, msg.Data)
	}
	ep.requests.Add(1)
	defer func() { ep.nanos.Add(int64(s.cfg.Now().Sub(start))) }()
	span.SetAttributes(attribute.String("groupflow.query", ep.name))
	if err != nil {
		qe := asError(err, s.cfg.Now())
		ep.errors.Add(1)
		ep.lastError.Store(fmt.Sprintf("%d:%s", qe.Code, qe.Message))
		if qe.Code == CodeThrottled {
			ep.throttled.Add(1)
		}
		span.SetAttributes(attribute.Int("groupflow.query.error_code", qe.Code))
		if qe.Code >= 500 {
			telemetry.RecordError(span, err)
			s.log.WarnContext(ctx, "query failed", slog.String("endpoint", ep.name), slog.String("phone_number_id", phone),
				slog.Int("code", qe.Code), slog.Any("error", err))
		}
		s.respondError(msg, qe)
		return
	}
	h := nats.Header{}
	if ep.cached && s.cache != nil {
		result := "miss"
		if hit {
			result = "hit"
			ep.hits.Add(1)
		} else {
			ep.misses.Add(1)
		}
		h.Set(CacheHeader, result)
		span.SetAttributes(attribute.Bool("groupflow.query.cache_hit", hit))
	}
	if err := s.cfg.Conn.PublishMsg(&nats.Msg{Subject: msg.Reply, Header: h, Data: body}); err != nil {
		s.log.WarnContext(ctx, "query reply", slog.String("endpoint", ep.name), slog.Any("error", err))
	}
}

func (s *Service) respondError(msg *nats.Msg, qe *Error) {
	body, _ := json.Marshal(qe)
	if err := s.cfg.Conn.PublishMsg(&nats.Msg{Subject: msg.Reply, Header: qe.headers(), Data: body}); err != nil {
		s.log.Warn("query error reply", slog.String("subject", msg.Subject), slog.Any("error", err))
	}
}

// phoneOf takes the phone number id from <prefix>.query.<phone>.<name>.
func (s *Service) phoneOf(subject string) (string, error) {
	rest, _ := strings.CutPrefix(subject, s.prefix()+".query.")
	phone, _, _ := strings.Cut(rest, ".")
	if !validPhone(phone) {
		return "", badRequest(events.FieldError{Field: "subject", Message: "the phone number id (subject token after query) must be numeric"})
	}
	return phone, nil
}

// validPhone is common.json's numeric_id: it also keeps cache keys valid.
func validPhone(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for i := range len(p) {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func (ep *endpoint) stats() EndpointStats {
	st := EndpointStats{
		Requests: ep.requests.Load(), Errors: ep.errors.Load(), Throttled: ep.throttled.Load(),
		CacheHits: ep.hits.Load(), CacheMisses: ep.misses.Load(),
	}
	if st.Requests > 0 {
		st.AverageDurationMS = float64(ep.nanos.Load()) / float64(st.Requests) / 1e6
	}
	st.LastError, _ = ep.lastError.Load().(string)
	return st
}
