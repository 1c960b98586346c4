package ratelimit

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when told to; its timers fire as it passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0), timers: make(map[*fakeTimer]bool)}
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t.c, func() bool { return false }
	}
	f.timers[t] = true
	return t.c, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		active := f.timers[t]
		delete(f.timers, t)
		return active
	}
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for t := range f.timers {
		if !t.at.After(f.now) {
			t.c <- f.now
			delete(f.timers, t)
		}
	}
}

// blockedUntil waits (real time, bounded) until a caller sleeps on a timer
// that fires at at, and fails the test otherwise.
func (f *fakeClock) blockedUntil(t *testing.T, at time.Time) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		var ats []time.Time
		for tm := range f.timers {
			ats = append(ats, tm.at)
			if tm.at.Equal(at) {
				f.mu.Unlock()
				return
			}
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no caller blocked until %v; timers at %v", at, ats)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeLimiter is a Limiter on a fake clock whose only live worker is
// itself, with its share settled; Run's part is played by the test.
func fakeLimiter(t *testing.T, cfg Config) (*Limiter, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	cfg.Clock = clock
	cfg.WorkerID = "self"
	cfg.Logger = slog.New(slog.DiscardHandler)
	l := newLimiter(cfg.withDefaults())
	now := clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reg.ttl, l.reg.margin = time.Hour, time.Minute
	l.reg.beat(now)
	l.reg.put("self", now)
	l.synced = true
	l.refreshLocked(now)
	clock.Advance(l.cfg.Settle)
	l.refreshLocked(clock.Now())
	return l, clock
}

// waitAsync runs Wait in the background; the channel has its result.
func waitAsync(l *Limiter, phone string, class Class) <-chan error {
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background(), phone, class) }()
	return done
}

func TestWaitSitsOutAPauseWithinMaxWait(t *testing.T) {
	t.Parallel()
	l, clock := fakeLimiter(t, Config{})
	until := clock.Now().Add(time.Second)
	l.mu.Lock()
	l.raiseLocked(NumberScope("1"), pause{Until: until})
	l.mu.Unlock()

	done := waitAsync(l, "1", Messages)
	clock.blockedUntil(t, until)
	clock.Advance(time.Second - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v before the pause ended", err)
	default:
	}
	clock.Advance(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatalf("Wait after the pause ended = %v, want nil", err)
	}
}

func TestWaitBeyondMaxWaitAnswersAtOnce(t *testing.T) {
	t.Parallel()
	l, clock := fakeLimiter(t, Config{MaxWait: 2 * time.Second, WABAOf: func(string) string { return "w1" }})
	for _, tc := range []struct {
		scope Scope
		want  string
	}{
		{NumberScope("1"), "number:1"},
		{AccountScope("w1"), "account:w1"},
		{AccountScope(""), "account"},
		{AppScope(), "app"},
	} {
		until := clock.Now().Add(2*time.Second + time.Millisecond)
		l.mu.Lock()
		l.pauses = map[Scope]pause{tc.scope: {Until: until}}
		l.mu.Unlock()
		var te *ThrottledError
		if err := l.Wait(context.Background(), "1", GroupOps); !errors.As(err, &te) || !te.Until.Equal(until) || te.Scope != tc.want {
			t.Errorf("Wait during a %s pause longer than MaxWait = %v, want ThrottledError{%v, %q}", tc.scope, err, until, tc.want)
		}
	}
	l.mu.Lock()
	l.pauses = map[Scope]pause{AccountScope("w2"): {Until: clock.Now().Add(time.Hour)}}
	l.mu.Unlock()
	if err := l.Wait(context.Background(), "1", GroupOps); err != nil {
		t.Errorf("Wait during another account's pause = %v, want nil", err)
	}
}

