package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// processCommand runs one delivery of a command: decode, claim, execute or
// answer from the ledger, then ack, nak or term. It reports whether it
// handed the delivery back unprocessed (handBack).
func (w *Worker) processCommand(ctx context.Context, msg jetstream.Msg) bool {
	if w.shuttingDown() {
		_ = msg.Nak() // another worker takes it at once
		return false
	}
	// Decoded first so the span gets the command's id and type with its
	// other attributes, in one call.
	cmd, err := events.DecodeCommand(msg.Subject(), msg.Data())
	ca, n := commandAttrs(cmd)
	ctx, span := telemetry.StartProcess(ctx, w.tracer, msg, ca[:n]...)
	defer span.End()
	msg = telemetry.SettledOnSpan(msg, span)
	md, mdErr := msg.Metadata()
	if mdErr != nil {
		_ = msg.Term()
		return false
	}
	if err != nil {
		w.reject(ctx, msg, md, cmd, err)
		return false
	}
	log := lazyWith(w.log, slog.String("command_id", cmd.ID), slog.String("command_type", cmd.Type),
		slog.String("phone_number_id", cmd.PhoneNumberID), slog.Uint64("delivery", md.NumDelivered))
	req := ClaimRequest{
		CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
		Subject: msg.Subject(), Command: json.RawMessage(msg.Data()),
		// The consumer span's context, not the publisher's: it is in the
		// command's trace either way, and exists even when the publisher
		// sent none, so a completing webhook can always link to it.
		Traceparent: cmp.Or(telemetry.TraceParent(ctx), headerTraceparent(msg.Headers())),
		Replay:      msg.Headers().Get(events.ReplayHeader),
	}
	if w.waitForCredentials(ctx, log, msg, md, cmd) {
		return true
	}
	handled, pause, adm := w.handBack(ctx, log, msg, md, cmd, req)
	if handled {
		return pause
	}
	defer adm.release()
	token := fmt.Sprintf("%s/%d/%d", w.id, md.Sequence.Stream, md.NumDelivered)
	req.Token, req.Lease = token, w.lease()
	status, entry, err := w.ledger.Claim(ctx, req)
	if errors.Is(err, nats.ErrMaxPayload) {
		// The command fits in a message but not with its ledger record:
		// every retry would fail alike, for ever.
		log.WarnContext(ctx, "command too large to record; rejecting it", slog.Int("bytes", len(msg.Data())),
			slog.Int64("max_payload", w.js.Conn().MaxPayload()))
		w.reject(ctx, msg, md, cmd, &events.ValidationError{Errors: []events.FieldError{{Message: fmt.Sprintf(
			"body is %d bytes: with its ledger record that is more than the %d bytes this NATS server takes (max_payload); "+
				"split the command, or raise the server's max_payload (deploy/nats sets 8MB)", len(msg.Data()), w.js.Conn().MaxPayload())}}})
		return false
	}
	if err != nil {
		log.WarnContext(ctx, "claim failed", slog.Any("error", err))
		w.retryLater(ctx, msg, md, cmd.ID)
		return false
	}
	switch status {
	case AlreadyTerminal:
		// A re-sent id: answer with the stored result, call nothing.
		log.InfoContext(ctx, "command already done; re-publishing its result", slog.String("state", string(entry.State)))
		if err := w.publishTerminal(ctx, entry, true); err != nil {
			w.retryLater(ctx, msg, md, cmd.ID)
			return false
		}
		_ = msg.Ack()
	case Awaiting:
		if copyAhead(msg, entry) {
			// A run-again copy that came before the write recording its
			// run (runAgain publishes it first): the command only looks
			// awaiting. Acknowledged, it left the command queued with
			// nothing to run it; back once the write is in.
			log.DebugContext(ctx, "run-again copy came before its run was recorded; handing it back")
			w.retryLater(ctx, msg, md, cmd.ID)
			return false
		}
		// The call was made; its webhook completes the command. Make sure
		// the sweeper's index and the correlations exist (a crash may have
		// come between).
		if err := w.ledger.IndexAwaiting(ctx, entry.CommandID, entry.AwaitUntil); err != nil {
			log.WarnContext(ctx, "index awaiting command", slog.Any("error", err))
			w.retryLater(ctx, msg, md, cmd.ID)
			return false
		}
		if err := w.linkPending(ctx, entry); err != nil {
			log.WarnContext(ctx, "link pending requests", slog.Any("error", err))
			w.retryLater(ctx, msg, md, cmd.ID)
			return false
		}
		_ = msg.Ack()
	case HeldElsewhere:
		// Another delivery is at it: often this message's own earlier one,
		// whose AckWait ran out while it waited in a busy worker. Waiting
		// for it must not use up the deliveries: a nak of the last one
		// made the max-deliveries advisory dead-letter, as
		// retries_exhausted, the command the other one was running.
		w.waitAgain(ctx, msg, md, cmd.ID, max(entry.LeaseUntil.Sub(w.now()), 500*time.Millisecond))
	case Claimed:
		w.execute(ctx, log, msg, md, cmd, entry, token, adm)
	}
	return false
}

