package jobs

import (
	"context"
	"encoding/json"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

// Handler executes one command type. Every handler has this one shape;
// recovery, expiry and timeouts are middleware around it.
type Handler interface {
	Handle(ctx context.Context, job *Job) (Result, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *Job) (Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job *Job) (Result, error) { return f(ctx, job) }

// Middleware wraps a handler with a cross-cutting concern.
type Middleware func(Handler) Handler

// Result is what a handler achieved. The zero Result is a success without
// an answer.
type Result struct {
	// Outcome is events.OutcomeSucceeded (when empty),
	// OutcomePartiallySucceeded or OutcomeFailed.
	Outcome string
	// GroupID is the group the command acted on or created.
	GroupID string
	// Data is the typed answer (events.CreateGroupResult, …), if any.
	Data any
	// Items are per-item outcomes of bulk commands.
	Items []events.ItemOutcome
	// Failure says why, when Outcome is failed.
	Failure *events.FailureInfo
	// Await, when not empty, leaves the command awaiting_webhook until
	// every listed request's webhook arrived (or the sweeper gives up).
	Await []Pending
}

// Job is one delivery of a command to a handler: the command, what the
// ledger knew when the worker claimed it, and the ledger operations a
// handler needs around calls that are not safe to repeat.
type Job struct {
	Command events.Command
	// Entry is the ledger entry as claimed: earlier attempts, an open
	// intent to reconcile, progress of earlier deliveries.
	Entry Entry
	// Delivery is the message's delivery count (1 for the first).
	Delivery uint64

	w     *Worker
	token string
	adm   *admission // released at the first Wait
}

// Reconciling reports whether an earlier delivery recorded an intent whose
// outcome is unknown: the call may or may not have reached Meta.
func (j *Job) Reconciling() bool { return j.Entry.Intent != nil && !j.Entry.Intent.Done }

// RecordIntent records that op, which is not safe to repeat, is about to
// be called. It must succeed before the call is made.
//
// Past the command's deadline it refuses with an error that fails the
// command as expired: a reconciliation that found nothing must not send
// after the deadline either.
func (j *Job) RecordIntent(ctx context.Context, op string) error {
	return j.RecordIntentBefore(ctx, op, "")
}

// RecordIntentBefore is RecordIntent with what the call is to change, as
// read just before it, for a reconciliation to compare (Intent.Before).
func (j *Job) RecordIntentBefore(ctx context.Context, op, before string) error {
	if j.pastDeadline() {
		return errExpired
	}
	if err := j.w.ledger.RecordIntentBefore(ctx, j.Command.ID, j.token, op, before); err != nil {
		return err
	}
	j.Entry.Intent = &Intent{Op: op, At: j.w.now(), Before: before}
	return nil
}

// RecordOutcome records what the call after RecordIntent answered.
func (j *Job) RecordOutcome(ctx context.Context, outcome any) error {
	return j.w.ledger.RecordOutcome(ctx, j.Command.ID, j.token, outcome)
}

// SetProgress keeps handler-specific progress for later deliveries.
func (j *Job) SetProgress(ctx context.Context, progress any) error {
	b, err := json.Marshal(progress)
	if err != nil {
		return err
	}
	if err := j.w.ledger.SetProgress(ctx, j.Command.ID, j.token, json.RawMessage(b)); err != nil {
		return err
	}
	j.Entry.Progress = b
	return nil
}

// Progress decodes the progress kept by an earlier delivery into v and
// reports whether there was any.
func (j *Job) Progress(v any) bool {
	if len(j.Entry.Progress) == 0 {
		return false
	}
	return json.Unmarshal(j.Entry.Progress, v) == nil
}

// AddPending records a request awaiting its webhook at once, so that a
// later delivery neither repeats it nor forgets it.
func (j *Job) AddPending(ctx context.Context, p Pending) error {
	if err := j.w.ledger.AddPending(ctx, j.Command.ID, j.token, p); err != nil {
		return err
	}
	j.Entry.Pending = append(j.Entry.Pending, p)
	return nil
}

// Now is the worker's clock.
func (j *Job) Now() time.Time { return j.w.now() }
