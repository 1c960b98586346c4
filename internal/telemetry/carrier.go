package telemetry

import (
	"context"
	"encoding/hex"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// propagator is W3C trace context plus baggage: the only format groupflow
// speaks, so it is fixed rather than taken from the otel globals.
var propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{},
)

// HeaderCarrier lets a propagator read and write nats.Header.
//
// NATS headers are case-sensitive, unlike HTTP's. Set writes lowercase keys
// (traceparent, tracestate, baggage), the spelling W3C mandates and the one
// OpenTelemetry clients in other languages look up, and removes any other
// spelling of the same key so a re-published header carries one value. Get
// matches case-insensitively, so a publisher that wrote "Traceparent" (as
// Go's http.Header would) is still continued.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key in any letter case.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set stores value under the lowercase key, replacing every spelling of it.
func (c HeaderCarrier) Set(key, value string) {
	lk := strings.ToLower(key)
	for k := range c {
		if k != lk && strings.EqualFold(k, lk) {
			delete(c, k)
		}
	}
	c[lk] = []string{value}
}

// Keys returns the header's keys as written.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's trace context and baggage into h. h must be non-nil
// (a nil header has nowhere to put them, and nothing is written); when ctx
// has no valid span context only baggage, if any, is written.
func Inject(ctx context.Context, h nats.Header) {
	if h == nil {
		return
	}
	propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx carrying the remote span context and baggage found in
// h, or ctx unchanged when h holds none.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, HeaderCarrier(h))
}

// TraceParent returns ctx's span context as a W3C traceparent value
// ("00-<trace id>-<span id>-<flags>"), or "" when it has none. The worker
// keeps it in the ledger so that the webhook completing an async command can
// link back to the command's trace with LinkFromTraceParent.
//
// It is written here rather than through the propagator and a map carrier:
// the worker calls it for every command.
func TraceParent(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	var b [55]byte // version, trace id, parent id, flags
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	// Only the flags W3C defines (sampled, random), as the propagator does.
	hex.Encode(b[53:55], []byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))})
	return string(b[:])
}

// ParseTraceParent parses a W3C traceparent value into a remote span
// context; ok is false when tp is empty or malformed.
//
// It does no I/O and takes no context: the empty one it extracts into is
// scratch, read back only for what tp holds. A caller's context would hand
// back the caller's own span whenever tp is malformed.
//
//nolint:contextcheck // see above: the context.Background() is not a broken call chain
func ParseTraceParent(tp string) (sc trace.SpanContext, ok bool) {
	if tp == "" {
		return trace.SpanContext{}, false
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
	sc = trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid()
}

// LinkFromTraceParent returns a span link to the span a stored traceparent
// names, for trace.WithLinks; ok is false when tp is empty or malformed, and
// the span should then simply start without the link.
func LinkFromTraceParent(tp string) (trace.Link, bool) {
	sc, ok := ParseTraceParent(tp)
	if !ok {
		return trace.Link{}, false
	}
	return trace.Link{SpanContext: sc}, true
}

// ContextWithTraceParent returns ctx carrying the remote span context a
// stored traceparent names, so spans started from it join that trace: the
// worker uses it when a webhook completes an async command, to publish the
// terminal event in the command's trace. ctx is returned unchanged when tp
// is empty or malformed.
func ContextWithTraceParent(ctx context.Context, tp string) context.Context {
	sc, ok := ParseTraceParent(tp)
	if !ok {
		return ctx
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
