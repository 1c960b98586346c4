package jobs

import (
	"context"
	"time"
)

// Timeout bounds one execution attempt. A Graph call cut short by it is a
// transient failure (retried on a later delivery; a call that is not safe
// to repeat is reconciled through its intent).
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, job *Job) (Result, error) {
			if d <= 0 {
				return next.Handle(ctx, job)
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next.Handle(ctx, job)
		})
	}
}
