package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Repeat says whether a Graph call may be made again after a transient
// error whose outcome is unknown.
type Repeat bool

const (
	// Safe calls (reads, approvals, removals, settings) are retried in
	// process on any transient error.
	Safe Repeat = true
	// Unsafe calls (create group, reset link, send) are retried in process
	// only when the error proves nothing reached Meta; otherwise the
	// command's intent decides on the next delivery.
	Unsafe Repeat = false
)

// call makes one Graph call for job: it waits for the number's rate limit,
// retries transient errors in process with exponential backoff and jitter
// (only where repeating is safe, and for at most RetryMaxElapsed), and
// turns throttling into RetryAfter after pausing the throttled scope on
// every worker. The worker is never blocked by a throttle.
func (w *Worker) call(ctx context.Context, job *Job, class ratelimit.Class, repeat Repeat, fn func(context.Context) error) error {
	phone := job.Command.PhoneNumberID
	expired := func() bool { return class != ratelimit.Reads && job.pastDeadline() }
	unsure := false // a try's answer was lost: it may have taken effect
	op := func() error {
		if expired() {
			return backoff.Permanent(errExpired) // no token taken for nothing
		}
		if err := w.creds.admit(w.now()); err != nil {
			return backoff.Permanent(err) // no token taken for a call not sent
		}
		if w.limiter != nil {
			job.adm.release() // it queues in Wait now
			if err := w.limiter.Wait(ctx, phone, class); err != nil {
				var te *ratelimit.ThrottledError
				if errors.As(err, &te) {
					return backoff.Permanent(RetryAfter(max(te.Until.Sub(w.now()), 100*time.Millisecond), err))
				}
				return backoff.Permanent(err)
			}
		}
		if expired() {
			// Checked again after the limiter's wait: it, or a retry's
			// backoff, may run past the deadline, and nothing is sent
			// after it.
			return backoff.Permanent(errExpired)
		}
		err := fn(ctx)
		w.creds.observe(ctx, w.now(), err)
		if err == nil {
			return nil
		}
		if graph.IsAmbiguous(err) {
			unsure = true
		}
		if ctx.Err() != nil {
			return backoff.Permanent(err)
		}
		switch graph.ClassOf(err) {
		case graph.ClassThrottled:
			return backoff.Permanent(w.throttled(ctx, phone, err))
		case graph.ClassTransient:
			if repeat == Safe || !graph.IsAmbiguous(err) {
				return err // retried below
			}
		}
		return backoff.Permanent(err)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = 50*time.Millisecond, 500*time.Millisecond, w.cfg.RetryMaxElapsed
	err := backoff.Retry(op, backoff.WithContext(b, ctx))
	if err != nil && graph.ClassOf(err) == graph.ClassTransient && !isOutcome(err) {
		err = Transient(err)
	}
	if err != nil && unsure && !graph.IsAmbiguous(err) && class != ratelimit.Reads {
		err = afterUnsureTry(err)
	}
	if err != nil && class == ratelimit.Reads {
		err = readError{err}
	}
	return err
}

// readError is the error of a read: whatever it says, the read changed
// nothing, so its attempt is not "ambiguous" (attemptOutcome) and does not
// make a later delivery doubt what the command did.
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

func isOutcome(err error) bool {
	var pe *permanentError
	var re *retryAfterError
	var te *transientError
	return errors.As(err, &pe) || errors.As(err, &re) || errors.As(err, &te)
}

// throttled handles a throttling answer: the scope it covers is paused on
// every worker (a recipient's pair limit pauses only this command), and
// the command is retried after Meta's suggested delay.
func (w *Worker) throttled(ctx context.Context, phone string, err error) error {
	var ge *graph.Error
	if !errors.As(err, &ge) {
		return RetryAfter(time.Second, err)
	}
	delay := max(ge.RetryAfter, time.Second)
	until := w.now().Add(delay)
	w.metrics.Throttle(ctx, ge.Code, string(ge.Scope()))
	var scope *ratelimit.Scope
	switch ge.Scope() {
	case graph.ScopeRecipient:
		// 131056: only this recipient; other commands go on.
	case graph.ScopeSpam:
		// 131048 is not retryable in the short term.
		return Permanent(err)
	case graph.ScopeApp:
		s := ratelimit.AppScope()
		scope = &s
	case graph.ScopeAccount:
		if w.limiter != nil {
			s := w.limiter.AccountOf(phone)
			scope = &s
		}
	default:
		s := ratelimit.NumberScope(phone)
		scope = &s
	}
	if scope != nil && w.limiter != nil {
		if perr := w.limiter.Pause(ctx, *scope, until, fmt.Sprint(ge.Code)); perr != nil {
			w.log.WarnContext(ctx, "share throttle", slog.String("phone_number_id", phone), slog.String("scope", scope.String()), slog.Any("error", perr))
		}
	}
	return RetryAfter(delay, err)
}
