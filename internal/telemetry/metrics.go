package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metric names (OpenTelemetry form). The Prometheus exporter renders them
// with dots as underscores, a unit suffix for seconds and _total for
// counters: groupflow.commands → groupflow_commands_total,
// groupflow.command.duration → groupflow_command_duration_seconds_{bucket,sum,count}.
// deploy/grafana and deploy/prometheus use the rendered names; a test checks
// they exist.
const (
	MetricCommands          = "groupflow.commands"                   // counter {command}: command_type, outcome
	MetricCommandDuration   = "groupflow.command.duration"           // histogram s: command_type, outcome
	MetricGraphCalls        = "groupflow.graph.calls"                // counter {call}: endpoint, status, code
	MetricGraphCallDuration = "groupflow.graph.call.duration"        // histogram s: endpoint, status
	MetricRateLimitWait     = "groupflow.ratelimit.wait.duration"    // histogram s: class, outcome
	MetricThrottles         = "groupflow.throttles"                  // counter {throttle}: code, scope
	MetricWebhooks          = "groupflow.webhooks"                   // counter {webhook}: field, result
	MetricSignatureFailures = "groupflow.webhook.signature_failures" // counter {failure}: reason
	MetricCampaignInvites   = "groupflow.campaign.invites"           // counter {invite}: outcome
	MetricDLQMessages       = "groupflow.dlq.messages"               // gauge {message}: stream
	MetricParkedCommands    = "groupflow.parked.commands"            // gauge {command}: stream
	MetricConsumerLag       = "groupflow.consumer.lag"               // gauge {message}: stream, consumer
	MetricConsumerAckPend   = "groupflow.consumer.ack_pending"       // gauge {message}: stream, consumer
	MetricTokenRefused      = "groupflow.graph.access_token_refused" //nolint:gosec // a metric's name. Gauge {worker}: 1 while Graph refuses the worker's token
	MetricAPIRateLimited    = "groupflow.api.rate_limited"           // counter {request}: caller_entry
)

// Metric attribute keys: plain snake_case so they are also the Prometheus
// label names.
const (
	KeyCommandType = attribute.Key("command_type")
	KeyOutcome     = attribute.Key("outcome")
	KeyEndpoint    = attribute.Key("endpoint")
	KeyStatus      = attribute.Key("status")
	KeyCode        = attribute.Key("code")
	KeyClass       = attribute.Key("class")
	KeyScope       = attribute.Key("scope")
	KeyField       = attribute.Key("field")
	KeyResult      = attribute.Key("result")
	KeyReason      = attribute.Key("reason")
	KeyStream      = attribute.Key("stream")
	KeyConsumer    = attribute.Key("consumer")
	// KeyCallerEntry is an API token's place in INGEST_API_TOKENS (from
	// 1), as the ingest's logs name it: never the token.
	KeyCallerEntry = attribute.Key("caller_entry")
)

// durationBuckets (seconds) span a fast Graph call to a command that waited
// out a throttle; the SDK's default buckets assume milliseconds.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics are groupflow's metric instruments, created once per process from
// a meter (Telemetry.Metrics) and recorded through the methods below so that
// names, units and label keys stay in one place. A nil *Metrics records
// nothing, so components can take one optionally.
type Metrics struct {
	meter             metric.Meter
	commands          metric.Int64Counter
	commandDuration   metric.Float64Histogram
	graphCalls        metric.Int64Counter
	graphCallDuration metric.Float64Histogram
	rateLimitWait     metric.Float64Histogram
	throttles         metric.Int64Counter
	webhooks          metric.Int64Counter
	signatureFailures metric.Int64Counter
	campaignInvites   metric.Int64Counter
	dlqMessages       metric.Int64ObservableGauge
	parkedCommands    metric.Int64ObservableGauge
	consumerLag       metric.Int64ObservableGauge
	consumerAckPend   metric.Int64ObservableGauge
	tokenRefused      metric.Int64ObservableGauge
	apiRateLimited    metric.Int64Counter
}

