package ingest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/groupflow/groupflow/internal/telemetry"
)

// The lean middleware must keep /metrics and the dashboards as otelhttp
// leaves them: the same instruments, attribute sets and observations for the
// same requests.
func TestHTTPMetricsRecordWhatOtelhttpRecords(t *testing.T) {
	t.Parallel()
	route := func(wrap func(http.Handler) http.Handler) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/webhook", wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if len(body) == 0 {
				http.Error(w, "empty", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		})))
		mux.Handle("GET /v1/commands/{id}", wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"id":"x"}`) // implicit 200
		})))
		return mux
	}
	otelReader, leanReader := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
	// Both as telemetry.Setup builds them: with the view that keeps the
	// client's Host header out of the series.
	otelMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(otelReader), sdkmetric.WithView(telemetry.HTTPServerView))
	leanMP := sdkmetric.NewMeterProvider(sdkmetric.WithReader(leanReader), sdkmetric.WithView(telemetry.HTTPServerView))
	lean, err := newHTTPMetrics(leanMP)
	if err != nil {
		t.Fatal(err)
	}
	servers := []*httptest.Server{
		httptest.NewServer(route(func(h http.Handler) http.Handler {
			return otelhttp.NewHandler(h, "op", otelhttp.WithMeterProvider(otelMP))
		})),
		httptest.NewServer(route(lean.handler)),
	}
	for _, srv := range servers {
		t.Cleanup(srv.Close)
		for _, rq := range []struct{ method, host, path, body string }{
			{"POST", "ingest.example.com", "/webhook", `{"object":"x"}`},
			{"POST", "ingest.example.com:8443", "/webhook", `{"object":"x"}`},
			{"POST", "[::1]:80", "/webhook", ""},
			{"PURGE", "ingest.example.com", "/webhook", "x"},
			{"GET", "ingest.example.com", "/v1/commands/abc", ""},
			{"GET", "ingest.example.com", "/v1/commands/abc", ""},
		} {
			req, err := http.NewRequest(rq.method, srv.URL+rq.path, strings.NewReader(rq.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = rq.host
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	want, got := collect(t, otelReader), collect(t, leanReader)
	if len(want) == 0 {
		t.Fatal("otelhttp recorded nothing")
	}
	for _, name := range []string{"http.server.request.duration", "http.server.request.body.size", "http.server.response.body.size"} {
		if want[name] == "" {
			t.Errorf("otelhttp no longer records %s: compare the middleware with it again", name)
		}
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s:\nlean middleware records\n%s\notelhttp records\n%s", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("lean middleware records %s, otelhttp does not", name)
		}
	}
}

// collect renders each histogram as its unit, bucket boundaries and, per
// attribute set, the count (and the sum for sizes, which are exact).
func collect(t *testing.T, r sdkmetric.Reader) map[string]string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var lines []string
			switch d := m.Data.(type) {
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("  %s count=%d bounds=%v", p.Attributes.Encoded(attributeEncoder), p.Count, p.Bounds))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("  %s count=%d sum=%d", p.Attributes.Encoded(attributeEncoder), p.Count, p.Sum))
				}
			default:
				lines = append(lines, fmt.Sprintf("  %T", d))
			}
			slices.Sort(lines)
			out[m.Name] = fmt.Sprintf("  unit=%s %s\n%s", m.Unit, m.Description, strings.Join(lines, "\n"))
		}
	}
	return out
}

var attributeEncoder = attribute.DefaultEncoder()