// waitForCredentials gives a command that calls Graph back, before any
// ledger work, while Graph refuses the access token and no try of it is
// due: it waits, as in an outage, without a claim and an attempt written
// every CredentialsWait. Near its last delivery it is re-queued as a copy.
func (w *Worker) waitForCredentials(ctx context.Context, log *slog.Logger, msg jetstream.Msg, md *jetstream.MsgMetadata, cmd events.Command) bool {
	if _, calls := admissionClass[cmd.Type]; !calls && cmd.Type != events.EnsureInviteTemplate {
		return false
	}
	if cmd.Deadline != nil && !w.now().Before(*cmd.Deadline) {
		return false // it expires without a call: let it
	}
	if !w.creds.holdBack(w.now()) {
		return false
	}
	if w.maxDeliver > 0 && md.NumDelivered+1 >= uint64(w.maxDeliver) {
		if err := w.requeue(ctx, msg, md, cmd.ID); err != nil {
			return false // claim and execute: the call's refusal hands it back
		}
		_ = msg.Ack()
		return true
	}
	log.DebugContext(ctx, "command waits: Graph refuses the access token", slog.Duration("delay", w.cfg.CredentialsWait))
	_ = msg.NakWithDelay(w.cfg.CredentialsWait)
	return true
}

// admissionClass is the limiter class of each command type's main Graph
// call: the one a backlog of the type waits for.
var admissionClass = map[string]ratelimit.Class{
	events.CreateGroup:         ratelimit.GroupOps,
	events.DeleteGroup:         ratelimit.GroupOps,
	events.UpdateGroupSettings: ratelimit.GroupOps,
	events.GetInviteLink:       ratelimit.Reads,
	events.ResetInviteLink:     ratelimit.GroupOps,
	events.ApproveJoinRequests: ratelimit.GroupOps,
	events.RejectJoinRequests:  ratelimit.GroupOps,
	events.RemoveParticipants:  ratelimit.GroupOps,
	events.SendGroupInvite:     ratelimit.Messages,
}

