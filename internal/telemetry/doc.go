// Package telemetry is groupflow's observability foundation: OpenTelemetry
// tracing and metrics set up from the standard OTEL_* variables, W3C trace
// context carried in NATS headers, messaging and HTTP spans, the metric
// instruments every component records into, and a log/slog handler that adds
// trace ids and masks secrets.
//
// One trace runs from a caller through groupflow and back out: the ingest's
// HTTP span ([Telemetry.HTTPHandler]), the command publish ([PublishMsg]), the
// worker's processing ([StartProcess]), each Graph HTTP call
// ([Telemetry.HTTPTransport]) and the result event publish. The trace context
// travels in NATS headers written with lowercase keys (traceparent, tracestate,
// baggage) because clients in other languages look them up that way; reads
// are case-insensitive so a publisher that wrote "Traceparent" is still
// continued ([HeaderCarrier]).
//
// Tracing is off — a no-op provider costing a few nanoseconds a span — unless
// an exporter is configured (OTEL_TRACES_EXPORTER=otlp, or an
// OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT). Even when off, an incoming
// traceparent is passed through unchanged, so a caller's trace still reaches
// the result event. Metrics are always served in Prometheus form by
// [Telemetry.MetricsHandler] from a registry of their own, and are also pushed
// over OTLP when an endpoint is configured.
//
// Messaging spans follow the OpenTelemetry semantic conventions (semconv
// v1.43.0, the version otel v1.47 ships): messaging.system=nats,
// messaging.destination.name (the subject), messaging.destination.template
// (the subject with its ids as "*", as in the span's name "send
// groups.cmd.*.create_group", [SubjectTemplate]), messaging.operation.type
// send/process, messaging.message.id (Nats-Msg-Id) and
// messaging.consumer.group.name (the durable consumer the workers share).
// NATS has no registered attributes of its own, so these are added under the
// messaging.nats namespace: messaging.nats.message.delivery_count (JetStream's
// NumDelivered, 1 on first delivery), messaging.nats.message.stream_sequence,
// messaging.nats.stream.name, and on a consumer span what the worker did with
// the delivery, messaging.nats.message.settlement (ack, nak, term) with
// messaging.nats.message.nak_delay (seconds) for a nak ([SettledOnSpan]).
//
// HTTP client spans are named "{method} {url.template}" as the HTTP
// conventions ask ("POST /v23.0/{phone_number_id}/groups", [WithEndpoint]),
// with url.template and the caller's stable name of the endpoint,
// groupflow.endpoint ("create_group"), which the Graph metrics are
// labelled with.
//
// A failed operation's span has error.type set to a class of failure
// ([ErrorType]: timeout, cancelled, no_responders, connection,
// jetstream_api, graph_throttled and the other Graph classes, panic, or
// _OTHER), not to the Go type of its error; an HTTP answer's is its status
// code, as otelhttp sets it.
//
// Secrets (access token, app secret, API tokens) must never reach a span, a
// metric or a log line. The HTTP transport masks token-bearing query
// parameters in url.full and never records headers; the log handler masks
// the values of keys such as token, secret, authorization and password, and
// bearer credentials inside any string.
package telemetry
