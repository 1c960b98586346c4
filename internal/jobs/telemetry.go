package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// Tracing in the worker. A command's trace runs caller → publish → the
// worker's consumer span (processCommand) → each Graph call → the result
// publish. The consumer span's traceparent is kept in the ledger entry
// (Entry.Traceparent), so work done later for the command — the webhook
// that completes it, the sweeper that times it out, a dead letter after
// the server gave up on it — publishes in the command's trace, and the
// webhook's own span links to it.

// Span attributes naming the command a span works for.
const (
	attrCommandID   = attribute.Key("groupflow.command.id")
	attrCommandType = attribute.Key("groupflow.command.type")
)

// commandAttrs names the command a span works for, in a (with n of them
// set): none when it has no id.
func commandAttrs(cmd events.Command) (a [2]attribute.KeyValue, n int) {
	if cmd.ID == "" {
		return a, 0
	}
	return [2]attribute.KeyValue{attrCommandID.String(cmd.ID), attrCommandType.String(cmd.Type)}, 2
}

// publishMsg publishes m with Nats-Msg-Id msgID inside a producer span,
// child of ctx's span, whose trace context goes in m's headers. Every
// publish of the worker goes through it or startPublish (events, dead
// letters, commands fanned out by a campaign), so each is a span and
// carries its trace on.
func (w *Worker) publishMsg(ctx context.Context, m *nats.Msg, msgID string) (*jetstream.PubAck, error) {
	end := w.startPublish(ctx, m, msgID)
	ack, err := w.js.PublishMsg(ctx, m)
	end(ack, err)
	return ack, err
}

// startPublish is publishMsg for a publish made otherwise (PublishMsgAsync
// in a fan-out): it sets m's Nats-Msg-Id, starts the producer span and
// writes its trace context into m's headers. Call end with the outcome:
// the acknowledgement, or the error.
func (w *Worker) startPublish(ctx context.Context, m *nats.Msg, msgID string) (end func(*jetstream.PubAck, error)) {
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, p := telemetry.BeginPublish(ctx, w.tracer, m.Subject, msgID)
	telemetry.Inject(ctx, m.Header)
	return p.End
}

// traceCtx returns ctx when it holds a span, else ctx carrying the span
// a stored traceparent names: work that runs outside any delivery (the
// sweeper, a max-deliveries advisory) then publishes in the command's trace.
func traceCtx(ctx context.Context, traceparent string) context.Context {
	if trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	return telemetry.ContextWithTraceParent(ctx, traceparent)
}

// commandTrace starts a span in the trace of the command e (its stored
// traceparent) for work a webhook delivery does for it: the terminal
// event then carries the command's trace, as if the command's own
// processing had published it. The span links to ctx's span (the
// webhook's), and that span links back to the command, so each trace
// leads to the other. When ctx is already in the command's trace, or the
// command has no traceparent, ctx is used as is. Call end when done.
func (w *Worker) commandTrace(ctx context.Context, name string, e Entry) (_ context.Context, end func()) {
	sc, ok := linkCommand(ctx, e)
	if !ok {
		return ctx, func() {}
	}
	here := trace.SpanFromContext(ctx)
	opts := []trace.SpanStartOption{trace.WithAttributes(attrCommandID.String(e.CommandID))}
	if hsc := here.SpanContext(); hsc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: hsc}))
	}
	cctx, span := w.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, sc), name, opts...)
	return cctx, func() { span.End() }
}

// linkCommand links ctx's span (a webhook delivery) to the trace of the
// command e it applies to. ok is false when there is nothing to link: the
// command has no traceparent, or ctx is in its trace already.
func linkCommand(ctx context.Context, e Entry) (sc trace.SpanContext, ok bool) {
	sc, ok = telemetry.ParseTraceParent(e.Traceparent)
	here := trace.SpanFromContext(ctx)
	if !ok || here.SpanContext().TraceID() == sc.TraceID() {
		return sc, false
	}
	if here.IsRecording() {
		here.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attrCommandID.String(e.CommandID)}})
	}
	return sc, true
}