// handBack gives the delivery back, before any ledger work, when the
// limiter says the command's main call could not be made within its wait
// bound (this worker's share of the number is busy for longer, or the
// number is paused). A command the share can take soon is naked until its
// turn, for any worker to take. One of a deep backlog is parked: see park.
// Near its last delivery it is re-queued as a copy, as in execute. handled
// reports that the delivery was given back; pause, that the slot should
// slow down before it pulls again (a nak comes back; a parked command does
// not until its time). req is the command's claim, without token and lease.
func (w *Worker) handBack(ctx context.Context, log *slog.Logger, msg jetstream.Msg, md *jetstream.MsgMetadata, cmd events.Command, req ClaimRequest) (handled, pause bool, adm *admission) {
	class, ok := admissionClass[cmd.Type]
	if !ok || w.limiter == nil {
		return false, false, nil
	}
	// Counted before asking, so slots admitting at once queue behind
	// each other.
	adm, ahead := w.parkings.admit(cmd.PhoneNumberID, class)
	var te *ratelimit.ThrottledError
	if err := w.limiter.AdmitBehind(ctx, cmd.PhoneNumberID, class, ahead); !errors.As(err, &te) {
		return false, false, adm
	}
	adm.release()
	now := w.now()
	until := te.Until
	if w.parkAfter > 0 {
		// Every command handed back takes a return time, so a backlog
		// comes back spread at the pace the number can take.
		until = w.parkings.book(cmd.PhoneNumberID, class, now, te.Until, w.limiter.Limit(cmd.PhoneNumberID, class))
		if until.Sub(now) > w.parkAfter || md.NumDelivered > 1 {
			err := w.park(ctx, log, msg, md, cmd, req, until)
			if err == nil {
				log.DebugContext(ctx, "command parked until its turn", slog.Time("until", until), slog.String("scope", te.Scope))
				_ = msg.Ack()
				return true, false, nil
			}
			log.WarnContext(ctx, "park a waiting command", slog.Any("error", err))
		}
	}
	if w.maxDeliver > 0 && md.NumDelivered+1 >= uint64(w.maxDeliver) {
		if err := w.requeue(ctx, msg, md, cmd.ID); err == nil {
			_ = msg.Ack()
			return true, true, nil
		}
		// Claim and execute: the handler's own wait hands it back, with
		// the dead-letter path should every delivery be used up.
		return false, false, nil
	}
	delay := max(until.Sub(now), 100*time.Millisecond)
	log.DebugContext(ctx, "command handed back until its turn", slog.Duration("delay", delay), slog.String("scope", te.Scope))
	_ = msg.NakWithDelay(delay)
	return true, true, nil
}

// park replaces msg with a copy scheduled for at (Names.Parked, in the
// parked stream; see parkSubjects): until then it is held by that stream,
// not by the consumer, and then the command stream sources it back. A nak
// with a delay
// keeps the message among the consumer's unacknowledged ones, so a deep
// backlog of one number naked that way filled MaxAckPending and stopped the
// consumer from delivering anything else: every other number's commands
// waited behind it for minutes. The schedule's message id names the parked
// delivery, so parking it twice (a crash before the ack) stores one copy;
// the ledger executes the command id at most once whichever copy comes
// first.
//
// The first time a command is parked, the ledger gets a queued entry for
// it (Ledger.Queue), so its status reads "queued" rather than unknown
// while it waits; its copies carry inLedgerHeader so that parking them
// again costs no ledger round trip. The entry is a convenience: without
// it the command runs the same, so a failed write only logs.
func (w *Worker) park(ctx context.Context, log *slog.Logger, msg jetstream.Msg, md *jetstream.MsgMetadata, cmd events.Command, req ClaimRequest, at time.Time) error {
	subject, target := w.parkSubjects(cmd.PhoneNumberID, cmd.Type, md.Sequence.Stream)
	m := copyOf(msg, subject)
	if m.Header.Get(inLedgerHeader) == "" {
		if err := w.ledger.Queue(ctx, req); err != nil {
			log.WarnContext(ctx, "record a parked command as queued", slog.Any("error", err))
		} else {
			m.Header.Set(inLedgerHeader, "1")
		}
	}
	scheduleAt(m, at, target)
	_, err := w.publishMsg(ctx, m, events.CopyMsgID(cmd.ID, "park", strconv.FormatUint(md.Sequence.Stream, 10)))
	return err
}

// scheduleAt makes m (on a parked subject) a message its stream
// publishes to target at at, not before (see parkSubjects).
//
// The exact time, fraction of a second included: the server keeps it
// (since schedules came in 2.12 it parses @at as Go's RFC 3339, which
// takes fractions, and stores the time in nanoseconds) and releases due
// copies at most every 250 ms, so a backlog comes back in small batches
// at its booked pace. Whole seconds brought a second's copies back at
// once, more than a worker admits (MaxQueue): the rest were parked again,
// and a number was served at MaxQueue per second.
func scheduleAt(m *nats.Msg, at time.Time, target string) {
	m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", target)
}

