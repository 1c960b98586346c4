package jobs

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
)

// Past its deadline a command is not run. It fails as expired, unless an
// earlier delivery's call may have taken effect unseen: then its outcome
// is unknown, since finding out would mean sending again.
func TestExpiryTellsExpiredFromUnknown(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	past := now.Add(-time.Second)
	for name, tc := range map[string]struct {
		typ      string
		attempts []Attempt
		want     string
	}{
		"never attempted":                   {events.ApproveJoinRequests, nil, events.ReasonExpired},
		"an earlier attempt failed cleanly": {events.ApproveJoinRequests, []Attempt{{Outcome: "transient"}}, events.ReasonExpired},
		"an earlier answer was lost":        {events.ApproveJoinRequests, []Attempt{{Outcome: "ambiguous"}}, events.ReasonOutcomeUnknown},
		"shutdown cut an earlier call":      {events.RemoveParticipants, []Attempt{{Outcome: "cancelled"}}, events.ReasonOutcomeUnknown},
		"a read changes nothing":            {events.GetInviteLink, []Attempt{{Outcome: "ambiguous"}}, events.ReasonExpired},
	} {
		t.Run(name, func(t *testing.T) {
			ran := false
			h := Expiry(func() time.Time { return now })(HandlerFunc(func(context.Context, *Job) (Result, error) {
				ran = true
				return Result{}, nil
			}))
			job := &Job{Command: events.Command{ID: "c", Type: tc.typ, Deadline: &past}, Entry: Entry{Attempts: tc.attempts}}
			res, err := h.Handle(context.Background(), job)
			if err != nil || ran {
				t.Fatalf("err %v, handler ran %v: want a result without running", err, ran)
			}
			if res.Outcome != events.OutcomeFailed || res.Failure == nil || res.Failure.Reason != tc.want {
				t.Fatalf("result %+v (failure %+v), want failed with %s", res, res.Failure, tc.want)
			}
		})
	}
}

// A read whose answer was lost changed nothing: its attempt is transient,
// where the same error of a write is ambiguous.
func TestAnAmbiguousReadIsNotAnAmbiguousAttempt(t *testing.T) {
	lost := &graph.Error{HTTPStatus: 503, Class: graph.ClassTransient}
	if !graph.IsAmbiguous(lost) {
		t.Fatal("a 503 is not ambiguous; the test proves nothing")
	}
	if got := attemptOutcome(Transient(lost)); got != "ambiguous" {
		t.Fatalf("a write's 503: attempt %q, want ambiguous", got)
	}
	if got := attemptOutcome(readError{Transient(lost)}); got != "transient" {
		t.Fatalf("a read's 503: attempt %q, want transient", got)
	}
}

// A call that took effect but whose outcome could not be saved looks, to
// the next delivery, like a call whose answer was lost.
func TestAnUnsavedEffectIsAnAmbiguousAttempt(t *testing.T) {
	if got := attemptOutcome(unrecorded(errors.New("kv: timeout"))); got != "ambiguous" {
		t.Errorf("a call whose effect could not be saved is %q in the history, want ambiguous", got)
	}
	job := &Job{Entry: Entry{Attempts: []Attempt{{Outcome: attemptOutcome(unrecorded(errors.New("kv: timeout")))}}}}
	if !hadAmbiguous(job) {
		t.Error("hadAmbiguous is false after an unsaved effect")
	}
	if !hadAmbiguous(&Job{Entry: Entry{Attempts: []Attempt{{Outcome: AttemptAbandoned}}}}) {
		t.Error("hadAmbiguous is false after an abandoned attempt")
	}
}

// A call retried in process after a try whose answer was lost, and ended
// by a throttle, is an ambiguous attempt: the throttle says nothing about
// the lost try.
func TestALostTryIsNotForgottenByTheRetryAfterIt(t *testing.T) {
	throttled := &graph.Error{HTTPStatus: 429, Code: graph.CodeGroupRateLimit, Class: graph.ClassThrottled}
	if got := attemptOutcome(afterUnsureTry(throttled)); got != "ambiguous" {
		t.Errorf("attempt %q, want ambiguous", got)
	}
	if k, _ := classify(afterUnsureTry(throttled)); k != kindRetryAfter {
		t.Errorf("classified %v, want the throttle's retry-after", k)
	}
}

// Trimming a long history keeps the attempt after which a call may have
// taken effect: after 40 refused-token waits, the lost answer before them
// still counts.
func TestTrimmingKeepsTheAttemptThatMayHaveTakenEffect(t *testing.T) {
	a := []Attempt{{Outcome: "transient"}, {Outcome: "ambiguous", Code: 2}}
	for range 40 {
		a = append(a, Attempt{Outcome: "credentials", Code: graph.CodeAccessTokenExpired})
	}
	got := trimAttempts(a)
	if len(got) != maxAttempts {
		t.Fatalf("%d attempts kept, want %d", len(got), maxAttempts)
	}
	if !slices.ContainsFunc(got, mayHaveTakenEffect) {
		t.Fatal("the ambiguous attempt was trimmed away")
	}
	if got[len(got)-1] != a[len(a)-1] {
		t.Error("the newest attempt was not kept")
	}
	plain := make([]Attempt, 40)
	if got := trimAttempts(plain); len(got) != maxAttempts {
		t.Errorf("%d attempts kept of a plain history, want %d", len(got), maxAttempts)
	}
}
