package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

func tracerOf(tel *telemetry.Telemetry) trace.Tracer {
	if tel == nil {
		return nil
	}
	return tel.Tracer("test")
}

func metricsOf(tel *telemetry.Telemetry) webhook.Metrics {
	if tel == nil {
		return nil
	}
	return tel.Metrics()
}

func withTelemetry(t *testing.T) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{
		ServiceName:  "ingest-test",
		Getenv:       func(string) string { return "" },
		SpanExporter: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, exp
}

// withMetrics is telemetry as the ingest has it with tracing off: metrics
// only, recorded by the lean middleware.
func withMetrics(t *testing.T) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "ingest-test", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

// telemetryTracing is withTelemetry, or with tracing false withMetrics.
func telemetryTracing(t *testing.T, tracing bool) *telemetry.Telemetry {
	t.Helper()
	var tel *telemetry.Telemetry
	if tracing {
		tel, _ = withTelemetry(t)
	} else {
		tel = withMetrics(t)
	}
	if tel.TracingEnabled() != tracing {
		t.Fatalf("tracing enabled = %v, want %v", tel.TracingEnabled(), tracing)
	}
	return tel
}

func TestCallersTraceContinuesIntoThePublishedCommand(t *testing.T) {
	t.Parallel()
	tel, exp := withTelemetry(t)
	b := setupWith(t, tel)

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodPost, b.url+"/v1/commands", strings.NewReader(validCommand))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("traceparent", "00-"+callerTrace+"-00f067aa0ba902b7-01")
	if status, out := do(t, req); status != http.StatusAccepted {
		t.Fatalf("POST = %d %v, want 202", status, out)
	}

	s, _ := b.js.Stream(context.Background(), "GROUPS_COMMANDS")
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tp := msg.Header.Get("traceparent")
	if !strings.Contains(tp, callerTrace) {
		t.Fatalf("published command carries traceparent %q, want the caller's trace %s", tp, callerTrace)
	}
	if err := tel.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var server, producer bool
	for _, sp := range exp.GetSpans() {
		if sp.SpanContext.TraceID().String() != callerTrace {
			continue
		}
		switch sp.SpanKind {
		case trace.SpanKindServer:
			server = true
		case trace.SpanKindProducer:
			producer = true
		}
	}
	if !server || !producer {
		t.Errorf("caller's trace holds server span %v and producer span %v, want both", server, producer)
	}
}

func TestMetricsCountWebhooksAndSignatureFailures(t *testing.T) {
	t.Parallel()
	tel, _ := withTelemetry(t)
	b := setupWith(t, tel)
	body, err := os.ReadFile("../webhook/testdata/meta-examples/groups.webhooks__group_create_succeed.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, sig := range []string{sign(body), "sha256=00", ""} {
		req, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", bytes.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Hub-Signature-256", sig)
		}
		do(t, req)
	}
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	text := string(raw)
	if !strings.Contains(text, `groupflow_webhooks_total{field="group_lifecycle_update"`) {
		t.Errorf("/metrics lacks groupflow_webhooks_total for the signed webhook")
	}
	// The refusal series exist from start-up at 0 (alerts need a first
	// sample), so their values say whether the refusals were counted.
	for _, reason := range []string{"mismatch", "missing"} {
		if got := sampleValue(text, "groupflow_webhook_signature_failures_total{", `reason="`+reason+`"`); got != "1" {
			t.Errorf("groupflow_webhook_signature_failures_total{reason=%q} = %q, want 1", reason, got)
		}
	}
}

// sampleValue returns the value of the first sample on a Prometheus text
// page whose line starts with prefix and contains label, or "" if none.
func sampleValue(page, prefix, label string) string {
	for line := range strings.Lines(page) {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, label) {
			f := strings.Fields(line)
			return f[len(f)-1]
		}
	}
	return ""
}

