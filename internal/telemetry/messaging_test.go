package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestPublishThenProcess(t *testing.T) {
	t.Parallel()
	srv := natsembed.RunTest(t)
	b := setup(t)
	tracer := b.tel.Tracer("test")
	ctx := context.Background()

	js, err := jetstream.New(connect(t, srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TEL_COMMANDS", Subjects: []string{"tel.cmd.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "worker-commands", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}

	const subject = "tel.cmd.106540352242922.create_group"
	callerCtx, caller := tracer.Start(ctx, "caller")
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, "order-4711")
	msg.Data = []byte(`{}`)
	ack, err := PublishMsg(callerCtx, tracer, js, msg)
	if err != nil {
		t.Fatalf("PublishMsg: %v", err)
	}
	caller.End()
	if ack.Sequence != 1 {
		t.Fatalf("ack sequence = %d, want 1", ack.Sequence)
	}

	// Deliver twice: process, nak, process the redelivery.
	for range 2 {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			_, span := StartProcess(ctx, tracer, m)
			span.End()
			if err := m.Nak(); err != nil {
				t.Fatal(err)
			}
		}
		if got != 1 {
			t.Fatalf("fetched %d messages (err %v), want 1", got, batch.Error())
		}
	}

	spans := b.ended(t)
	prod := spanNamed(t, spans, "send tel.cmd.*.create_group")
	if prod.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span kind = %v, want producer", prod.SpanKind)
	}
	if prod.Parent.SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("publish span parent = %s, want the caller %s", prod.Parent.SpanID(), caller.SpanContext().SpanID())
	}
	wantAttrs(t, prod, map[attribute.Key]any{
		semconv.MessagingSystemKey:                "nats",
		semconv.MessagingOperationTypeKey:         "send",
		semconv.MessagingDestinationNameKey:       subject,
		semconv.MessagingDestinationTemplateKey:   "tel.cmd.*.create_group",
		semconv.MessagingMessageIDKey:             "order-4711",
		AttrStream:                                "TEL_COMMANDS",
		AttrStreamSequence:                        1,
		attribute.Key("messaging.operation.name"): "send",
	})

	var processed []int64
	for _, s := range spans {
		if s.Name != "process tel.cmd.*.create_group" {
			continue
		}
		if s.SpanKind != trace.SpanKindConsumer {
			t.Errorf("process span kind = %v, want consumer", s.SpanKind)
		}
		if s.SpanContext.TraceID() != caller.SpanContext().TraceID() {
			t.Errorf("process span trace = %s, want the caller's %s", s.SpanContext.TraceID(), caller.SpanContext().TraceID())
		}
		if s.Parent.SpanID() != prod.SpanContext.SpanID() {
			t.Errorf("process span parent = %s, want the publish span %s", s.Parent.SpanID(), prod.SpanContext.SpanID())
		}
		if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != prod.SpanContext.SpanID() {
			t.Errorf("process span links = %v, want one link to the publish span %s", s.Links, prod.SpanContext.SpanID())
		}
		wantAttrs(t, s, map[attribute.Key]any{
			semconv.MessagingSystemKey:              "nats",
			semconv.MessagingOperationTypeKey:       "process",
			semconv.MessagingDestinationNameKey:     subject,
			semconv.MessagingDestinationTemplateKey: "tel.cmd.*.create_group",
			semconv.MessagingMessageIDKey:           "order-4711",
			semconv.MessagingConsumerGroupNameKey:   "worker-commands",
			AttrStream:                              "TEL_COMMANDS",
			AttrStreamSequence:                      1,
		})
		n, _ := attrOf(s, AttrDeliveryCount)
		processed = append(processed, n.AsInt64())
	}
	if len(processed) != 2 || processed[0] != 1 || processed[1] != 2 {
		t.Errorf("delivery counts of the process spans = %v, want [1 2]", processed)
	}
}

// A publish JetStream does not take marks its span failed, with
// error.type the failure's class rather than its Go type: no stream
// listens on the subject, so nothing answered.
func TestAFailedPublishSaysWhyInErrorType(t *testing.T) {
	t.Parallel()
	srv := natsembed.RunTest(t)
	b := setup(t)
	js, err := jetstream.New(connect(t, srv.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("tel.nostream.106540352242922.x")
	if _, err := PublishMsg(context.Background(), b.tel.Tracer("test"), js, msg); err == nil {
		t.Fatal("a publish no stream takes succeeded")
	}
	s := spanNamed(t, b.ended(t), "send tel.nostream.*.x")
	wantAttrs(t, s, map[attribute.Key]any{semconv.ErrorTypeKey: ErrorNoResponders})
}

func TestStartDelivery(t *testing.T) {
	t.Parallel()

	t.Run("Without trace context starts a new trace", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tracer := b.tel.Tracer("test")
		loopCtx, loop := tracer.Start(context.Background(), "fetch loop")
		_, span := StartDelivery(loopCtx, tracer, Delivery{Subject: "groups.webhook.1.x", Header: nats.Header{}})
		span.End()
		loop.End()

		s := spanNamed(t, b.ended(t), "process groups.webhook.*.x")
		if s.Parent.IsValid() || len(s.Links) != 0 {
			t.Errorf("process span parent %v links %v, want a root without links", s.Parent, s.Links)
		}
		if s.SpanContext.TraceID() == loop.SpanContext().TraceID() {
			t.Errorf("process span joined the fetch loop's trace")
		}
	})

	t.Run("Tracing off passes the caller's context through", func(t *testing.T) {
		t.Parallel()
		tel, err := Setup(context.Background(), Config{Getenv: env(nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		}()
		if tel.TracingEnabled() {
			t.Fatal("tracing on with no exporter configured")
		}
		tracer := tel.Tracer("test")
		const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		ctx, span := StartDelivery(context.Background(), tracer, Delivery{Subject: "groups.cmd.1.x", Header: nats.Header{"traceparent": {tp}}})
		defer span.End()
		ctx, pub := StartPublish(ctx, tracer, "groups.event.1.command.succeeded", "")
		defer pub.End()
		out := nats.Header{}
		Inject(ctx, out)
		if got := out.Get("traceparent"); got != tp {
			t.Errorf("result event traceparent = %q, want the caller's %q", got, tp)
		}
	})
}

func TestSubjectTemplate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"groups.cmd.106540352242922.create_group", "groups.cmd.*.create_group"},
		{"groups.event.1.command.succeeded", "groups.event.*.command.succeeded"},
		{"groups.cmd.>", "groups.cmd.>"},
		{"v2.things", "v2.things"},
		{"", ""},
		{"a..1.", "a..*."},
		{"1", "*"},
		{".1a.22", ".1a.*"},
	} {
		if got := SubjectTemplate(tc.in); got != tc.want {
			t.Errorf("SubjectTemplate(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzSubjectTemplate checks the one-allocation span namer against the
// obvious split-and-join.
func FuzzSubjectTemplate(f *testing.F) {
	for _, s := range []string{"groups.cmd.106540352242922.create_group", "a..1.", "", "1", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		tokens := strings.Split(subject, ".")
		for i, tok := range tokens {
			if tok != "" && strings.Trim(tok, "0123456789") == "" {
				tokens[i] = "*"
			}
		}
		want := strings.Join(tokens, ".")
		if got := SubjectTemplate(subject); got != want {
			t.Errorf("SubjectTemplate(%q) = %q, want %q", subject, got, want)
		}
		if got := spanName("send", subject); got != "send "+want {
			t.Errorf("spanName(send, %q) = %q, want %q", subject, got, "send "+want)
		}
	})
}
