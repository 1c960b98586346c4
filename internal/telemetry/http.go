package telemetry

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// AttrEndpoint names the remote operation an HTTP client span is for
// ("create_group"), as set by WithEndpoint: the stable name the Graph
// metrics are labelled with, kept beside url.template.
const AttrEndpoint = attribute.Key("groupflow.endpoint")

type endpointKey struct{}

// endpoint is what WithEndpoint puts in a context.
type endpoint struct{ name, urlTemplate string }

// WithEndpoint names the operation of the HTTP calls made with ctx: name
// is the caller's stable name for it ("create_group"), recorded as
// groupflow.endpoint, and urlTemplate its path with the ids left out
// ("/v23.0/{phone_number_id}/groups"), recorded as url.template. A call's
// span is named "{method} {url.template}", as the HTTP semantic conventions
// ask of a client span ("POST /v23.0/{phone_number_id}/groups"), not after
// a URL full of ids; without a template, after the method alone.
func WithEndpoint(ctx context.Context, name, urlTemplate string) context.Context {
	return context.WithValue(ctx, endpointKey{}, endpoint{name: name, urlTemplate: urlTemplate})
}

// EndpointFromContext returns the name set by WithEndpoint, or "".
func EndpointFromContext(ctx context.Context) string {
	ep, _ := ctx.Value(endpointKey{}).(endpoint)
	return ep.name
}

func endpointOf(ctx context.Context) endpoint {
	ep, _ := ctx.Value(endpointKey{}).(endpoint)
	return ep
}

// HTTPTransport wraps base (http.DefaultTransport when nil) so every request
// is a client span ("{method} {url.template}", see WithEndpoint) with the
// HTTP semantic-convention attributes, and is counted in the
// http.client.request.duration histogram. Each attempt is its own span, so
// retries show as siblings.
//
// Nothing secret is recorded: otelhttp records no headers (Authorization
// stays out), url.full has user info removed and the values of sensitive
// query parameters (access_token, appsecret_proof, …) masked, and an error
// whose text would expose them is masked too. Only the W3C traceparent is
// sent on: baggage from a caller is theirs, not Meta's.
func (t *Telemetry) HTTPTransport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(redactingTransport{base},
		otelhttp.WithTracerProvider(t.tracerProvider),
		otelhttp.WithMeterProvider(t.meterProvider),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(clientSpanName),
	)
}

func clientSpanName(_ string, r *http.Request) string {
	if tmpl := endpointOf(r.Context()).urlTemplate; tmpl != "" {
		return r.Method + " " + tmpl
	}
	return r.Method
}

// redactingTransport runs inside otelhttp's span: it overwrites the url.full
// otelhttp recorded when the query holds a secret, records the endpoint
// and url.template, and masks secrets in transport errors before otelhttp
// copies their text into the span status.
type redactingTransport struct{ base http.RoundTripper }

func (rt redactingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	span := trace.SpanFromContext(r.Context())
	if span.IsRecording() {
		// One SetAttributes call: each one may grow the span's slice.
		attrs := [3]attribute.KeyValue{}
		n := 0
		ep := endpointOf(r.Context())
		if ep.name != "" {
			attrs[n] = AttrEndpoint.String(ep.name)
			n++
		}
		if ep.urlTemplate != "" {
			attrs[n] = semconv.URLTemplate(ep.urlTemplate)
			n++
		}
		// Without a query, otelhttp's url.full has nothing secret.
		if r.URL.RawQuery != "" {
			if u, changed := redactURL(r.URL); changed {
				attrs[n] = semconv.URLFull(u) // last write wins
				n++
			}
		}
		span.SetAttributes(attrs[:n]...)
	}
	resp, err := rt.base.RoundTrip(r)
	if err != nil {
		// otelhttp sets the span's error.type from this error's
		// ErrorType, and copies its text into the span's status.
		err = &roundTripError{msg: maskRequestSecrets(err, r), err: err}
	}
	return resp, err
}