func TestWaitPacesCallsOnTheClock(t *testing.T) {
	t.Parallel()
	l, clock := fakeLimiter(t, Config{Defaults: Limits{GroupOps: 10}})
	first := clock.Now()
	if err := l.Wait(context.Background(), "1", GroupOps); err != nil {
		t.Fatalf("first Wait (the saved token) = %v", err)
	}
	// 10 per window of 1.035 s: one token every 103.5 ms. The saved token
	// was there all along: it counts Lateness before the first call.
	interval := seconds(1 / float64(rateFor(10, l.cfg.window())))
	due := first.Add(-l.cfg.Lateness + interval + time.Microsecond)
	done := waitAsync(l, "1", GroupOps)
	clock.blockedUntil(t, due)
	clock.Advance(due.Sub(clock.Now()) - time.Nanosecond)
	select {
	case err := <-done:
		t.Fatalf("second Wait returned %v before its token was due", err)
	default:
	}
	clock.Advance(time.Nanosecond)
	if err := <-done; err != nil {
		t.Fatalf("second Wait = %v, want nil", err)
	}

	t.Run("A smaller share applies to a caller already waiting", func(t *testing.T) {
		done := waitAsync(l, "1", GroupOps)
		clock.blockedUntil(t, clock.Now().Add(interval+time.Microsecond))
		// Nine more workers: the share drops from 10 to 1 call per window.
		l.mu.Lock()
		for _, id := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"} {
			l.reg.put(id, clock.Now())
		}
		l.refreshLocked(clock.Now())
		l.mu.Unlock()
		if got, want := l.Rate("1", GroupOps), float64(rateFor(1, l.cfg.window())); got != want {
			t.Fatalf("Rate after nine workers joined = %v, want %v", got, want)
		}
		clock.blockedUntil(t, clock.Now().Add(seconds(1/float64(rateFor(1, l.cfg.window())))+time.Microsecond))
		clock.Advance(interval + time.Microsecond)
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v at the old rate's time", err)
		default:
		}
		clock.Advance(time.Second)
		if err := <-done; err != nil {
			t.Fatalf("Wait = %v, want nil", err)
		}
	})
}

func TestWaitBeforeRunHasAShare(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := newLimiter(Config{Clock: clock, WorkerID: "self", Logger: slog.New(slog.DiscardHandler)}.withDefaults())

	done := waitAsync(l, "1", Messages)
	clock.blockedUntil(t, clock.Now().Add(l.cfg.MaxWait))
	clock.Advance(l.cfg.MaxWait)
	var te *ThrottledError
	if err := <-done; !errors.As(err, &te) || te.Scope != scopeShare {
		t.Fatalf("Wait while Run never started = %v, want a share ThrottledError after MaxWait", err)
	}

	t.Run("A worker that just joined waits out Settle within MaxWait", func(t *testing.T) {
		l.mu.Lock()
		now := clock.Now()
		l.reg.ttl, l.reg.margin = time.Hour, time.Minute
		l.reg.beat(now)
		l.reg.put("self", now)
		l.synced = true
		l.refreshLocked(now)
		l.mu.Unlock()
		done := waitAsync(l, "1", Messages)
		clock.blockedUntil(t, now.Add(l.cfg.Settle))
		clock.Advance(l.cfg.Settle) // no Run: Wait applies the grown share itself
		// A share that grows from 0 starts with an empty bucket.
		first := clock.Now().Add(seconds(1/float64(rateFor(DefaultMessages, l.cfg.window()))) + time.Microsecond)
		clock.blockedUntil(t, first)
		clock.Advance(first.Sub(clock.Now()))
		if err := <-done; err != nil {
			t.Fatalf("Wait once Settle has passed = %v, want nil", err)
		}
	})

	t.Run("Wait after Run stopped", func(t *testing.T) {
		l.mu.Lock()
		l.closed = true
		l.wakeLocked()
		l.mu.Unlock()
		if err := l.Wait(context.Background(), "1", Messages); !errors.Is(err, ErrClosed) {
			t.Fatalf("Wait = %v, want ErrClosed", err)
		}
	})
}

