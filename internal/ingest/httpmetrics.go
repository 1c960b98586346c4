package ingest

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/httpconv"
)

// httpMetrics is the server middleware for when tracing is off: it records
// what otelhttp's handler records — http.server.request.duration and the
// request and response body sizes, with the same attributes, so /metrics
// and the dashboards read the same series — without what otelhttp does for
// spans even when no span is recorded (trace attributes, propagation, a
// copy of the request, a response writer wrapped in every interface).
// Measured on the ingest process under make bench, that was a quarter of
// the ingest's own CPU per webhook.
type httpMetrics struct {
	duration metric.Float64Histogram
	reqSize  metric.Int64Histogram
	respSize metric.Int64Histogram

	// attrs caches the attribute set of each combination seen; building
	// one costs allocations and a sort. Every part is bounded (the host a
	// client names is left out, see telemetry.HTTPServerView), but the
	// cache stops growing at maxAttrSets all the same.
	mu    sync.RWMutex
	attrs map[attrKey]metric.MeasurementOption
}

const maxAttrSets = 512

type attrKey struct {
	method, proto, route string
	status               int
	tls                  bool
}

func newHTTPMetrics(mp metric.MeterProvider) (*httpMetrics, error) {
	meter := mp.Meter("github.com/groupflow/groupflow/internal/ingest")
	duration, err := httpconv.NewServerRequestDuration(meter,
		// otelhttp's boundaries: the semantic conventions' advice.
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	if err != nil {
		return nil, err
	}
	reqSize, err := httpconv.NewServerRequestBodySize(meter)
	if err != nil {
		return nil, err
	}
	respSize, err := httpconv.NewServerResponseBodySize(meter)
	if err != nil {
		return nil, err
	}
	return &httpMetrics{
		duration: duration.Inst(), reqSize: reqSize.Inst(), respSize: respSize.Inst(),
		attrs: map[attrKey]metric.MeasurementOption{},
	}, nil
}

// handler measures next, which must be routed by a ServeMux (http.route
// comes from r.Pattern).
func (m *httpMetrics) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		mw := &measuredWriter{ResponseWriter: w}
		if body := r.Body; body != nil && body != http.NoBody {
			mw.body.ReadCloser = body
			r.Body = &mw.body
			// The server decides what to do with an unread body (close
			// the connection when much is left, instead of reading it)
			// by the body's own type, on this very request, after the
			// handler: give it back its body.
			defer func() { r.Body = body }()
		}
		next.ServeHTTP(mw, r)
		elapsed := time.Since(start)

		status := mw.status
		if status == 0 {
			status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		attrs := m.attributes(r, status)
		ctx := r.Context()
		m.reqSize.Record(ctx, mw.body.n, attrs)
		m.respSize.Record(ctx, mw.written, attrs)
		m.duration.Record(ctx, float64(elapsed)/float64(time.Second), attrs)
	})
}

func (m *httpMetrics) attributes(r *http.Request, status int) metric.MeasurementOption {
	tls := r.TLS != nil
	k := attrKey{method: standardMethod(r.Method), proto: r.Proto, route: routeOf(r.Pattern), status: status, tls: tls}
	m.mu.RLock()
	o, ok := m.attrs[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	kvs := make([]attribute.KeyValue, 0, 6)
	scheme := "http"
	if tls {
		scheme = "https"
	}
	// No server.address or server.port: they come from the Host header,
	// which the client chooses (telemetry.HTTPServerView drops them from
	// otelhttp's series too).
	kvs = append(kvs, semconv.HTTPRequestMethodKey.String(k.method), semconv.URLScheme(scheme))
	name, version, _ := strings.Cut(r.Proto, "/")
	if name = strings.ToLower(name); name != "" {
		kvs = append(kvs, semconv.NetworkProtocolName(name))
	}
	if version != "" {
		kvs = append(kvs, semconv.NetworkProtocolVersion(version))
	}
	kvs = append(kvs, semconv.HTTPResponseStatusCode(status))
	if k.route != "" {
		kvs = append(kvs, semconv.HTTPRoute(k.route))
	}
	o = metric.WithAttributeSet(attribute.NewSet(kvs...))
	m.mu.Lock()
	if len(m.attrs) < maxAttrSets {
		m.attrs[k] = o
	}
	m.mu.Unlock()
	return o
}

// standardMethod is the method as http.request.method has it: the known
// methods, everything else "_OTHER".
func standardMethod(method string) string {
	switch method = strings.ToUpper(method); method {
	case http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
		http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodTrace:
		return method
	}
	return "_OTHER"
}

// routeOf drops the method and host of a ServeMux pattern.
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// measuredWriter notes the status and the bytes written, and holds the
// request body's counter so one allocation serves both.
type measuredWriter struct {
	http.ResponseWriter
	status  int
	written int64
	body    countingBody
}

func (w *measuredWriter) WriteHeader(status int) {
	// An informational answer comes before the real one.
	if w.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *measuredWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *measuredWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
