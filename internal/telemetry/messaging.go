package telemetry

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Attributes for what NATS has and the messaging conventions do not name
// (they have no NATS-specific attributes yet). They follow the pattern of the
// registered ones (messaging.gcp_pubsub.message.delivery_attempt,
// messaging.servicebus.message.delivery_count).
const (
	// AttrDeliveryCount is JetStream's NumDelivered: 1 on first delivery,
	// more on redelivery.
	AttrDeliveryCount = attribute.Key("messaging.nats.message.delivery_count")
	// AttrStreamSequence is the message's sequence in its stream.
	AttrStreamSequence = attribute.Key("messaging.nats.message.stream_sequence")
	// AttrStream is the JetStream stream that stored the message.
	AttrStream = attribute.Key("messaging.nats.stream.name")
	// AttrDuplicate is set on a publish JetStream acknowledged as a duplicate
	// of a message with the same Nats-Msg-Id.
	AttrDuplicate = attribute.Key("messaging.nats.message.duplicate")
	// AttrSettlement is what the consumer did with the delivery: "ack",
	// "nak" (redelivered, after AttrNakDelay) or "term" (never again).
	AttrSettlement = attribute.Key("messaging.nats.message.settlement")
	// AttrNakDelay is the delay in seconds a nak asked for (0: at once).
	AttrNakDelay = attribute.Key("messaging.nats.message.nak_delay")
)

// What every messaging span of a kind starts with, built once: a span's
// attributes are set in one call, so the SDK allocates its attribute
// slice once instead of growing it attribute by attribute.
var (
	systemNATS    = semconv.MessagingSystemKey.String("nats")
	opNameSend    = semconv.MessagingOperationName("send")
	opNameProcess = semconv.MessagingOperationName("process")
	producerKind  = trace.WithSpanKind(trace.SpanKindProducer)
	consumerKind  = trace.WithSpanKind(trace.SpanKindConsumer)
	newRoot       = trace.WithNewRoot()
)

// SubjectTemplate is the low-cardinality form of a subject, the
// messaging.destination.template of its spans and the destination in
// their names: tokens made only of digits (phone number ids, sequences)
// become "*", so "groups.cmd.106540352242922.create_group" names the span
// "send groups.cmd.*.create_group". The full subject stays in
// messaging.destination.name.
func SubjectTemplate(subject string) string { return spanName("", subject) }

// templateOf is the subject template in a span name made by spanName for
// op: no second allocation.
func templateOf(op, name string) string { return name[len(op)+1:] }

// spanName returns op + " " + the subject's template (just the template when
// op is ""), in one allocation: it runs for every message, traced or not.
func spanName(op, subject string) string {
	if !strings.ContainsAny(subject, "0123456789") {
		if op == "" {
			return subject
		}
		return op + " " + subject
	}
	b := make([]byte, 0, len(op)+1+len(subject))
	if op != "" {
		b = append(b, op...)
		b = append(b, ' ')
	}
	for i := 0; i <= len(subject); {
		j := strings.IndexByte(subject[i:], '.')
		if j < 0 {
			j = len(subject) - i
		}
		tok := subject[i : i+j]
		if tok != "" && strings.Trim(tok, "0123456789") == "" {
			b = append(b, '*')
		} else {
			b = append(b, tok...)
		}
		i += j + 1
		if i <= len(subject) {
			b = append(b, '.')
		}
	}
	return string(b)
}

// StartPublish starts a producer span ("send <subject template>") for
// publishing to subject; msgID is the Nats-Msg-Id, "" when there is none.
// Inject the returned context into the message's headers, publish, and end
// the span. PublishMsg does all of that.
func StartPublish(ctx context.Context, tracer trace.Tracer, subject, msgID string) (context.Context, trace.Span) {
	name := spanName("send", subject)
	ctx, span := tracer.Start(ctx, name, producerKind)
	if span.IsRecording() { // attributes cost allocations a no-op span would throw away
		attrs := [6]attribute.KeyValue{systemNATS, semconv.MessagingOperationTypeSend, opNameSend,
			semconv.MessagingDestinationName(subject), semconv.MessagingDestinationTemplate(templateOf("send", name))}
		n := 5
		if msgID != "" {
			attrs[n] = semconv.MessagingMessageID(msgID)
			n++
		}
		span.SetAttributes(attrs[:n]...)
	}
	return ctx, span
}

// Publish is a producer span in flight, from BeginPublish.
type Publish struct {
	span                     trace.Span
	subject, template, msgID string
}

