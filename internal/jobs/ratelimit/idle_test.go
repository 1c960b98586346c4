package ratelimit

import (
	"testing"
	"time"
)

// A number dropped as idle and used again must not get a token its share
// would not have given: across the gap, the calls of one worker still
// hold at most its share in any window of 1 s + Jitter. The share is
// used flat out until the entry is dropped at the earliest moment
// (Idle at its smallest), then flat out again.
func TestADroppedNumberComesBackWithinItsShare(t *testing.T) {
	t.Parallel()
	for _, budget := range []int{1, 2, 7, 80} {
		l, clock := fakeLimiter(t, Config{Defaults: Limits{Messages: float64(budget)}})
		l.cfg.Idle = 2 * l.cfg.window()
		var calls []time.Time
		var now time.Time
		take := func(n int) *entry {
			t.Helper()
			l.mu.Lock()
			defer l.mu.Unlock()
			now = clock.Now()
			var e *entry
			for start := len(calls); len(calls)-start < n; {
				e = l.entryLocked("1", Messages, now)
				took, next := l.takeLocked(e, now)
				switch {
				case took:
					calls = append(calls, now)
				case next.IsZero():
					t.Fatalf("budget %d: no token will come", budget)
				default:
					now = next
				}
			}
			clock.Advance(now.Sub(clock.Now()))
			return e
		}
		refresh := func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.sweepAt = time.Time{} // look now, not at the next Idle/4
			l.refreshLocked(clock.Now())
		}
		before := take(3*budget + 1)
		l.mu.Lock()
		last := before.counted
		l.mu.Unlock()

		clock.Advance(last.Add(l.cfg.Idle - time.Nanosecond).Sub(clock.Now()))
		refresh()
		if got := l.Tracked(); got != 1 {
			t.Fatalf("budget %d: tracking %d entries just before Idle had passed, want 1", budget, got)
		}
		clock.Advance(time.Nanosecond)
		refresh()
		if got := l.Tracked(); got != 0 {
			t.Fatalf("budget %d: tracking %d entries once Idle had passed, want 0", budget, got)
		}
		if after := take(3*budget + 1); after == before {
			t.Fatalf("budget %d: the entry was not made again", budget)
		}
		window := time.Second + l.cfg.Jitter
		if got, at := maxInWindow(calls, window+time.Nanosecond); got > budget {
			t.Errorf("budget %d: %d calls in the %v window from %v, want at most %d", budget, got, window, at.Sub(calls[0]), budget)
		}
	}
}

// A caller waiting longer than Idle (here, sitting out a pause) keeps its
// number's entry: dropping it would give the next caller a second bucket.
func TestAWaitedOnNumberIsNotDropped(t *testing.T) {
	t.Parallel()
	l, clock := fakeLimiter(t, Config{MaxWait: 20 * time.Minute})
	until := clock.Now().Add(2 * l.cfg.Idle)
	l.mu.Lock()
	l.raiseLocked(NumberScope("1"), pause{Until: until})
	l.mu.Unlock()
	done := waitAsync(l, "1", Messages)
	clock.blockedUntil(t, until)
	l.mu.Lock()
	e := l.entries[entryKey{"1", Messages}]
	l.entryLocked("2", Messages, clock.Now())
	l.mu.Unlock()

	clock.Advance(l.cfg.Idle + time.Second)
	l.mu.Lock()
	l.refreshLocked(clock.Now())
	waited, other := l.entries[entryKey{"1", Messages}], l.entries[entryKey{"2", Messages}]
	l.mu.Unlock()
	if waited != e {
		t.Errorf("the entry of a number with a caller waiting was dropped after Idle")
	}
	if other != nil {
		t.Errorf("the entry of a number nobody used for Idle was kept")
	}
	clock.Advance(until.Sub(clock.Now()))
	if err := <-done; err != nil {
		t.Fatalf("Wait after the pause = %v, want nil", err)
	}
}
