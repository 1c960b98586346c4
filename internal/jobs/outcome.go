package jobs

import (
	"errors"
	"fmt"
	"time"

	"github.com/groupflow/groupflow/internal/graph"
)

// A handler's error says what the runner does with the message:
//
//   - Permanent(err): the command fails for good (command.failed, Term);
//   - RetryAfter(d, err): try again after d (NakWithDelay), e.g. throttled;
//   - Transient(err), or any other error: try again soon (NakWithDelay
//     with a backoff growing with the delivery count).
//
// A *graph.Error returned as is is classified by its retry class.
// Retrying ends with the last allowed delivery: the command then goes to
// the dead-letter queue and fails with reason retries_exhausted.

// Permanent marks err as a failure that retrying cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// RetryAfter marks err as worth retrying after d.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, delay: d}
}

// Transient marks err as worth retrying soon.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &transientError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.delay, e.err)
}
func (e *retryAfterError) Unwrap() error { return e.err }

type transientError struct{ err error }

func (e *transientError) Error() string { return "transient: " + e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// outcomeKind is what the runner does with a handler's error.
type outcomeKind int

const (
	kindTransient outcomeKind = iota
	kindRetryAfter
	kindPermanent
)

// classify maps a handler error to what the runner does, and the delay
// asked for (kindRetryAfter).
func classify(err error) (outcomeKind, time.Duration) {
	var pe *permanentError
	var re *retryAfterError
	var te *transientError
	switch {
	case errors.As(err, &pe):
		return kindPermanent, 0
	case errors.As(err, &re):
		return kindRetryAfter, re.delay
	case errors.As(err, &te):
		return kindTransient, 0
	}
	var ge *graph.Error
	switch graph.ClassOf(err) {
	case graph.ClassPermanent, graph.ClassPartial:
		return kindPermanent, 0
	case graph.ClassCredentials:
		// The worker's token, not the command: it waits, as in an outage
		// (for Config.CredentialsWait: the runner fills it in).
		return kindRetryAfter, 0
	case graph.ClassThrottled:
		if errors.As(err, &ge) {
			return kindRetryAfter, ge.RetryAfter
		}
		return kindRetryAfter, 0
	}
	return kindTransient, 0
}

// unseenEffectError is a failure after which a call of the command may
// have taken effect without the next delivery being able to see it: the
// attempt is recorded as ambiguous, as if the call's answer had been lost.
// It is classified as the error it wraps.
type unseenEffectError struct {
	why string
	err error
}

func (e *unseenEffectError) Error() string { return e.why + ": " + e.err.Error() }
func (e *unseenEffectError) Unwrap() error { return e.err }

// unrecorded wraps the failure to save what a call did after it took
// effect.
func unrecorded(err error) error {
	return &unseenEffectError{why: "save a call's outcome", err: err}
}

// afterUnsureTry wraps the last error of a call retried in process after a
// try whose answer was lost: the last error (a throttle, a refused
// connection) says nothing about that try.
func afterUnsureTry(err error) error {
	return &unseenEffectError{why: "after a try that may have taken effect", err: err}
}

// attemptOutcome names err in the attempt history.
func attemptOutcome(err error) string {
	switch k, _ := classify(err); {
	case errors.As(err, new(*panicError)):
		return "panic"
	case errors.As(err, new(*unseenEffectError)):
		return "ambiguous"
	case graph.IsAmbiguous(err) && !errors.As(err, new(readError)):
		return "ambiguous"
	case k == kindPermanent:
		return "permanent"
	case graph.ClassOf(err) == graph.ClassCredentials:
		return "credentials"
	case k == kindRetryAfter:
		return "throttled"
	}
	return "transient"
}

// graphCode returns Graph's error code and subcode in err, if any.
func graphCode(err error) (code, subcode int) {
	var ge *graph.Error
	if errors.As(err, &ge) {
		return ge.Code, ge.Subcode
	}
	return 0, 0
}