// The Host header is the client's to choose, signed in or not: made-up
// hosts must not each become a series on /metrics (and memory in the
// process), with tracing on (otelhttp) or off (the lean middleware).
func TestMadeUpHostsDoNotMultiplyTheSeries(t *testing.T) {
	t.Parallel()
	for _, tracing := range []bool{true, false} {
		t.Run(fmt.Sprintf("tracing=%v", tracing), func(t *testing.T) {
			t.Parallel()
			tel := telemetryTracing(t, tracing)
			b := setupWith(t, tel)
			for i := range 50 {
				req, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", strings.NewReader(`{}`))
				req.Host = fmt.Sprintf("made-up-%d.example:%d", i, 1000+i)
				if status, _ := do(t, req); status != http.StatusUnauthorized {
					t.Fatalf("unsigned POST = %d, want 401", status)
				}
			}
			resp, err := http.Get(b.url + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var series []string
			for line := range strings.Lines(string(raw)) {
				if strings.HasPrefix(line, "http_server_request_duration_seconds_count{") && strings.Contains(line, `http_route="/webhook"`) {
					series = append(series, line)
				}
			}
			if len(series) != 1 {
				t.Fatalf("%d series of /webhook requests after 50 made-up hosts, want 1:\n%s", len(series), strings.Join(series, ""))
			}
			if strings.Contains(series[0], "made-up") || strings.Contains(series[0], "server_port") {
				t.Errorf("the series names the client's host: %s", series[0])
			}
		})
	}
}

// An early answer (401 without a token) goes out at once, without waiting
// for a body announced and never sent, also behind the lean metrics
// middleware: it wrapped the request's body, and the server, not knowing
// the wrapper, tried to read up to 256 KiB of it before answering.
func TestAnEarlyAnswerDoesNotWaitForTheBody(t *testing.T) {
	t.Parallel()
	tel := withMetrics(t)
	if tel.TracingEnabled() {
		t.Fatal("tracing is on: the lean middleware is not under test")
	}
	b := setupWith(t, tel)
	line := testutil.PostWithoutBody(t, b.url, "/v1/commands", "", 100000000)
	if !strings.Contains(line, "401") {
		t.Fatalf("answer %q, want 401", line)
	}
}

// With PrivateMetrics, /metrics leaves the public listener, the one Meta
// and the command API's callers reach, and is served on the private one
// (Server.Private) with the probes, with tracing on (otelhttp) or off
// (the lean middleware): both registered /metrics on the public mux.
func TestPrivateMetricsAreOffThePublicListener(t *testing.T) {
	t.Parallel()
	for _, tracing := range []bool{true, false} {
		t.Run(fmt.Sprintf("tracing=%v", tracing), func(t *testing.T) {
			t.Parallel()
			tel := telemetryTracing(t, tracing)
			b := setupWith(t, tel, func(c *ingest.Config) { c.PrivateMetrics = true })
			private := httptest.NewServer(b.handler.Private())
			t.Cleanup(private.Close)

			// An unsigned webhook on the public port is counted on the private one.
			req, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", strings.NewReader(`{}`))
			if status, _ := do(t, req); status != http.StatusUnauthorized {
				t.Fatalf("unsigned POST /webhook = %d, want 401", status)
			}
			if status, body := getText(t, b.url+"/metrics"); status != http.StatusNotFound {
				t.Errorf("GET /metrics on the public listener = %d, want 404; body starts %.80q", status, body)
			}
			status, page := getText(t, private.URL+"/metrics")
			if status != http.StatusOK {
				t.Fatalf("GET /metrics on the private listener = %d, want 200", status)
			}
			if got := sampleValue(page, "groupflow_webhook_signature_failures_total{", `reason="missing"`); got != "1" {
				t.Errorf("private /metrics: groupflow_webhook_signature_failures_total{reason=\"missing\"} = %q, want 1", got)
			}
			for _, base := range []string{b.url, private.URL} {
				for _, p := range []string{"/healthz", "/readyz"} {
					if status, body := getText(t, base+p); status != http.StatusOK {
						t.Errorf("GET %s%s = %d %s, want 200", base, p, status, body)
					}
				}
			}
			if status, _ := getText(t, private.URL+"/v1/commands/x"); status != http.StatusNotFound {
				t.Errorf("the command API answers on the private listener (%d), want 404", status)
			}
		})
	}
}

// getText answers GET url's status and body.
func getText(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
