package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

// Expiry fails a command whose deadline has passed, without calling the
// handler: nothing is sent after the deadline. A command that may already
// have reached Meta (an open intent, pending requests) is left to its
// handler, which reconciles rather than sends.
func Expiry(now func() time.Time) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, job *Job) (Result, error) {
			dl := job.Command.Deadline
			if dl != nil && now().After(*dl) && job.Entry.Intent == nil && len(job.Entry.Pending) == 0 {
				return Result{Outcome: events.OutcomeFailed, Failure: &events.FailureInfo{
					Reason: events.ReasonExpired, Message: "deadline " + dl.UTC().Format(time.RFC3339) + " passed before the command ran",
				}}, nil
			}
			return next.Handle(ctx, job)
		})
	}
}

// errExpired fails a command as expired from inside a handler.
var errExpired = Permanent(errors.New("the command's deadline passed before it could be sent"))