// NewMetrics creates the instruments on meter. No series is exported before
// its first measurement; Setup then exports at 0 the alerted ones of its
// Config.Component.
func NewMetrics(meter metric.Meter) (*Metrics, error) {
	m := &Metrics{meter: meter}
	var errs []error
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := meter.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	gauge := func(name, unit, desc string) metric.Int64ObservableGauge {
		g, err := meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	m.commands = counter(MetricCommands, "{command}", "Commands finished, by type and outcome.")
	m.commandDuration = histogram(MetricCommandDuration, "Time from a command's first delivery to its outcome.")
	m.graphCalls = counter(MetricGraphCalls, "{call}", "Graph API calls, by endpoint, HTTP status and Graph error code (0 on success).")
	m.graphCallDuration = histogram(MetricGraphCallDuration, "Graph API call latency, by endpoint and HTTP status.")
	m.rateLimitWait = histogram(MetricRateLimitWait, "Time spent waiting for a rate-limit token, by class and outcome.")
	m.throttles = counter(MetricThrottles, "{throttle}", "Throttling answers from the Graph API, by error code and scope.")
	m.webhooks = counter(MetricWebhooks, "{webhook}", "Webhook changes received, by field and result.")
	m.signatureFailures = counter(MetricSignatureFailures, "{failure}", "Webhook deliveries rejected for a missing or wrong X-Hub-Signature-256.")
	m.campaignInvites = counter(MetricCampaignInvites, "{invite}", "Campaign invites finished, by outcome.")
	m.dlqMessages = gauge(MetricDLQMessages, "{message}", "Messages in the dead-letter stream.")
	m.parkedCommands = gauge(MetricParkedCommands, "{command}", "Commands parked until their number's rate-limit turn, by the stream that holds them; consumer lag does not count them.")
	m.consumerLag = gauge(MetricConsumerLag, "{message}", "Messages not yet delivered to a durable consumer (JetStream num_pending).")
	m.consumerAckPend = gauge(MetricConsumerAckPend, "{message}", "Messages delivered to a durable consumer and not yet acknowledged.")
	m.tokenRefused = gauge(MetricTokenRefused, "{worker}", "1 while Graph refuses the worker's access token (code 190, HTTP 401) and commands wait; else 0.")
	m.apiRateLimited = counter(MetricAPIRateLimited, "{request}", "Command API requests refused with 429 because their API token was over its rate bound, by the token's place in INGEST_API_TOKENS.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("create metric instruments: %w", err)
	}
	return m, nil
}

// zeroAlerted exports, at 0, the counter series that alerts watch with
// increase(): Prometheus counts only the difference between samples, so
// a series whose first sample is already 6 (a burst of refused webhooks
// in one scrape interval, one account throttle) never raises increase()
// above 0 and its alert never fires. Only component's own series: an
// ingest's throttle series at 0 would read as an ingest that calls Graph
// and was never throttled, a worker's signature failures as a worker
// that receives webhooks. It runs once, when the instruments are made,
// with no caller's context to take: an Add does no I/O.
//
//nolint:contextcheck // see above: the context.Background() is not a broken call chain
func (m *Metrics) zeroAlerted(component Component) {
	ctx := context.Background()
	switch component {
	case ComponentIngest:
		// GroupflowWebhookSignatureFailures.
		for _, reason := range []string{"missing", "mismatch"} {
			m.signatureFailures.Add(ctx, 0, metric.WithAttributes(KeyReason.String(reason)))
		}
	case ComponentWorker:
		// Graph's app (4) and account (80007) throttles: GroupflowAccountThrottled.
		m.throttles.Add(ctx, 0, metric.WithAttributes(KeyCode.Int(4), KeyScope.String("app")))
		m.throttles.Add(ctx, 0, metric.WithAttributes(KeyCode.Int(80007), KeyScope.String("account")))
	}
}

// CommandDone counts a command that reached an outcome ("succeeded",
// "partially_succeeded", "failed", "rejected", "dead_lettered") and records
// how long it took. commandType must be one of the contract's types or
// "unknown", never a caller's text: each value is a series for good.
func (m *Metrics) CommandDone(ctx context.Context, commandType, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributes(KeyCommandType.String(commandType), KeyOutcome.String(outcome))
	m.commands.Add(ctx, 1, attrs)
	m.commandDuration.Record(ctx, d.Seconds(), attrs)
}

// GraphCall counts one Graph API HTTP call: endpoint is the client's stable
// name ("create_group"), status the HTTP status (0 when no response came),
// code the Graph error code (0 on success).
func (m *Metrics) GraphCall(ctx context.Context, endpoint string, status, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.graphCalls.Add(ctx, 1, metric.WithAttributes(
		KeyEndpoint.String(endpoint), KeyStatus.Int(status), KeyCode.Int(code)))
	m.graphCallDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
		KeyEndpoint.String(endpoint), KeyStatus.Int(status)))
}

// RateLimitWait records how long a call waited for a token of class
// ("messages", "group_ops", "reads") and how the wait ended ("acquired",
// "throttled", "cancelled").
func (m *Metrics) RateLimitWait(ctx context.Context, class, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.rateLimitWait.Record(ctx, d.Seconds(), metric.WithAttributes(
		KeyClass.String(class), KeyOutcome.String(outcome)))
}

// Throttle counts a throttling answer: the Graph error code (130429, 131056,
// 131208, 4, 80007, 131048) and the scope it pauses ("number", "recipient",
// "app", "account", "spam").
func (m *Metrics) Throttle(ctx context.Context, code int, scope string) {
	if m == nil {
		return
	}
	m.throttles.Add(ctx, 1, metric.WithAttributes(KeyCode.Int(code), KeyScope.String(scope)))
}

// Webhook counts one webhook change of field ("group_lifecycle_update", …)
// and what became of it ("published", "duplicate", "invalid", "completed",
// "uncorrelated").
func (m *Metrics) Webhook(ctx context.Context, field, result string) {
	if m == nil {
		return
	}
	m.webhooks.Add(ctx, 1, metric.WithAttributes(KeyField.String(field), KeyResult.String(result)))
}

