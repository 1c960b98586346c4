package ingest_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/telemetry"
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
	for _, want := range []string{
		`groupflow_webhooks_total{field="group_lifecycle_update"`,
		`groupflow_webhook_signature_failures_total{`,
		`reason="mismatch"`,
		`reason="missing"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
