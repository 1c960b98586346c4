package telemetry

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func BenchmarkInjectExtract(b *testing.B) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	b.ReportAllocs()
	for b.Loop() {
		h := nats.Header{"Nats-Msg-Id": {"order-4711"}}
		Inject(ctx, h)
		if !trace.SpanContextFromContext(Extract(context.Background(), h)).IsValid() {
			b.Fatal("trace context lost")
		}
	}
}

// discardExporter stands in for a collector that is never slow.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkSpan compares the instrumentation's cost with tracing off (no
// exporter configured: no-op provider) and on (always sample, batch
// processor, exporter that discards).
func BenchmarkSpan(b *testing.B) {
	for _, mode := range []struct {
		name string
		cfg  Config
	}{
		{"tracing=off", Config{Getenv: env(nil)}},
		{"tracing=on", Config{Getenv: env(nil), SpanExporter: discardExporter{}, Sampler: sdktrace.AlwaysSample()}},
	} {
		tel, err := Setup(context.Background(), mode.cfg)
		if err != nil {
			b.Fatal(err)
		}
		tracer := tel.Tracer("bench")
		ctx := context.Background()

		b.Run(mode.name+"/start-end", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, span := tracer.Start(ctx, "process")
				span.End()
			}
		})
		b.Run(mode.name+"/publish-inject", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pctx, span := StartPublish(ctx, tracer, "groups.cmd.106540352242922.create_group", "order-4711")
				Inject(pctx, nats.Header{})
				span.End()
			}
		})
		if err := tel.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