// SignatureFailure counts a webhook delivery rejected by the signature
// check; reason is "missing", "malformed" or "mismatch".
func (m *Metrics) SignatureFailure(ctx context.Context, reason string) {
	if m == nil {
		return
	}
	m.signatureFailures.Add(ctx, 1, metric.WithAttributes(KeyReason.String(reason)))
}

// APIRateLimited counts a command API request refused because its API
// token was over its rate bound; entry is the token's place in
// INGEST_API_TOKENS (from 1), a bounded label that names no secret.
func (m *Metrics) APIRateLimited(ctx context.Context, entry int) {
	if m == nil {
		return
	}
	m.apiRateLimited.Add(ctx, 1, metric.WithAttributes(KeyCallerEntry.Int(entry)))
}

// CampaignInvite counts a campaign invite that finished with outcome
// ("sent", "failed", "skipped", "cancelled").
func (m *Metrics) CampaignInvite(ctx context.Context, outcome string) {
	if m == nil {
		return
	}
	m.campaignInvites.Add(ctx, 1, metric.WithAttributes(KeyOutcome.String(outcome)))
}

// StreamDepth is a message count of one stream, for ObserveDLQ and
// ObserveParked.
type StreamDepth struct {
	Stream string
	// Messages is the count: for ObserveDLQ the stream's, as JetStream
	// reports it (StreamInfo.State.Msgs); for ObserveParked its parked
	// commands'.
	Messages uint64
}

// ConsumerLag is one durable consumer's backlog, for ObserveConsumers.
type ConsumerLag struct {
	Stream, Consumer string
	// Pending is JetStream's num_pending: matching messages not yet delivered.
	Pending uint64
	// AckPending is delivered and not yet acknowledged.
	AckPending int64
}

// ObserveDLQ registers fn to report the dead-letter stream's depth each time
// metrics are collected (every scrape, every OTLP export). fn does I/O
// (StreamInfo) with the collector's ctx; its error drops that observation
// and is reported through the otel error handler. Unregister on shutdown.
func (m *Metrics) ObserveDLQ(fn func(ctx context.Context) ([]StreamDepth, error)) (metric.Registration, error) {
	if m == nil {
		return noRegistration{}, nil
	}
	return m.observeDepths(m.dlqMessages, fn)
}

// ObserveParked registers fn to report, each time metrics are collected,
// how many commands wait parked in each stream that holds them (the
// parked stream; a legacy command stream too) for their number's
// rate-limit turn: work that is waiting, and that no consumer's lag
// shows, being outside the consumer's stream or subjects until its turn.
// As ObserveDLQ.
func (m *Metrics) ObserveParked(fn func(ctx context.Context) ([]StreamDepth, error)) (metric.Registration, error) {
	if m == nil {
		return noRegistration{}, nil
	}
	return m.observeDepths(m.parkedCommands, fn)
}

// observeDepths registers fn to report gauge, one series per stream.
func (m *Metrics) observeDepths(gauge metric.Int64ObservableGauge, fn func(ctx context.Context) ([]StreamDepth, error)) (metric.Registration, error) {
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		depths, err := fn(ctx)
		for _, d := range depths {
			o.ObserveInt64(gauge, saturatingInt64(d.Messages), metric.WithAttributes(KeyStream.String(d.Stream)))
		}
		return err
	}, gauge)
}

// ObserveConsumers registers fn to report the backlog of the durable
// consumers (ConsumerInfo) each time metrics are collected. As ObserveDLQ.
func (m *Metrics) ObserveConsumers(fn func(ctx context.Context) ([]ConsumerLag, error)) (metric.Registration, error) {
	if m == nil {
		return noRegistration{}, nil
	}
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		lags, err := fn(ctx)
		for _, l := range lags {
			attrs := metric.WithAttributes(KeyStream.String(l.Stream), KeyConsumer.String(l.Consumer))
			o.ObserveInt64(m.consumerLag, saturatingInt64(l.Pending), attrs)
			o.ObserveInt64(m.consumerAckPend, l.AckPending, attrs)
		}
		return err
	}, m.consumerLag, m.consumerAckPend)
}

// ObserveAccessToken registers refused to report, each time metrics are
// collected, whether Graph refuses the worker's access token (the state
// /readyz reports). A gauge is there from the first collection, unlike a
// count of 401 answers, whose series per endpoint each start with a
// refusal that increase() cannot see. Unregister on shutdown.
func (m *Metrics) ObserveAccessToken(refused func() bool) (metric.Registration, error) {
	if m == nil {
		return noRegistration{}, nil
	}
	return m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var v int64
		if refused() {
			v = 1
		}
		o.ObserveInt64(m.tokenRefused, v)
		return nil
	}, m.tokenRefused)
}

type noRegistration struct{ metric.Registration }

func (noRegistration) Unregister() error { return nil }