func (w *Worker) execute(ctx context.Context, log *slog.Logger, msg jetstream.Msg, md *jetstream.MsgMetadata, cmd events.Command, entry Entry, token string, adm *admission) {
	job := &Job{Command: cmd, Entry: entry, Delivery: md.NumDelivered, w: w, token: token, adm: adm}
	stop := w.heartbeat(ctx, msg, cmd.ID, token)
	res, herr := w.handler.Handle(ctx, job)
	stop()

	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	at := Attempt{At: w.now(), Worker: w.id, Delivery: md.NumDelivered}
	if herr == nil {
		if len(res.Await) > 0 {
			w.await(cctx, log, msg, job, res, at)
			return
		}
		at.Outcome = cmp.Or(res.Outcome, events.OutcomeSucceeded)
		w.finishClaimed(cctx, log, msg, job, res, at)
		return
	}

	telemetry.RecordError(trace.SpanFromContext(ctx), herr)
	at.Outcome, at.Error = attemptOutcome(herr), truncate(herr.Error(), 500)
	at.Code, _ = graphCode(herr)
	var pe *panicError
	switch {
	case ctx.Err() != nil:
		// Shutting down and out of time: give the command back.
		at.Outcome = "cancelled"
		log.InfoContext(cctx, "shutdown interrupted the command; returning it", slog.Any("error", herr))
		_ = w.ledger.Release(cctx, cmd.ID, token, at)
		_ = msg.Nak()
		return
	case errors.As(herr, &pe):
		// A bug, not the command: keep it for a replay once fixed.
		log.ErrorContext(cctx, "handler panicked", slog.Any("panic", pe.value), slog.String("stack", pe.stack))
		w.deadLetter(cctx, log, msg, md, job, at, herr, events.ReasonPermanentError)
		return
	}
	kind, delay := classify(herr)
	if graph.ClassOf(herr) == graph.ClassCredentials {
		delay = w.cfg.CredentialsWait // the next try of the token
	}
	if kind == kindPermanent {
		log.InfoContext(cctx, "command failed", slog.Any("error", herr))
		reason := events.ReasonPermanentError
		switch {
		case errors.Is(herr, errExpired):
			reason = events.ReasonExpired
		case errors.Is(herr, errExpiredUnknown):
			reason = events.ReasonOutcomeUnknown
		}
		fi := failure(reason, herr)
		var ne *NotOwnedError
		if errors.As(herr, &ne) {
			fi.Reason, fi.Message = events.ReasonGroupNotOwned, ne.Error()
		}
		var ae *AccountNotOwnedError
		if errors.As(herr, &ae) {
			fi.Reason, fi.Message = events.ReasonAccountNotOwned, ae.Error()
		}
		w.finishClaimed(cctx, log, msg, job, Result{Outcome: events.OutcomeFailed, Failure: fi}, at)
		return
	}
	if kind == kindRetryAfter && w.maxDeliver > 0 && md.NumDelivered+1 >= uint64(w.maxDeliver) {
		// Waiting for the number's rate limit, or for a throttle to end,
		// is not a failed attempt: a copy with a fresh delivery count
		// takes the message's place, so a deep backlog or a long pause
		// delays the command but never exhausts its deliveries. One
		// delivery before the last, so a failed re-queue still has one.
		//
		// The claim is released first: the copy can reach a worker before
		// a release made after its publish, and would then find the
		// command held and wait out a whole lease (AckWait) for nothing.
		err := w.ledger.Release(cctx, cmd.ID, token, at)
		if err == nil {
			err = w.requeue(cctx, msg, md, cmd.ID)
		}
		if err == nil {
			log.InfoContext(cctx, "command re-queued to wait on", slog.Uint64("delivery", md.NumDelivered), slog.Any("error", herr))
			_ = msg.Ack()
			return
		}
		log.WarnContext(cctx, "re-queue a waiting command", slog.Any("error", err))
	}
	if w.maxDeliver > 0 && md.NumDelivered >= uint64(w.maxDeliver) {
		log.WarnContext(cctx, "last delivery failed; dead-lettering", slog.Any("error", herr))
		w.deadLetter(cctx, log, msg, md, job, at, herr, events.ReasonRetriesExhausted)
		return
	}
	if kind == kindTransient {
		delay = w.cfg.NakDelay(md.NumDelivered)
	}
	delay = max(delay, 100*time.Millisecond)
	log.InfoContext(cctx, "command will be retried", slog.String("outcome", at.Outcome), slog.Duration("delay", delay), slog.Any("error", herr))
	if err := w.ledger.Release(cctx, cmd.ID, token, at); err != nil {
		log.WarnContext(cctx, "release claim", slog.Any("error", err))
	}
	_ = msg.NakWithDelay(delay)
}