func TestWaitStopsWhenTheHeartbeatFails(t *testing.T) {
	t.Parallel()
	l, clock := fakeLimiter(t, Config{})
	l.mu.Lock()
	fence := l.reg.fenceAt
	l.mu.Unlock()
	clock.Advance(fence.Sub(clock.Now()))
	var te *ThrottledError
	if err := l.Wait(context.Background(), "1", Messages); !errors.As(err, &te) || te.Scope != scopeShare {
		t.Fatalf("Wait after the last heartbeat could have expired = %v, want a share ThrottledError", err)
	}
	if got := l.Rate("1", Messages); got != 0 {
		t.Errorf("Rate while fenced = %v, want 0", got)
	}
}

func TestAdmitRefusesWhatWaitWouldRefuse(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var refused []string
	l, clock := fakeLimiter(t, Config{Defaults: Limits{GroupOps: 10}, MaxWait: time.Second,
		OnWait: func(_ context.Context, class Class, outcome string, waited time.Duration) {
			if waited == 0 && outcome == "throttled" {
				mu.Lock()
				refused = append(refused, class.String())
				mu.Unlock()
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := l.Admit(ctx, "1", GroupOps); err != nil {
		t.Fatalf("Admit with nobody waiting = %v, want nil", err)
	}
	if err := l.Wait(ctx, "1", GroupOps); err != nil {
		t.Fatalf("Wait for the saved token = %v", err)
	}

	// 10 calls per 1.035 s window, one token every 103.5 ms, the first
	// (Lateness) 10 ms under way: 8 callers queued now are served within
	// 0.83 s, a 9th caller would get its token at 0.92 s, a 10th at 1.02 s.
	const queued = 8
	e := l.entries[entryKey{"1", GroupOps}]
	for range queued {
		go func() { _ = l.Wait(ctx, "1", GroupOps) }()
	}
	for e.waiting.Load() < queued {
		time.Sleep(time.Millisecond)
	}
	if err := l.Admit(ctx, "1", GroupOps); err != nil {
		t.Fatalf("Admit with %d queued = %v, want nil: the %dth token is due within MaxWait", queued, err, queued+1)
	}
	go func() { _ = l.Wait(ctx, "1", GroupOps) }()
	for e.waiting.Load() < queued+1 {
		time.Sleep(time.Millisecond)
	}
	var admitErr, waitErr *ThrottledError
	if err := l.Admit(ctx, "1", GroupOps); !errors.As(err, &admitErr) || admitErr.Scope != scopeShare {
		t.Fatalf("Admit with %d queued = %v, want a share ThrottledError", queued+1, err)
	}
	if err := l.Wait(ctx, "1", GroupOps); !errors.As(err, &waitErr) || !waitErr.Until.Equal(admitErr.Until) {
		t.Fatalf("Wait with %d queued = %v, want the ThrottledError Admit gave (%v)", queued+1, err, admitErr)
	}
	if err := l.Admit(ctx, "2", GroupOps); err != nil {
		t.Errorf("Admit for another number = %v, want nil", err)
	}
	if err := l.Admit(ctx, "1", Messages); err != nil {
		t.Errorf("Admit for another class of the number = %v, want nil", err)
	}

	t.Run("a pause", func(t *testing.T) {
		l.mu.Lock()
		l.pauses = map[Scope]pause{NumberScope("3"): {Until: clock.Now().Add(time.Second + time.Millisecond)}}
		l.mu.Unlock()
		var te *ThrottledError
		if err := l.Admit(ctx, "3", Messages); !errors.As(err, &te) || te.Scope != "number:3" {
			t.Errorf("Admit during a pause longer than MaxWait = %v, want ThrottledError for number:3", err)
		}
		l.mu.Lock()
		l.pauses = map[Scope]pause{NumberScope("3"): {Until: clock.Now().Add(time.Second)}}
		l.mu.Unlock()
		if err := l.Admit(ctx, "3", Messages); err != nil {
			t.Errorf("Admit during a pause that ends within MaxWait = %v, want nil", err)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"group_ops", "group_ops", "messages"}; !slices.Equal(refused, want) {
		t.Errorf("OnWait saw refusals %v, want %v (Admit's and Wait's for group_ops, Admit's for messages)", refused, want)
	}
}
