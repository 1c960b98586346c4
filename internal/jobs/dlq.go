package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// DeadLetter is the message kept in GROUPS_DLQ for a command that could
// not be executed: the command as received, where it was published, and
// its attempt history. `groupctl dlq replay` publishes Command to Subject
// again after Ledger.Forget(CommandID).
type DeadLetter struct {
	CommandID     string          `json:"command_id"`
	CommandType   string          `json:"command_type"`
	PhoneNumberID string          `json:"phone_number_id"`
	Subject       string          `json:"subject"`
	Command       json.RawMessage `json:"command"`
	// Reason is events.ReasonRetriesExhausted, or ReasonPermanentError
	// when a handler panicked.
	Reason   string    `json:"reason"`
	Error    string    `json:"error,omitempty"`
	Attempts []Attempt `json:"attempts"`
	// StreamSequence is the command's position in the command stream.
	StreamSequence uint64    `json:"stream_sequence"`
	DeadAt         time.Time `json:"dead_at"`
	Worker         string    `json:"worker"`
}

// deadLetter ends a command that cannot be executed: it goes to the DLQ
// with its history, a terminal command.failed is published, and the
// message is terminated.
func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, msg jetstream.Msg, md *jetstream.MsgMetadata, job *Job, at Attempt, cause error, reason string) {
	entry, err := w.ledger.Update(ctx, job.Command.ID, func(e *Entry) error {
		if e.State.Terminal() {
			return ErrTerminal
		}
		if e.Owner != job.token {
			return ErrNotOwner
		}
		e.Attempts = append(e.Attempts, at)
		return nil
	})
	switch {
	case errors.Is(err, ErrTerminal):
		_ = w.publishTerminal(ctx, entry, false)
		_ = msg.Term()
		return
	case err != nil:
		_ = msg.NakWithDelay(time.Second)
		return
	}
	fi := failure(reason, cause)
	if err := w.bury(ctx, entry, md.Sequence.Stream, reason, cause, job.token, fi, max(deliveryCount(md.NumDelivered), len(entry.Attempts))); err != nil {
		log.WarnContext(ctx, "dead-letter", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Term()
}

// bury publishes the dead letter of e, makes it terminal (failed) and
// publishes the terminal event. seq is the command's stream sequence, 0
// when no message of the command stream is being given up on. token is the claim the caller holds, or ""
// when the server gave up on the command (then any non-live claim will do).
func (w *Worker) bury(ctx context.Context, e Entry, seq uint64, reason string, cause error, token string, fi *events.FailureInfo, attempts int) error {
	dl := DeadLetter{
		CommandID: e.CommandID, CommandType: e.CommandType, PhoneNumberID: e.PhoneNumberID, Subject: e.Subject,
		Command: e.Command, Reason: reason, Attempts: e.Attempts, StreamSequence: seq, DeadAt: w.now(), Worker: w.id,
	}
	if cause != nil {
		dl.Error = truncate(cause.Error(), 1000)
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: w.names.DLQ(e.PhoneNumberID, e.CommandType), Data: b}
	key := strconv.FormatUint(seq, 10)
	if seq == 0 {
		// No message in the command stream (webhooks used up its runs):
		// one dead letter per execution, a replay's included.
		key = "run-" + strconv.FormatInt(e.CreatedAt.UnixNano(), 10)
	}
	if _, err := w.publishMsg(traceCtx(ctx, e.Traceparent), m, e.CommandID+":dlq:"+key); err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	var cmd events.Command
	_ = json.Unmarshal(e.Command, &cmd)
	cmd.ID, cmd.Type, cmd.PhoneNumberID = e.CommandID, e.CommandType, e.PhoneNumberID
	r := w.commandResult(cmd, Result{Outcome: events.OutcomeFailed, Failure: fi}, attempts)
	r.Replay = e.Replay
	t, err := w.terminal(r)
	if err != nil {
		return err
	}
	entry, err := w.ledger.Finish(ctx, e.CommandID, token, StateFailed, t, nil, func(e *Entry) error {
		if token == "" && e.Owner != "" && w.now().Before(e.LeaseUntil) {
			return ErrNotOwner // someone is executing it after all
		}
		return nil
	})
	if errors.Is(err, ErrTerminal) {
		err = nil
	} else if err == nil {
		w.metrics.CommandDone(ctx, e.CommandType, "dead_lettered", w.now().Sub(e.CreatedAt))
	}
	if err != nil {
		return err
	}
	return w.publishTerminal(ctx, entry, false)
}

// advisory is the part of a JetStream MAX_DELIVERIES advisory we read.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// subscribeAdvisories handles the server's MAX_DELIVERIES advisories for the
// command consumer: a command whose last delivery never came back (its
// worker died) is dead-lettered and failed here. Workers share the
// subscription as a queue group, so one of them handles each advisory.
func (w *Worker) subscribeAdvisories(ctx context.Context) (*nats.Subscription, error) {
	nc := w.js.Conn()
	subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", w.names.CommandStream(), w.names.CommandConsumer())
	sub, err := nc.QueueSubscribe(subject, "groupflow-workers", func(m *nats.Msg) {
		var a advisory
		if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.handleMaxDeliveries(actx, a.StreamSeq); err != nil {
			w.log.WarnContext(actx, "dead-letter after max deliveries; retrying", slog.Uint64("stream_seq", a.StreamSeq), slog.Any("error", err))
			// The advisory comes once, and the consumer will not deliver
			// the message again: keep trying (the ledger or the DLQ may be
			// down), rather than leave the command in the stream unseen.
			go w.retryMaxDeliveries(ctx, a.StreamSeq)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: subscribe to max-deliveries advisories: %w", err)
	}
	return sub, nil
}

// retryMaxDeliveries calls handleMaxDeliveries for seq, backing off up to
// retryDelay's cap, until it succeeds or the worker stops.
func (w *Worker) retryMaxDeliveries(ctx context.Context, seq uint64) {
	for n := uint64(1); ; n++ {
		select {
		case <-ctx.Done():
			w.log.ErrorContext(context.WithoutCancel(ctx), "stopped before dead-lettering a command after its max deliveries; it stays in the command stream", slog.Uint64("stream_seq", seq))
			return
		case <-time.After(retryDelay(n)):
		}
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.handleMaxDeliveries(actx, seq)
		cancel()
		if err == nil {
			return
		}
		w.log.WarnContext(ctx, "dead-letter after max deliveries; retrying", slog.Uint64("stream_seq", seq), slog.Any("error", err))
	}
}

// handleMaxDeliveries dead-letters the command at seq in the command
// stream, unless it is terminal already, then removes it from the stream
// (a work-queue stream keeps a message the consumer gave up on).
func (w *Worker) handleMaxDeliveries(ctx context.Context, seq uint64) error {
	stream, err := w.js.Stream(ctx, w.names.CommandStream())
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cmd, err := events.DecodeCommand(raw.Subject, raw.Data)
	if err != nil {
		return stream.DeleteMsg(ctx, seq) // was rejected on its first delivery
	}
	e, _, err := w.ledger.Get(ctx, cmd.ID)
	switch {
	case errors.Is(err, ErrNotFound):
		// Never claimed (every delivery failed before the ledger): start
		// an entry so the failure is recorded like any other.
		_, e, err = w.ledger.Claim(ctx, ClaimRequest{CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
			Subject: raw.Subject, Command: raw.Data, Lease: time.Nanosecond, Traceparent: headerTraceparent(raw.Header),
			Replay: raw.Header.Get(events.ReplayHeader)})
		if err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if e.State.Terminal() {
		// Finished, but its last delivery may have failed to publish.
		if err := w.publishTerminal(ctx, e, true); err != nil {
			return err
		}
	}
	if !e.State.Terminal() && e.State != StateAwaitingWebhook {
		fi := &events.FailureInfo{Reason: events.ReasonRetriesExhausted, Message: "every allowed delivery failed"}
		if n := len(e.Attempts); n > 0 {
			fi.Code = e.Attempts[n-1].Code
			fi.Message = cmpStr(e.Attempts[n-1].Error, fi.Message)
		}
		if err := w.bury(ctx, e, seq, events.ReasonRetriesExhausted, errors.New(fi.Message), "", fi, deliveries(e)); err != nil {
			return err
		}
	}
	return stream.DeleteMsg(ctx, seq)
}
