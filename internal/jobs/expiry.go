package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Expiry fails a command whose deadline has passed, without calling the
// handler: nothing is sent after the deadline. A command that may already
// have reached Meta (an open intent, pending requests) is left to its
// handler, which reconciles and completes what was sent but sends nothing
// more (Worker.call refuses past the deadline). A command whose earlier
// attempt may have taken effect unseen (its answer was lost) fails as
// outcome_unknown rather than expired: repeating the call to find out is
// exactly what the deadline forbids.
func Expiry(now func() time.Time) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, job *Job) (Result, error) {
			dl := job.Command.Deadline
			if dl == nil || !now().After(*dl) || job.Entry.Intent != nil || len(job.Entry.Pending) > 0 {
				return next.Handle(ctx, job)
			}
			if class, ok := admissionClass[job.Command.Type]; (!ok || class != ratelimit.Reads) && hadAmbiguous(job) {
				return Result{Outcome: events.OutcomeFailed, Failure: failure(events.ReasonOutcomeUnknown, errExpiredUnknown)}, nil
			}
			return Result{Outcome: events.OutcomeFailed, Failure: &events.FailureInfo{
				Reason: events.ReasonExpired, Message: "deadline " + dl.UTC().Format(time.RFC3339) + " passed before the command ran",
			}}, nil
		})
	}
}

// errExpired fails a command as expired from inside a handler.
var errExpired = Permanent(errors.New("the command's deadline passed before it could be sent"))

// errExpiredUnknown fails a command as outcome_unknown: its deadline
// passed while an earlier call's effect was still unconfirmed.
var errExpiredUnknown = Permanent(errors.New("the deadline passed before an earlier call, whose answer was lost, could be confirmed; it may have taken effect"))

// expiredItem reports an item of a command that was not sent because the
// command's deadline passed first.
func expiredItem(id string) events.ItemOutcome {
	return events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Reason: events.ReasonExpired + ": the command's deadline passed before this item was sent"}
}

// pastDeadline reports whether the command's deadline has passed.
func (j *Job) pastDeadline() bool {
	dl := j.Command.Deadline
	return dl != nil && j.w.now().After(*dl)
}