// BeginPublish is StartPublish for a caller that ends the span with the
// publish's outcome (Publish.End): its attributes are all set then, in one
// call, which costs the SDK one allocation instead of a second, larger one
// for the acknowledgement's. Nothing reads a span's attributes before it
// ends.
func BeginPublish(ctx context.Context, tracer trace.Tracer, subject, msgID string) (context.Context, Publish) {
	name := spanName("send", subject)
	ctx, span := tracer.Start(ctx, name, producerKind)
	return ctx, Publish{span: span, subject: subject, template: templateOf("send", name), msgID: msgID}
}

// End records the outcome of the publish — the acknowledged stream
// position, or err — and ends the span.
func (p Publish) End(ack *jetstream.PubAck, err error) {
	defer p.span.End()
	if !p.span.IsRecording() {
		return
	}
	attrs := [9]attribute.KeyValue{systemNATS, semconv.MessagingOperationTypeSend, opNameSend,
		semconv.MessagingDestinationName(p.subject), semconv.MessagingDestinationTemplate(p.template)}
	n := 5
	if p.msgID != "" {
		attrs[n] = semconv.MessagingMessageID(p.msgID)
		n++
	}
	if err == nil && ack != nil {
		attrs[n], attrs[n+1] = AttrStream.String(ack.Stream), AttrStreamSequence.Int64(saturatingInt64(ack.Sequence))
		n += 2
		if ack.Duplicate {
			attrs[n] = AttrDuplicate.Bool(true)
			n++
		}
	}
	p.span.SetAttributes(attrs[:n]...)
	RecordError(p.span, err)
}

// Publisher is what PublishMsg needs of JetStream; jetstream.JetStream has it.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

var _ Publisher = jetstream.JetStream(nil)

// PublishMsg publishes msg to JetStream inside a producer span: it starts
// the span, writes its trace context into msg.Header (allocating it if nil),
// publishes and records the outcome. Set the Nats-Msg-Id header rather than
// jetstream.WithMsgID so the span can carry messaging.message.id.
func PublishMsg(ctx context.Context, tracer trace.Tracer, js Publisher, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	ctx, p := BeginPublish(ctx, tracer, msg.Subject, msg.Header.Get(jetstream.MsgIDHeader))
	Inject(ctx, msg.Header)
	ack, err := js.PublishMsg(ctx, msg, opts...)
	p.End(ack, err)
	return ack, err
}

// Delivery describes a received message for StartDelivery, for callers that
// do not hold a jetstream.Msg (a core NATS subscription, a replay).
type Delivery struct {
	Subject string
	Header  nats.Header
	// MsgID is messaging.message.id. Defaults to the Nats-Msg-Id header.
	MsgID string
	// Stream is the JetStream stream the message came from, if any.
	Stream string
	// Consumer is the durable consumer name, which all workers share: it is
	// the consumer group (messaging.consumer.group.name).
	Consumer string
	// NumDelivered counts deliveries, 1 the first time.
	NumDelivered uint64
	// StreamSequence is the message's sequence in Stream.
	StreamSequence uint64
	// Attributes are more attributes for the span, set with the messaging
	// ones in one call (say, what the message is about, when it is known
	// before the span starts).
	Attributes []attribute.KeyValue
}

// DeliveryOf describes a JetStream message. Metadata it cannot parse is left
// zero: a span with fewer attributes beats failing the message.
func DeliveryOf(msg jetstream.Msg) Delivery {
	d := Delivery{Subject: msg.Subject(), Header: msg.Headers()}
	if md, err := msg.Metadata(); err == nil {
		d.Stream = md.Stream
		d.Consumer = md.Consumer
		d.NumDelivered = md.NumDelivered
		d.StreamSequence = md.Sequence.Stream
	}
	return d
}

// StartProcess starts the consumer span ("process <subject template>") for
// handling a JetStream message, with attrs besides the messaging ones. See
// StartDelivery.
func StartProcess(ctx context.Context, tracer trace.Tracer, msg jetstream.Msg, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return startDelivery(ctx, tracer, DeliveryOf(msg), attrs)
}

// StartDelivery starts the consumer span for handling d. When d's headers
// carry a trace context, the span continues that trace (its parent is the
// producer span, so the trace reads caller → publish → process) and also
// links to it, the messaging conventions' "creation context". Without one
// the span starts a new trace, never a child of whatever span ctx holds (a
// long-lived fetch loop must not parent every message). Baggage in the
// headers is carried into the returned context.
func StartDelivery(ctx context.Context, tracer trace.Tracer, d Delivery) (context.Context, trace.Span) {
	return startDelivery(ctx, tracer, d, d.Attributes)
}

