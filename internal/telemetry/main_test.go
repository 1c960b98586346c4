package telemetry

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The nats-server keeps a few process-wide goroutines after shutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

// env is a Getenv over a map, so tests never read the process environment.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// bundle is a Telemetry that records every span in memory.
type bundle struct {
	tel   *Telemetry
	spans *tracetest.InMemoryExporter
}

func setup(t *testing.T) *bundle {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tel, err := Setup(context.Background(), Config{
		ServiceName:    "groupflow-test",
		ServiceVersion: "0.0.0-test",
		Getenv:         env(nil),
		SpanExporter:   spans,
		Sampler:        sdktrace.AlwaysSample(),
	})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &bundle{tel: tel, spans: spans}
}

// ended flushes the batch processor and returns every span ended so far.
func (b *bundle) ended(t *testing.T) tracetest.SpanStubs {
	t.Helper()
	if err := b.tel.ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
	return b.spans.GetSpans()
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var names []string
	for _, s := range spans {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	t.Fatalf("no span named %q; got %q", name, names)
	return tracetest.SpanStub{}
}

func attrOf(s tracetest.SpanStub, key attribute.Key) (v attribute.Value, found bool) {
	for _, a := range s.Attributes {
		if a.Key == key {
			v, found = a.Value, true // later writes win, as in the exporters
		}
	}
	return v, found
}

// wantAttrs checks that s carries each attribute with the value given
// (compared in their string form).
func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[attribute.Key]any) {
	t.Helper()
	for k, w := range want {
		v, ok := attrOf(s, k)
		if !ok {
			t.Errorf("span %q: attribute %s missing; have %v", s.Name, k, s.Attributes)
			continue
		}
		if got := v.String(); got != fmt.Sprint(w) {
			t.Errorf("span %q: %s = %q, want %q", s.Name, k, got, fmt.Sprint(w))
		}
	}
}

// everyString lists every string a span would export: name, attribute
// keys and values, event names and attributes, link attributes, status
// text and resource attributes.
func everyString(s tracetest.SpanStub) []string {
	out := []string{s.Name, s.Status.Description}
	add := func(attrs []attribute.KeyValue) {
		for _, a := range attrs {
			out = append(out, string(a.Key), a.Value.String())
		}
	}
	add(s.Attributes)
	for _, e := range s.Events {
		out = append(out, e.Name)
		add(e.Attributes)
	}
	for _, l := range s.Links {
		add(l.Attributes)
	}
	if s.Resource != nil {
		add(s.Resource.Attributes())
	}
	return out
}

// assertNoSecret fails if any exported string of any span contains one of
// the secrets.
func assertNoSecret(t *testing.T, spans tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	for _, s := range spans {
		for _, str := range everyString(s) {
			for _, secret := range secrets {
				if strings.Contains(str, secret) {
					t.Errorf("span %q exports %q, which contains the secret %q", s.Name, str, secret)
				}
			}
		}
	}
}
