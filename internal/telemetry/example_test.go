package telemetry_test

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/telemetry"
)

// Trace context travels in NATS headers under lowercase keys, and is read
// whatever case another client used.
func ExampleInject() {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	out := nats.Header{}
	telemetry.Inject(trace.ContextWithSpanContext(context.Background(), sc), out)
	for k, v := range out {
		fmt.Printf("%s: %s\n", k, v[0])
	}

	in := nats.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx := telemetry.Extract(context.Background(), in)
	fmt.Println("continues trace", trace.SpanContextFromContext(ctx).TraceID())
	// Output:
	// traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	// continues trace 0af7651916cd43dd8448eb211c80319c
}

// With no OTEL_* exporter configured, tracing is a no-op; metrics are still
// served on /metrics.
func ExampleSetup() {
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{
		ServiceName:    "groupflow-worker",
		ServiceVersion: "1.0.0",
		Getenv:         func(string) string { return "" },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			fmt.Println(err)
		}
	}()
	fmt.Println("tracing:", tel.TracingEnabled())
	// Output:
	// tracing: false
}

func ExampleSubjectTemplate() {
	fmt.Println(telemetry.SubjectTemplate("groups.cmd.106540352242922.create_group"))
	// Output:
	// groups.cmd.*.create_group
}