// maskRequestSecrets returns err's text, masked if it contains one of the
// request's credentials (Authorization value, sensitive query values).
func maskRequestSecrets(err error, r *http.Request) string {
	msg := err.Error()
	var secrets []string
	if a := r.Header.Get("Authorization"); a != "" {
		secrets = append(secrets, a)
		if _, cred, ok := strings.Cut(a, " "); ok && cred != "" {
			secrets = append(secrets, cred)
		}
	}
	for k, vs := range r.URL.Query() {
		if IsSensitiveKey(k) {
			secrets = append(secrets, vs...)
		}
	}
	masked := msg
	for _, s := range secrets {
		if s != "" {
			masked = strings.ReplaceAll(masked, s, Redacted)
		}
	}
	if masked == msg {
		return msg
	}
	return RedactString(masked)
}

// roundTripError is a transport's error as the traced transport returns
// it: its text with the request's secrets masked, its class for
// error.type (ErrorType), and net.Error behaviour kept (http.Client reports
// timeouts by it); it unwraps to the transport's error.
type roundTripError struct {
	msg string
	err error
}

func (e *roundTripError) Error() string     { return e.msg }
func (e *roundTripError) Unwrap() error     { return e.err }
func (e *roundTripError) ErrorType() string { return ErrorType(e.err) }
func (e *roundTripError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}
func (e *roundTripError) Temporary() bool { return false }

var _ net.Error = (*roundTripError)(nil)

// HTTPServerView keeps server.address and server.port out of the HTTP
// server metrics. Both come from the request's Host header, which any
// client, signed in or not, chooses: with them, each made-up host was a new
// series (a reviewer's 3,000 unsigned requests grew /metrics from 722 lines
// to 106,139 and the ingest by 110 MB). The semantic conventions make them
// opt-in on these metrics for that reason; spans keep them.
var HTTPServerView = sdkmetric.NewView(
	sdkmetric.Instrument{Name: "http.server.*"},
	sdkmetric.Stream{AttributeFilter: attribute.NewDenyKeysFilter(semconv.ServerAddressKey, semconv.ServerPortKey)},
)

// HTTPHandler wraps h so every request is a server span continuing the
// caller's traceparent, and is counted in http.server.request.duration
// (labelled with http_route when a mux matched). The
// span is named after the ServeMux pattern that matched ("POST /v1/commands",
// also recorded as http.route) when h is a mux, else after operation.
// Request headers and the query string are not recorded.
func (t *Telemetry) HTTPHandler(h http.Handler, operation string) http.Handler {
	return t.httpHandler(h, operation, false)
}

// PublicHTTPHandler is HTTPHandler for endpoints the internet calls (Meta's
// webhooks): a traceparent sent by the caller is not trusted as the parent
// (it would graft groupflow's spans onto someone else's trace) but kept as a
// link, and the span starts a new trace.
func (t *Telemetry) PublicHTTPHandler(h http.Handler, operation string) http.Handler {
	return t.httpHandler(h, operation, true)
}

func (t *Telemetry) httpHandler(h http.Handler, operation string, public bool) http.Handler {
	opts := []otelhttp.Option{
		otelhttp.WithTracerProvider(t.tracerProvider),
		otelhttp.WithMeterProvider(t.meterProvider),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithSpanNameFormatter(serverSpanName),
	}
	if public {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
	}
	routed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		// A ServeMux sets r.Pattern on this very request while routing.
		// The span and the request metrics get the route: latency per
		// route, with no unbounded path in the labels. otelhttp reads its
		// Labeler once this handler has returned.
		if route := patternRoute(r.Pattern); route != "" {
			kv := semconv.HTTPRoute(route)
			if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
				span.SetAttributes(kv)
			}
			if l, ok := otelhttp.LabelerFromContext(r.Context()); ok {
				l.Add(kv)
			}
		}
	})
	return otelhttp.NewHandler(routed, operation, opts...)
}

// serverSpanName is "<METHOD> <route>" once a mux has matched, else the
// operation given to HTTPHandler (otelhttp renames the span after the
// handler returns if r.Pattern was set).
func serverSpanName(operation string, r *http.Request) string {
	if route := patternRoute(r.Pattern); route != "" {
		return r.Method + " " + route
	}
	if operation != "" {
		return operation
	}
	return r.Method
}

// patternRoute drops the method and host from a ServeMux pattern
// ("POST example.com/v1/commands" → "/v1/commands").
func patternRoute(pattern string) string {
	if pattern == "" {
		return ""
	}
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimSpace(rest)
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:]
	}
	return pattern
}