// requeue publishes a copy of msg (copyOf) to its subject, to be delivered afresh.
// Its message id names the copied stream message, so re-queueing the same
// delivery twice (a crash before the ack) stores one copy; the ledger
// executes the command id at most once whichever copy comes first. The
// copy names the delivery that made it (RequeuedByHeader).
func (w *Worker) requeue(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, commandID string) error {
	m := copyOf(msg, msg.Subject())
	m.Header.Set(RequeuedByHeader, fmt.Sprintf("%d/%d", md.Sequence.Stream, md.NumDelivered))
	_, err := w.publishMsg(ctx, m, events.CopyMsgID(commandID, "requeue", strconv.FormatUint(md.Sequence.Stream, 10)))
	return err
}

// RequeuedByHeader on a re-queued copy of a command names the delivery
// that made it: "<stream sequence>/<delivery>", as that delivery's claim
// token ends. Its message id names only the message copied, and two
// deliveries of one message can be under way at once: one whose AckWait
// ran out while it waited in a busy worker goes on after the server
// delivered the message again. The later one may re-queue the command
// while the earlier one holds its claim; the one holding the claim
// releases it before it re-queues.
const RequeuedByHeader = "Groupflow-Requeued-By"

// retryLater hands back a command that NATS failed before it was claimed
// (the ledger, or the event stream for a stored result, unavailable): with
// a back-off, and one delivery before its last as a fresh copy, as a
// command waiting for its rate limit is. An outage then delays commands
// without using up their deliveries; used up, they went to the DLQ, or -
// when the ledger the dead-letter path needs was down too - nowhere.
func (w *Worker) retryLater(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, commandID string) {
	w.waitAgain(ctx, msg, md, commandID, retryDelay(md.NumDelivered))
}

// waitAgain hands back a command that is to be tried again after delay,
// before its claim: with a nak, or one delivery before its last as a
// re-queued copy, so that waiting never uses up its deliveries.
func (w *Worker) waitAgain(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, commandID string, delay time.Duration) {
	if w.maxDeliver > 0 && md.NumDelivered+1 >= uint64(w.maxDeliver) {
		if err := w.requeue(ctx, msg, md, commandID); err == nil {
			_ = msg.Ack()
			return
		}
	}
	_ = msg.NakWithDelay(delay)
}

// retryDelay is the back-off before delivery n+1 after an infrastructure
// failure of delivery n: a second for the first steadyRetries (a stream
// leader's loss and election is over by then, and work resumes at once),
// then doubling from 2 s to maxRetryDelay. A command is re-queued before
// it gets that far (retryLater); a webhook item, which has no delivery
// limit, backs off in a long outage. Backing off sooner kept commands
// waiting long after a 5 s leader loss: make chaos's cluster scenario took
// 34-45 s doubling from the first failure and 34-43 s after three steady
// retries, against 29 s with eight.
func retryDelay(n uint64) time.Duration {
	if n <= steadyRetries {
		return time.Second
	}
	return min(time.Second<<min(n-steadyRetries, 4), maxRetryDelay)
}

const (
	steadyRetries = 8
	maxRetryDelay = 10 * time.Second
)

// inLedgerHeader on a command's copy says that the ledger has an entry
// for its id (see park).
const inLedgerHeader = "Groupflow-In-Ledger"

