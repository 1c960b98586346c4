package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
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

// canned answers every request at once with the same small body: the
// HTTP client span without a network.
type canned struct{}

func (canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"link":"x"}`)),
		ContentLength: 12, Request: r}, nil
}

// BenchmarkCommandTrace is the tracing one command costs the worker, with
// nothing else around it: the consumer span of its delivery (with the
// traceparent the ledger keeps), one Graph call through HTTPTransport
// (answered in memory), the result's producer span with its headers.
// "off" is the same code with tracing off (the no-op provider), "discard"
// hands every span to an exporter that drops it, "otlp" exports it over
// OTLP/HTTP to a local sink as a deployed worker would. cpu-ns/op, the
// process's CPU time per command (the sink's included), is steadier than
// ns/op on a shared machine.
func BenchmarkCommandTrace(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	for _, mode := range []struct {
		name string
		vars map[string]string
		exp  sdktrace.SpanExporter
	}{
		{"off", nil, nil},
		{"discard", nil, discardExporter{}},
		{"otlp", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.URL + "/v1/traces"}, nil},
	} {
		b.Run(mode.name, func(b *testing.B) {
			// Room for every span: the loop outpaces any exporter, and a
			// dropped span costs nothing. (The SDK reads OTEL_BSP_* itself.)
			b.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "1000000")
			tel, err := Setup(context.Background(), Config{Getenv: env(mode.vars), SpanExporter: mode.exp, Sampler: sdktrace.AlwaysSample()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = tel.Shutdown(context.Background()) }()
			tracer := tel.Tracer("bench")
			client := &http.Client{Transport: tel.HTTPTransport(canned{})}
			const subject = "groups.cmd.106540352242922.get_invite_link"
			d := Delivery{Subject: subject, Header: nats.Header{"Nats-Msg-Id": {"bench-1"}},
				Stream: "GROUPS_COMMANDS", Consumer: "worker-commands", NumDelivered: 1, StreamSequence: 42}
			b.SetParallelism(8) // 16 commands at once on 2 cores, as the worker benchmark runs them
			b.ReportAllocs()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, span := StartDelivery(context.Background(), tracer, d)
					span.SetAttributes(attribute.String("groupflow.command.id", "bench-1"), attribute.String("groupflow.command.type", "get_invite_link"))
					_ = TraceParent(ctx)
					req, _ := http.NewRequestWithContext(WithEndpoint(ctx, "get_invite_link", "/v23.0/{group_id}/invite_link"), http.MethodGet,
						"http://graph.test/v23.0/Y2FwaV9ncm91cDoxNTU1MjI0MjkyMjox/invite_link", nil)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					h := nats.Header{"Nats-Msg-Id": {"bench-1:terminal"}}
					pctx, p := BeginPublish(ctx, tracer, "groups.event.106540352242922.command.succeeded", "bench-1:terminal")
					Inject(pctx, h)
					p.End(&jetstream.PubAck{Stream: "GROUPS_EVENTS", Sequence: 43}, nil)
					span.End()
				}
			})
			if err := tel.ForceFlush(context.Background()); err != nil { // the export is part of the cost
				b.Fatal(err)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
