package ratelimit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// waitRecord is one Config.OnWait call.
type waitRecord struct {
	class   Class
	outcome string
	waited  time.Duration
}

type waitRecorder struct {
	mu  sync.Mutex
	got []waitRecord
}

func (r *waitRecorder) onWait(_ context.Context, class Class, outcome string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, waitRecord{class, outcome, d})
}

func (r *waitRecorder) last(t *testing.T) waitRecord {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) == 0 {
		t.Fatal("OnWait was not called")
	}
	return r.got[len(r.got)-1]
}

func TestOnWaitReportsEveryOutcomeAndTheTimeBlocked(t *testing.T) {
	t.Parallel()
	rec := &waitRecorder{}
	l, clock := fakeLimiter(t, Config{MaxWait: 2 * time.Second, OnWait: rec.onWait})

	if err := l.Wait(context.Background(), "1", Reads); err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got != (waitRecord{Reads, "acquired", 0}) {
		t.Errorf("free token: OnWait got %+v, want {reads acquired 0s}", got)
	}

	// A pause within MaxWait is sat out: the wait lasts as long as it.
	until := clock.Now().Add(time.Second)
	l.mu.Lock()
	l.raiseLocked(NumberScope("1"), pause{Until: until})
	l.mu.Unlock()
	done := waitAsync(l, "1", GroupOps)
	clock.blockedUntil(t, until)
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := rec.last(t); got != (waitRecord{GroupOps, "acquired", time.Second}) {
		t.Errorf("after a 1s pause: OnWait got %+v, want {group_ops acquired 1s}", got)
	}

	// A pause beyond MaxWait answers at once with a ThrottledError.
	l.mu.Lock()
	l.raiseLocked(NumberScope("1"), pause{Until: clock.Now().Add(time.Hour)})
	l.mu.Unlock()
	if err := l.Wait(context.Background(), "1", Messages); err == nil {
		t.Fatal("Wait during an hour-long pause succeeded")
	}
	if got := rec.last(t); got.outcome != "throttled" || got.class != Messages {
		t.Errorf("long pause: OnWait got %+v, want messages throttled", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Wait(ctx, "2", Messages); err == nil {
		t.Fatal("Wait with a cancelled context succeeded")
	}
	if got := rec.last(t); got.outcome != "cancelled" {
		t.Errorf("cancelled context: OnWait got %+v, want outcome cancelled", got)
	}
}