// runAgainHeader on a command's copy made to run it again after its
// webhook reported a transient error (runAgain) says which run it is: 1
// for the first run again.
const runAgainHeader = "Groupflow-Run-Again"

// copyAhead reports whether msg is a copy made to run e's command again
// whose run e does not record yet.
func copyAhead(msg jetstream.Msg, e Entry) bool {
	h := msg.Headers()
	run, err := strconv.Atoi(h.Get(runAgainHeader))
	return err == nil && h.Get(events.ReplayHeader) == e.Replay && run > webhookRetries(e)
}

// copyOf is msg's body and own headers (trace context, events.ReplayHeader)
// for subject. The server's headers stay behind: the message id, and the
// Nats-Scheduler and Nats-Schedule-Next a parked copy arrives with, which
// the server refuses on a client's publish.
func copyOf(msg jetstream.Msg, subject string) *nats.Msg {
	m := &nats.Msg{Subject: subject, Data: msg.Data(), Header: nats.Header{}}
	for k, v := range msg.Headers() {
		if !strings.HasPrefix(strings.ToLower(k), "nats-") {
			m.Header[k] = v
		}
	}
	return m
}

// finishClaimed makes a claimed command terminal with res, publishes the
// terminal event and acks (a failure: terms) the message.
func (w *Worker) finishClaimed(ctx context.Context, log *slog.Logger, msg jetstream.Msg, job *Job, res Result, at Attempt) {
	// The attempts recorded count too: a re-queued copy's deliveries start
	// again at one.
	r := w.commandResult(job.Command, res, max(deliveryCount(job.Delivery), len(job.Entry.Attempts)+1))
	r.Replay = job.Entry.Replay
	t, err := w.terminal(r)
	if err != nil {
		log.ErrorContext(ctx, "build terminal event", slog.Any("error", err))
		_ = w.ledger.Release(ctx, job.Command.ID, job.token, at)
		_ = msg.NakWithDelay(w.cfg.NakDelay(job.Delivery))
		return
	}
	// Marked published up front: should the publish below fail, this
	// message is redelivered and re-publishes the stored result anyway.
	// That saves the ledger write that would otherwise follow the publish.
	t.Published = true
	entry, err := w.ledger.Finish(ctx, job.Command.ID, job.token, stateOf(r.Outcome), t, &at, nil)
	switch {
	case errors.Is(err, ErrTerminal):
		// Finished by someone else meanwhile: theirs is the one result.
	case errors.Is(err, ErrNotOwner):
		// Our claim expired and another worker owns the command now.
		_ = msg.NakWithDelay(w.lease())
		return
	case err != nil:
		log.WarnContext(ctx, "record result", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := w.publishTerminal(ctx, entry, true); err != nil {
		log.WarnContext(ctx, "publish result", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second) // the redelivery re-publishes it
		return
	}
	// A line per command at info would be a line per message under load:
	// a success is the event and the metrics; a failure is worth a line.
	log.Log(ctx, outcomeLevel(r.Outcome), "command finished", slog.String("outcome", r.Outcome))
	w.metrics.CommandDone(ctx, r.CommandType, r.Outcome, w.now().Sub(entry.CreatedAt))
	if r.Outcome == events.OutcomeFailed {
		_ = msg.Term()
		return
	}
	_ = msg.Ack()
}

// await leaves a command awaiting its webhooks and links their request
// ids, applying any webhook that arrived first.
func (w *Worker) await(ctx context.Context, log *slog.Logger, msg jetstream.Msg, job *Job, res Result, at Attempt) {
	at.Outcome = string(StateAwaitingWebhook)
	entry, err := w.ledger.Await(ctx, job.Command.ID, job.token, res.Await, w.now().Add(w.cfg.WebhookTimeout), at)
	switch {
	case errors.Is(err, ErrTerminal):
		_ = msg.Ack()
		return
	case errors.Is(err, ErrNotOwner):
		_ = msg.NakWithDelay(w.lease())
		return
	case err != nil:
		// The request ids are lost with this write only if the ledger is
		// down; the redelivery reconciles through the intent.
		log.WarnContext(ctx, "record awaiting", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := w.linkPending(ctx, entry); err != nil {
		log.WarnContext(ctx, "link pending requests", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second) // the redelivery links again
		return
	}
	log.DebugContext(ctx, "command awaits its webhook", slog.Int("requests", len(entry.Pending)))
	_ = msg.Ack()
}

// outcomeLevel is the level of the line saying a command ended with
// outcome (a result's outcome or a ledger state): debug for a success,
// info for anything that failed, in part or whole.
func outcomeLevel(outcome string) slog.Level {
	if outcome == events.OutcomeSucceeded {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// deliveryCount is a JetStream delivery count as an int. MaxDeliver keeps
// real counts small; one past math.MaxInt saturates rather than wraps.
func deliveryCount(n uint64) int {
	if n > math.MaxInt {
		return math.MaxInt
	}
	return int(n)
}

// commandResult builds the terminal result data of cmd.
func (w *Worker) commandResult(cmd events.Command, res Result, attempts int) events.CommandResult {
	r := events.CommandResult{
		CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
		GroupID: cmp.Or(res.GroupID, cmd.GroupID), Outcome: cmp.Or(res.Outcome, events.OutcomeSucceeded),
		Attempts: max(attempts, 1),
	}
	r.SetItems(res.Items) // bounded: see events.MaxItems
	if res.Data != nil && r.Outcome != events.OutcomeFailed {
		r.Result, _ = json.Marshal(res.Data)
	}
	if r.Outcome == events.OutcomeFailed {
		r.Error = cmp.Or(res.Failure, &events.FailureInfo{Reason: events.ReasonPermanentError})
	}
	return r
}

// terminal encodes r as the command's one terminal event.
func (w *Worker) terminal(r events.CommandResult) (Terminal, error) {
	ev, err := events.NewTerminalEvent(events.SourceWorker, r)
	if err != nil {
		return Terminal{}, err
	}
	b, err := events.Marshal(ev)
	if err != nil {
		return Terminal{}, err
	}
	return Terminal{
		Type: r.EventType(), Subject: w.names.Event(r.PhoneNumberID, r.EventType()),
		MsgID: events.TerminalEventID(r.CommandID, r.Replay), Event: b,
	}, nil
}

// publishTerminal publishes the stored terminal event of e with its
// deterministic Nats-Msg-Id. Unless always is set, an event already
// acknowledged is not published again.
func (w *Worker) publishTerminal(ctx context.Context, e Entry, always bool) error {
	t := e.Result
	if t == nil || (t.Published && !always) {
		return nil
	}
	// Before the event: its receiver may read at once. A re-publish
	// invalidates again, since whether the first one did is not recorded.
	if err := w.invalidateTerminal(ctx, e, t); err != nil {
		return fmt.Errorf("publish %s of %s: %w", t.Type, e.CommandID, err)
	}
	m := &nats.Msg{Subject: t.Subject, Data: t.Event}
	ack, err := w.publishMsg(traceCtx(ctx, e.Traceparent), m, t.MsgID)
	if err != nil {
		return fmt.Errorf("publish %s of %s: %w", t.Type, e.CommandID, err)
	}
	if e.Replay != "" {
		// A replayed campaign invite: its campaign counts it again.
		var ev struct {
			Data events.CommandResult `json:"data"`
		}
		if err := json.Unmarshal(t.Event, &ev); err == nil {
			if err := w.campaigns.replayed(ctx, ev.Data, ack.Sequence); err != nil {
				return fmt.Errorf("count replayed %s in its campaign: %w", e.CommandID, err)
			}
		}
	}
	if !t.Published {
		if err := w.ledger.MarkPublished(ctx, e.CommandID); err != nil {
			w.log.WarnContext(ctx, "mark result published", slog.String("command_id", e.CommandID), slog.Any("error", err))
		}
	}
	return nil
}

// reject answers an invalid command with command.rejected. It is never
// retried. A valid id goes through the ledger, so a re-sent invalid command
// re-publishes the same rejection.
func (w *Worker) reject(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, cmd events.Command, cause error) {
	var ve *events.ValidationError
	var fields []events.FieldError
	if errors.As(cause, &ve) {
		fields = ve.Errors
	}
	if len(fields) == 0 {
		fields = []events.FieldError{{Message: cause.Error()}}
	}
	phone := cmd.PhoneNumberID
	if !events.ValidToken(phone) {
		phone, _, _ = events.ParseCommandSubject(w.names, msg.Subject())
	}
	if !events.ValidToken(phone) {
		phone = "unknown"
	}
	r := events.CommandResult{
		CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
		Outcome: events.OutcomeRejected, Attempts: max(deliveryCount(md.NumDelivered), 1), ValidationErrors: fields,
	}
	log := w.log.With(slog.String("command_id", cmd.ID), slog.Uint64("stream_seq", md.Sequence.Stream))
	log.InfoContext(ctx, "command rejected", slog.Any("error", cause))
	// The type is the publisher's text, valid or not: as a label, each
	// made-up one would be a new series (and a histogram) for good.
	typ := cmd.Type
	if !events.IsCommandType(typ) {
		typ = "unknown"
	}
	w.metrics.CommandDone(ctx, typ, events.OutcomeRejected, 0)

	id := cmd.ID
	if !validCommandID(id) {
		// No usable idempotency key: the stream position stands in for it.
		id = fmt.Sprintf("invalid-%d", md.Sequence.Stream)
	}
	ev, err := events.NewEvent(events.EventCommandRejected, events.TerminalEventID(id, ""), events.SourceWorker, phone, r)
	if err == nil {
		var b []byte
		if b, err = events.Marshal(ev); err == nil {
			t := Terminal{Type: events.EventCommandRejected, Subject: w.names.Event(phone, events.EventCommandRejected),
				MsgID: events.TerminalEventID(id, ""), Event: b}
			e := Entry{CommandID: id, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
				Subject: msg.Subject(), Command: json.RawMessage(msg.Data()), State: StateRejected, Result: &t,
				Traceparent: cmp.Or(telemetry.TraceParent(ctx), headerTraceparent(msg.Headers()))}
			if validCommandID(cmd.ID) {
				stored := e
				e, err = w.ledger.FinishNew(ctx, stored)
				if errors.Is(err, nats.ErrMaxPayload) {
					// The command and its rejection are more than NATS
					// takes in one record: keep the rejection, so that the
					// id is answered, once, without the body.
					stored.Command = nil
					e, err = w.ledger.FinishNew(ctx, stored)
				}
				switch {
				case errors.Is(err, ErrExists):
					// The id belongs to a valid command in progress; its
					// result is the one terminal event for the id.
					log.WarnContext(ctx, "invalid command reuses the id of a running command; dropped")
					_ = msg.Term()
					return
				case errors.Is(err, ErrTerminal):
					err = nil
				}
			}
			if err == nil {
				err = w.publishTerminal(ctx, e, true)
			}
		}
	}
	if err != nil {
		log.WarnContext(ctx, "publish rejection", slog.Any("error", err))
		_ = msg.NakWithDelay(time.Second)
		return
	}
	_ = msg.Term()
}

// failure describes err as a FailureInfo with reason: Graph's code,
// subcode and type when Graph gave the error, and its account as the
// message.
func failure(reason string, err error) *events.FailureInfo {
	fi := &events.FailureInfo{Reason: reason}
	if err != nil {
		var ge *graph.Error
		if errors.As(err, &ge) {
			fi.Code, fi.Subcode, fi.Type = ge.Code, ge.Subcode, ge.Type
		}
		fi.Message = truncate(err.Error(), 500)
	}
	return fi
}

func stateOf(outcome string) State {
	switch outcome {
	case events.OutcomePartiallySucceeded:
		return StatePartiallySucceeded
	case events.OutcomeFailed:
		return StateFailed
	case events.OutcomeRejected:
		return StateRejected
	}
	return StateSucceeded
}

func validCommandID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes and an ellipsis, at a character
// boundary: Meta's messages are not all ASCII.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
