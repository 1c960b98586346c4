package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// Publisher hands webhook items to durable storage. Publish returns nil only
// once every item is stored; the Handler answers Meta 200 only then.
type Publisher interface {
	Publish(ctx context.Context, items []Item) error
}

// NoPhoneToken stands in the subject for an item without a phone number id
// (account-level changes).
const NoPhoneToken = "_"

// defaultStallWait bounds how long one publish waits for room among the
// outstanding async publishes when ctx has no deadline.
const defaultStallWait = 5 * time.Second

// JetStreamPublisher publishes each item as JSON to
// Names.Webhook(phone, field) with Nats-Msg-Id set to the item's MsgID, so
// JetStream drops redeliveries within the stream's duplicate window.
//
// Items are published asynchronously and the acks awaited together, which
// is what makes a 1000-item delivery fast. Configure the JetStream handle
// with jetstream.WithPublishAsyncTimeout so an ack lost to a disconnect does
// not stay pending forever.
type JetStreamPublisher struct {
	// JS is the JetStream handle to publish with. Required.
	JS jetstream.JetStream
	// Names builds the subjects. The zero value uses the "groups" prefix.
	Names events.Names
	// Tracer makes one producer span per item, child of the request's span,
	// and writes its trace context into the message headers. Defaults to a
	// no-op tracer.
	Tracer trace.Tracer
}

var _ Publisher = JetStreamPublisher{}

// Publish publishes items and waits until JetStream acknowledged all of them
// or ctx is done. On error some items may have been stored; publishing the
// same items again is safe because their MsgIDs deduplicate them.
func (p JetStreamPublisher) Publish(ctx context.Context, items []Item) error {
	if p.JS == nil {
		return errors.New("webhook: JetStreamPublisher.JS is nil")
	}
	stall := defaultStallWait
	if dl, ok := ctx.Deadline(); ok {
		stall = max(time.Until(dl), time.Millisecond)
	}
	tracer := p.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	futures := make([]jetstream.PubAckFuture, 0, len(items))
	spans := make([]trace.Span, 0, len(items))
	defer func() {
		for _, span := range spans {
			span.End()
		}
	}()
	for i := range items {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("webhook: publish items: %w", err)
		}
		it := &items[i]
		data, err := encodeItem(it)
		if err != nil {
			return fmt.Errorf("webhook: encode item %s: %w", it.MsgID, err)
		}
		msg := &nats.Msg{Subject: p.subject(it), Data: data, Header: nats.Header{}}
		sctx, span := telemetry.StartPublish(ctx, tracer, msg.Subject, it.MsgID)
		spans = append(spans, span)
		telemetry.Inject(sctx, msg.Header)
		f, err := p.JS.PublishMsgAsync(msg, jetstream.WithMsgID(it.MsgID), jetstream.WithStallWait(stall))
		if err != nil {
			telemetry.RecordError(span, err)
			return fmt.Errorf("webhook: publish item %s: %w", it.MsgID, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			telemetry.RecordError(spans[i], err)
			return fmt.Errorf("webhook: publish item %s: %w", items[i].MsgID, err)
		case <-ctx.Done():
			return fmt.Errorf("webhook: wait for acks: %w", ctx.Err())
		}
	}
	return nil
}

// encodeItem writes it as JSON without HTML escaping, so Data is stored
// byte for byte as Parse produced it.
func encodeItem(it *Item) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(it); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

func (p JetStreamPublisher) subject(it *Item) string {
	phone := subjectToken(it.PhoneNumberID)
	if phone == "" {
		phone = NoPhoneToken
	}
	// Field is already a token (Parse guarantees it); sanitise anyway for
	// items built by hand.
	field := subjectToken(it.Field)
	if field == "" {
		field = "unknown"
	}
	return p.Names.Webhook(phone, field)
}