// DLQDepth returns the function telemetry.Metrics.ObserveDLQ calls at
// each collection: the dead-letter stream's message count.
func DLQDepth(js jetstream.JetStream, names events.Names) func(context.Context) ([]telemetry.StreamDepth, error) {
	return func(ctx context.Context) ([]telemetry.StreamDepth, error) {
		s, err := js.Stream(ctx, names.DLQStream())
		if err != nil {
			return nil, fmt.Errorf("dlq stream: %w", err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("dlq stream info: %w", err)
		}
		return []telemetry.StreamDepth{{Stream: info.Config.Name, Messages: info.State.Msgs}}, nil
	}
}

// ParkedCommands returns the function telemetry.Metrics.ObserveParked
// calls at each collection: how many commands are parked, copies held
// under Names.Parked subjects in the parked stream until their number's
// turn (see Worker.park), and, while the command stream is a legacy one
// (events.LegacyCommandStream), the copies parked in it before.
//
// The parked stream holds parked copies and, for a moment, due ones the
// command stream has yet to take, so the parked ones are its message
// count less the due ones, both read in one request; the legacy command
// stream holds commands and parked copies, so the parked ones are its
// message count less its commands. Each parked copy has a subject of its
// own, so counting them subject by subject (as groupctl health does)
// would list every one of them at every scrape of every worker, megabytes
// for a deep backlog; commands and due copies have a subject per number
// and type. What arrives or leaves while the server answers may make one
// reading off by that much; it never reads below 0.
func ParkedCommands(js jetstream.JetStream, names events.Names) func(context.Context) ([]telemetry.StreamDepth, error) {
	return func(ctx context.Context) ([]telemetry.StreamDepth, error) {
		parked, err := ParkedIn(ctx, js, names, names.ParkedStream())
		if err != nil {
			return nil, err
		}
		depths := []telemetry.StreamDepth{{Stream: names.ParkedStream(), Messages: parked}}
		s, err := js.Stream(ctx, names.CommandStream())
		if err != nil {
			return depths, fmt.Errorf("command stream: %w", err)
		}
		if cfg := s.CachedInfo().Config; events.LegacyCommandStream(&cfg) {
			legacy, err := ParkedIn(ctx, js, names, names.CommandStream())
			if err != nil {
				return depths, err
			}
			depths = append(depths, telemetry.StreamDepth{Stream: names.CommandStream(), Messages: legacy})
		}
		return depths, nil
	}
}

// ParkedIn counts the parked commands stream holds, as ParkedCommands
// does: every message of the parked stream, its due copies included (they
// are back in the command stream within moments; ones that stay, because
// the command stream no longer sources them, are commands waiting all the
// same, and the not-draining alert must see them), or the command
// stream's messages less its commands (only a legacy one holds parked
// copies).
func ParkedIn(ctx context.Context, js jetstream.JetStream, names events.Names, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	if stream != names.CommandStream() {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("stream %s info: %w", stream, err)
		}
		return info.State.Msgs, nil
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(names.AllCommands()))
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	var matched uint64
	for _, n := range info.State.Subjects {
		matched += n
	}
	return info.State.Msgs - min(matched, info.State.Msgs), nil
}

// ConsumerLag returns the function telemetry.Metrics.ObserveConsumers
// calls at each collection: the backlog of the workers' two durable
// consumers (commands and webhooks). A consumer it cannot read is left
// out and its error returned alongside the others.
func ConsumerLag(js jetstream.JetStream, names events.Names) func(context.Context) ([]telemetry.ConsumerLag, error) {
	pairs := [][2]string{
		{names.CommandStream(), names.CommandConsumer()},
		{names.WebhookStream(), names.WebhookConsumer()},
	}
	return func(ctx context.Context) ([]telemetry.ConsumerLag, error) {
		var out []telemetry.ConsumerLag
		var errs []error
		for _, p := range pairs {
			c, err := js.Consumer(ctx, p[0], p[1])
			if err != nil {
				errs = append(errs, fmt.Errorf("consumer %s/%s: %w", p[0], p[1], err))
				continue
			}
			info, err := c.Info(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("consumer %s/%s info: %w", p[0], p[1], err))
				continue
			}
			out = append(out, telemetry.ConsumerLag{Stream: p[0], Consumer: p[1],
				Pending: info.NumPending, AckPending: int64(info.NumAckPending)})
		}
		return out, errors.Join(errs...)
	}
}