// startDelivery is StartDelivery with the extra attributes apart from d,
// which leaks (its header goes into the propagator): a caller's array
// of them then stays on its stack.
func startDelivery(ctx context.Context, tracer trace.Tracer, d Delivery, extra []attribute.KeyValue) (context.Context, trace.Span) {
	prev := trace.SpanContextFromContext(ctx)
	ctx = Extract(ctx, d.Header)
	opts := [2]trace.SpanStartOption{consumerKind, newRoot}
	if creation := trace.SpanContextFromContext(ctx); creation.IsValid() && !creation.Equal(prev) {
		opts[1] = trace.WithLinks(trace.Link{SpanContext: creation})
	}
	name := spanName("process", d.Subject)
	ctx, span := tracer.Start(ctx, name, opts[:]...)
	if span.IsRecording() {
		var buf [13]attribute.KeyValue
		attrs := append(buf[:0], systemNATS, semconv.MessagingOperationTypeProcess, opNameProcess,
			semconv.MessagingDestinationName(d.Subject), semconv.MessagingDestinationTemplate(templateOf("process", name)))
		add := func(kv attribute.KeyValue) { attrs = append(attrs, kv) }
		msgID := d.MsgID
		if msgID == "" {
			msgID = d.Header.Get(jetstream.MsgIDHeader)
		}
		if msgID != "" {
			add(semconv.MessagingMessageID(msgID))
		}
		if d.Consumer != "" {
			add(semconv.MessagingConsumerGroupName(d.Consumer))
		}
		if d.Stream != "" {
			add(AttrStream.String(d.Stream))
		}
		if d.NumDelivered > 0 {
			add(AttrDeliveryCount.Int64(saturatingInt64(d.NumDelivered)))
		}
		if d.StreamSequence > 0 {
			add(AttrStreamSequence.Int64(saturatingInt64(d.StreamSequence)))
		}
		span.SetAttributes(append(attrs, extra...)...)
	}
	return ctx, span
}

// RecordError marks span failed with err: an exception event, error status
// and error.type, err's class (ErrorType: timeout, no_responders,
// graph_throttled, …). The caller must make sure err's text holds no
// secret; groupflow's errors never carry one.
func RecordError(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(ErrorType(err)))
}

// saturatingInt64 converts a JetStream counter (a sequence, a delivery
// count, a message count) to the int64 that OTel attributes and gauges
// take. No stream comes near 2^63 messages; should a counter ever pass
// math.MaxInt64, it reads as the maximum rather than as a negative number.
func saturatingInt64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// SettledOnSpan returns msg recording on span how it is settled: Ack,
// DoubleAck, Nak, NakWithDelay, Term and TermWithReason set AttrSettlement
// (and AttrNakDelay), so a trace says why a message came back, or did not.
// Settle before ending span. msg is returned as is when span records
// nothing.
func SettledOnSpan(msg jetstream.Msg, span trace.Span) jetstream.Msg {
	if !span.IsRecording() {
		return msg
	}
	return settledMsg{Msg: msg, span: span}
}

type settledMsg struct {
	jetstream.Msg
	span trace.Span
}

var (
	settleAck  = AttrSettlement.String("ack")
	settleNak  = AttrSettlement.String("nak")
	settleTerm = AttrSettlement.String("term")
)

func (m settledMsg) Ack() error {
	m.span.SetAttributes(settleAck)
	return m.Msg.Ack()
}

func (m settledMsg) DoubleAck(ctx context.Context) error {
	m.span.SetAttributes(settleAck)
	return m.Msg.DoubleAck(ctx)
}

func (m settledMsg) Nak() error {
	m.span.SetAttributes(settleNak, AttrNakDelay.Float64(0))
	return m.Msg.Nak()
}

func (m settledMsg) NakWithDelay(delay time.Duration) error {
	m.span.SetAttributes(settleNak, AttrNakDelay.Float64(delay.Seconds()))
	return m.Msg.NakWithDelay(delay)
}

func (m settledMsg) Term() error {
	m.span.SetAttributes(settleTerm)
	return m.Msg.Term()
}

func (m settledMsg) TermWithReason(reason string) error {
	m.span.SetAttributes(settleTerm)
	return m.Msg.TermWithReason(reason)
}
