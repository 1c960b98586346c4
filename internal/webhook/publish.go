package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"go.opentelemetry.io/otel/trace"

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
	// and writes its trace context into the message headers. Without one,
	// the request's own trace context (if any) is written.
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
	futures := make([]jetstream.PubAckFuture, 0, len(items))
	var spans []trace.Span
	if p.Tracer != nil {
		spans = make([]trace.Span, 0, len(items))
	}
	defer func() {
		for _, span := range spans {
			span.End()
		}
	}()
	// Every item's JSON goes into one buffer. The messages keep pointing
	// into it until their acks arrive (a publish may be retried), so it is
	// not reused.
	size := 0
	for i := range items {
		size += encodedSize(&items[i])
	}
	buf := make([]byte, 0, size)
	for i := range items {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("webhook: publish items: %w", err)
		}
		it := &items[i]
		start := len(buf)
		var err error
		if buf, err = appendItem(buf, it); err != nil {
			return fmt.Errorf("webhook: encode item %s: %w", it.MsgID, err)
		}
		msg := &nats.Msg{Subject: p.subject(it), Data: buf[start:len(buf):len(buf)], Header: nats.Header{}}
		span := noSpan
		if p.Tracer != nil {
			var sctx context.Context
			sctx, span = telemetry.StartPublish(ctx, p.Tracer, msg.Subject, it.MsgID)
			spans = append(spans, span)
			telemetry.Inject(sctx, msg.Header)
		} else {
			// Without a tracer the producer span would be a no-op carrying
			// the caller's span context: inject that directly.
			telemetry.Inject(ctx, msg.Header)
		}
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
			if spans != nil {
				telemetry.RecordError(spans[i], err)
			}
			return fmt.Errorf("webhook: publish item %s: %w", items[i].MsgID, err)
		case <-ctx.Done():
			return fmt.Errorf("webhook: wait for acks: %w", ctx.Err())
		}
	}
	return nil
}

// noSpan stands for the span of a publisher without a tracer.
var noSpan = trace.SpanFromContext(context.Background())

// encodedSize is about the length of it as JSON: exact unless a string
// needs escaping.
func encodedSize(it *Item) int {
	return len(`{"msg_id":"","waba_id":"","phone_number_id":"","display_phone_number":"","field":"","kind":"","type":"","group_id":"","data":}`) +
		len(it.MsgID) + len(it.WABAID) + len(it.PhoneNumberID) + len(it.DisplayPhoneNumber) + len(it.Field) +
		len(it.Kind) + len(it.Type) + len(it.GroupID) + max(len(it.Data), len("null"))
}

// appendItem appends it as encoding/json (with HTML escaping off) writes
// an Item. Data from Parse is valid, compact JSON and is copied as is; any
// other Data is compacted, or refused as encoding/json refuses it.
func appendItem(dst []byte, it *Item) ([]byte, error) {
	dst = append(dst, `{"msg_id":`...)
	dst = appendString(dst, it.MsgID)
	dst = append(dst, `,"waba_id":`...)
	dst = appendString(dst, it.WABAID)
	dst = append(dst, `,"phone_number_id":`...)
	dst = appendString(dst, it.PhoneNumberID)
	if it.DisplayPhoneNumber != "" {
		dst = append(dst, `,"display_phone_number":`...)
		dst = appendString(dst, it.DisplayPhoneNumber)
	}
	dst = append(dst, `,"field":`...)
	dst = appendString(dst, it.Field)
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, it.Kind)
	if it.Type != "" {
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, it.Type)
	}
	if it.GroupID != "" {
		dst = append(dst, `,"group_id":`...)
		dst = appendString(dst, it.GroupID)
	}
	dst = append(dst, `,"data":`...)
	switch {
	case it.Data == nil:
		dst = append(dst, "null"...)
	case compactJSON(it.Data):
		dst = append(dst, it.Data...)
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, it.Data); err != nil {
			// Let encoding/json word the error as it always did.
			enc := json.NewEncoder(io.Discard)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(it); err != nil {
				return nil, err
			}
			return nil, err
		}
		dst = append(dst, buf.Bytes()...)
	}
	return append(dst, '}'), nil
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
