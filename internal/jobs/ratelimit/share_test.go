package ratelimit

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// maxInWindow is the largest number of times in any half-open window
// [t, t+width): the count Meta's sliding window would see.
func maxInWindow(times []time.Time, width time.Duration) (most int, at time.Time) {
	ts := slices.Clone(times)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Before(ts[i].Add(width)) {
			j++
		}
		if j-i > most {
			most, at = j-i, ts[i]
		}
	}
	return most, at
}

func TestSharesAddUpToTheWindowBudget(t *testing.T) {
	t.Parallel()
	for _, limit := range []float64{1, 2, 7, 10, 10.5, 50, 80, 1000} {
		for n := 1; n <= 12; n++ {
			members := make([]string, n)
			for i := range members {
				members[i] = fmt.Sprintf("w%02d", i)
			}
			for _, phone := range []string{"1555000001", "1555000002", "1555000003"} {
				total := windowBudget(limit)
				rot := rotation(phone, Messages)
				sum := 0
				for _, self := range members {
					c := snapshot{members: members, self: true}.target(self, total, rot)
					if c != total/n && c != total/n+1 {
						t.Errorf("limit %v, %d workers: share %d, want %d or %d", limit, n, c, total/n, total/n+1)
					}
					sum += c
				}
				if sum != total {
					t.Errorf("limit %v, %d workers, phone %s: shares add up to %d, want the window budget %d", limit, n, phone, sum, total)
				}
			}
		}
	}
}

// takeAll drives one worker's bucket on a virtual timeline: the caller asks
// for a token, and when told to wait it comes back lateBy(i) after the
// token was due (a timer firing late on a busy machine). It returns the
// times of n calls.
func takeAll(t *testing.T, budget, n int, lateBy func(i int) time.Duration) (*Limiter, []time.Time) {
	t.Helper()
	l, clock := fakeLimiter(t, Config{Defaults: Limits{Messages: float64(budget)}})
	now := clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked("1", Messages, now)
	if e.budget != budget {
		t.Fatalf("share %d, want the whole budget %d", e.budget, budget)
	}
	var calls []time.Time
	for i := 0; len(calls) < n; i++ {
		took, next := l.takeLocked(e, now)
		switch {
		case took:
			calls = append(calls, now)
		case next.IsZero():
			t.Fatalf("budget %d: no token will come", budget)
		default:
			now = next.Add(lateBy(i))
		}
	}
	return l, calls
}

// Whatever the lateness of the wake-ups, the calls of one share never
// exceed its budget in a window of 1 s + Jitter (a sliding second at Meta
// when the calls' travel times differ by up to Jitter).
func TestLateWakeUpsNeverExceedTheShareInAWindow(t *testing.T) {
	t.Parallel()
	for budget := range 1100 {
		if budget == 0 || (budget > 120 && budget%37 != 0) {
			continue // every small budget, a spread of large ones
		}
		rng := rand.New(rand.NewPCG(uint64(budget), 7))
		for _, tc := range []struct {
			name   string
			lateBy func(i int) time.Duration
		}{
			{"on time", func(int) time.Duration { return 0 }},
			{"always Lateness late", func(int) time.Duration { return 10 * time.Millisecond }},
			{"up to three times Lateness late", func(int) time.Duration { return time.Duration(rng.Int64N(int64(30 * time.Millisecond))) }},
			{"now and then very late", func(i int) time.Duration {
				if i%7 == 0 {
					return time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
				}
				return time.Duration(rng.Int64N(int64(2 * time.Millisecond)))
			}},
		} {
			l, calls := takeAll(t, budget, 3*budget+2, tc.lateBy)
			if l.cfg.Lateness != 10*time.Millisecond {
				t.Fatalf("default lateness %v, the cases assume 10ms", l.cfg.Lateness)
			}
			window := time.Second + l.cfg.Jitter
			// Closed window: a call exactly 1 s + Jitter after another counts.
			if got, at := maxInWindow(calls, window+time.Nanosecond); got > budget {
				t.Errorf("budget %d, wake-ups %s: %d calls in the %v window from %v, want at most %d",
					budget, tc.name, got, window, at.Sub(calls[0]), budget)
			}
		}
	}
}

// A wake-up up to Lateness late costs nothing: the calls keep the share's
// pace as if every timer had fired on time.
func TestLateWakeUpsWithinLatenessLoseNoCapacity(t *testing.T) {
	t.Parallel()
	for _, budget := range []int{1, 7, 27, 75, 250, 1000} {
		rng := rand.New(rand.NewPCG(uint64(budget), 9))
		const n = 400
		l, onTime := takeAll(t, budget, n, func(int) time.Duration { return 0 })
		_, late := takeAll(t, budget, n, func(int) time.Duration { return time.Duration(rng.Int64N(int64(l.cfg.Lateness) + 1)) })
		// The last call may itself be up to Lateness late.
		if got, limit := late[n-1].Sub(late[0]), onTime[n-1].Sub(onTime[0])+l.cfg.Lateness; got > limit {
			t.Errorf("budget %d: %d calls woken up to %v late took %v, want at most %v (on time, plus one lateness)",
				budget, n, l.cfg.Lateness, got, limit)
		}
	}
}

func TestUtilisationAtLeast95PercentOfIntegerLimits(t *testing.T) {
	t.Parallel()
	cfg := Config{}.withDefaults()
	for _, limit := range []int{1, 5, 10, 20, 50, 80, 1000} {
		for n := 1; n <= 10; n++ {
			members := make([]string, n)
			for i := range members {
				members[i] = fmt.Sprintf("w%d", i)
			}
			var sum float64
			for _, self := range members {
				c := snapshot{members: members, self: true}.target(self, limit, rotation("1", GroupOps))
				sum += float64(rateFor(c, cfg.window()))
			}
			if u := sum / float64(limit); u < 0.95 || u >= 1 {
				t.Errorf("limit %d, %d workers: aggregate rate %.3f/s is %.4f of the limit, want in [0.95, 1)", limit, n, sum, u)
			}
		}
	}
}

func TestLargerShareWaitsForSettleSmallerAppliesAtOnce(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	r := newRegistry("b", 1300*time.Millisecond)
	r.ttl, r.margin = 10*time.Second, 3*time.Second
	r.beat(t0)
	const total = 50
	rot := uint32(0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	r.put("a", t0)
	r.put("b", t0)
	r.record(t0)
	if got := r.budget(at(time.Second), total, rot); got != 0 {
		t.Errorf("budget before Settle after joining = %d, want 0", got)
	}
	if got, want := r.growsAt(at(time.Second), total, rot), at(1300*time.Millisecond); !got.Equal(want) {
		t.Errorf("growsAt = %v, want %v", got, want)
	}
	if got := r.budget(at(1300*time.Millisecond), total, rot); got != 25 {
		t.Errorf("budget with 2 workers after Settle = %d, want 25", got)
	}

	r.put("c", at(2*time.Second))
	r.record(at(2 * time.Second))
	three := snapshot{members: []string{"a", "b", "c"}, self: true}.target("b", total, rot)
	if got := r.budget(at(2*time.Second), total, rot); got != three {
		t.Errorf("budget right after a third worker joined = %d, want the smaller share %d at once", got, three)
	}

	r.remove("c")
	r.record(at(3 * time.Second))
	if got := r.budget(at(4*time.Second), total, rot); got != three {
		t.Errorf("budget 1s after the third worker left = %d, want still %d until Settle has passed", got, three)
	}
	if got := r.budget(at(4300*time.Millisecond), total, rot); got != 25 {
		t.Errorf("budget Settle after the third worker left = %d, want 25", got)
	}
	if got, want := r.nextWake(at(3*time.Second)), at(3300*time.Millisecond); !got.Equal(want) {
		t.Errorf("nextWake(3s) = %v, want %v (the 2-worker view leaves the window)", got, want)
	}
	if got, want := r.nextWake(at(3300*time.Millisecond)), at(4300*time.Millisecond); !got.Equal(want) {
		t.Errorf("nextWake(3.3s) = %v, want %v (when the larger share may be taken)", got, want)
	}
}

// simWorker is one worker on a virtual timeline: the real Limiter state
// machine, fed by the simulation instead of NATS.
type simWorker struct {
	id                 string
	l                  *Limiter
	start, stop, split time.Duration // stop: leaves gracefully; split: partitioned from then on
	running            bool
	lastBeat           time.Duration
}

type delivery struct {
	at     time.Duration
	to     string
	from   string
	delete bool
}

// The whole argument of registry.go on a virtual timeline: workers join,
// leave, and lose their connection while all of them take every token they
// can, and their calls reach "Meta" with up to Jitter of delay. No window
// of one second may hold more calls than the limit, and in steady periods
// the limit must be used at ≥ 95%.
func TestSharesNeverExceedTheLimitAcrossMembershipChanges(t *testing.T) {
	t.Parallel()
	const (
		phone = "1555000001"
		tick  = 250 * time.Microsecond
		ttl   = 2 * time.Second
		hb    = 500 * time.Millisecond
		end   = 19 * time.Second
	)
	limits := map[Class]float64{Messages: 50, GroupOps: 7, Reads: 1}
	base := time.Unix(1_700_000_000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := Config{
		Defaults: Limits{Messages: limits[Messages], GroupOps: limits[GroupOps], Reads: limits[Reads]},
		Logger:   slog.New(slog.DiscardHandler),
	}

	workers := []*simWorker{
		{id: "a", start: 0, stop: 6 * time.Second},
		{id: "b", start: 0, split: 9 * time.Second},
		{id: "c", start: 3 * time.Second},
		{id: "d", start: 15 * time.Second},
	}
	for _, w := range workers {
		c := cfg
		c.WorkerID = w.id
		w.l = newLimiter(c.withDefaults())
		w.l.reg.ttl, w.l.reg.margin = ttl, hb
	}
	var pending []delivery
	// send delivers a change of w's entry to every other running worker
	// after a random propagation delay, and to w itself.
	send := func(now time.Duration, from string, del bool) {
		for _, o := range workers {
			if !o.running && o.id != from {
				continue
			}
			pending = append(pending, delivery{at: now + time.Duration(rng.IntN(20))*time.Millisecond, to: o.id, from: from, delete: del})
		}
	}
	partitioned := func(w *simWorker, now time.Duration) bool { return w.split > 0 && now >= w.split }
	arrivals := map[Class][]time.Time{}

	for now := time.Duration(0); now < end; now += tick {
		clock := base.Add(now)
		for _, w := range workers {
			switch {
			case !w.running && now == w.start:
				w.running = true
				w.l.reg.beat(clock)
				w.lastBeat = now
				send(now, w.id, false)
				// Reading the bucket: everyone registered so far.
				for _, o := range workers {
					if o.running && o != w && now-o.lastBeat < ttl {
						w.l.reg.put(o.id, clock)
					}
				}
			case w.running && w.stop > 0 && now == w.stop:
				w.running = false
				w.l.closed = true
				send(now, w.id, true)
			case w.running && now-w.lastBeat >= hb && !partitioned(w, now):
				w.l.reg.beat(clock)
				w.lastBeat = now
				send(now, w.id, false)
			}
		}
		keep := pending[:0]
		for _, d := range pending {
			if d.at > now {
				keep = append(keep, d)
				continue
			}
			for _, w := range workers {
				if w.id != d.to || !w.running || partitioned(w, now) {
					continue
				}
				if d.delete {
					w.l.reg.remove(d.from)
				} else {
					w.l.reg.put(d.from, clock)
				}
				if d.to == d.from && !w.l.synced {
					w.l.synced = true // its own entry came back: bucket read
				}
			}
		}
		pending = keep
		for _, w := range workers {
			if !w.running {
				continue
			}
			w.l.refreshLocked(clock)
			for class := range numClasses {
				e := w.l.entryLocked(phone, class, clock)
				next, _, _, err := w.l.step(e, phone, clock, clock.Add(time.Hour), clock.Add(time.Hour))
				if err == nil && next.IsZero() {
					jitter := time.Duration(rng.Int64N(int64(w.l.cfg.Jitter)))
					arrivals[class] = append(arrivals[class], clock.Add(jitter))
				}
			}
		}
	}

	for class, limit := range limits {
		got, at := maxInWindow(arrivals[class], time.Second)
		if got > int(limit) {
			t.Errorf("%s: %d calls in the second from %v, want at most %v", class, got, at.Sub(base), limit)
		}
		t.Logf("%s: %d calls, busiest second %d (limit %v)", class, len(arrivals[class]), got, limit)
	}
	// Steady periods: 2 workers, 3 workers, 2 (a gone), 1 (b cut off), 2 (d joined).
	for _, p := range []struct{ from, to time.Duration }{
		{1500 * time.Millisecond, 3 * time.Second},
		{4500 * time.Millisecond, 6 * time.Second},
		{7500 * time.Millisecond, 9 * time.Second},
		{12500 * time.Millisecond, 15 * time.Second},
		{16500 * time.Millisecond, 19 * time.Second},
	} {
		n := 0
		for _, a := range arrivals[Messages] {
			if d := a.Sub(base); d >= p.from && d < p.to {
				n++
			}
		}
		// In whole calls: a period of 1.5 s holds 72.4 calls at 96.6%, so
		// 71 or 72 depending on where the calls fall against its ends.
		if want := int(0.95 * limits[Messages] * (p.to - p.from).Seconds()); n < want {
			t.Errorf("messages in [%v, %v): %d calls, want at least %d (95%% of the limit)", p.from, p.to, n, want)
		}
	}
}

func TestOnlyAHeartbeatSeenThroughTheWatchMovesTheFence(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	r := newRegistry("self", time.Second)
	r.ttl, r.margin = 10*time.Second, 3*time.Second

	r.stored(1, t0)
	r.echoed(1)
	if got, want := r.fenceAt, at(7*time.Second); !got.Equal(want) {
		t.Fatalf("fence after the first heartbeat came back = %v, want %v", got, want)
	}

	// Stored, but the watch lags: the view may miss a worker that joined
	// before these heartbeats, so they must not move the fence.
	r.stored(2, at(3*time.Second))
	r.stored(3, at(6*time.Second))
	if !r.fenced(at(7 * time.Second)) {
		t.Fatalf("not fenced at %v though no heartbeat after the first came back through the watch", at(7*time.Second))
	}

	// The watch catches up to the first of them, then past both (a later
	// revision of the entry covers every heartbeat stored before it).
	r.echoed(2)
	if got, want := r.fenceAt, at(10*time.Second); !got.Equal(want) {
		t.Errorf("fence after heartbeat 2 came back = %v, want %v", got, want)
	}
	r.stored(5, at(9*time.Second))
	r.echoed(7)
	if got, want := r.fenceAt, at(16*time.Second); !got.Equal(want) {
		t.Errorf("fence after the watch passed every heartbeat = %v, want %v (from the last one, sent at 9s)", got, want)
	}
	if len(r.unseen) != 0 {
		t.Errorf("%d heartbeats still wait for the watch, want 0", len(r.unseen))
	}
	r.echoed(8) // someone else's put of the entry, or a repeat: nothing to move
	if got, want := r.fenceAt, at(16*time.Second); !got.Equal(want) {
		t.Errorf("fence after an echo with no heartbeat behind it = %v, want %v", got, want)
	}
}

func TestUnseenHeartbeatsAreBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	r := newRegistry("self", time.Second)
	r.ttl, r.margin = 10*time.Second, 3*time.Second
	for i := range 3 * maxUnseen {
		r.stored(uint64(i+1), t0.Add(time.Duration(i)*time.Second)) //nolint:gosec // G115: i is small and positive
	}
	if len(r.unseen) != maxUnseen {
		t.Fatalf("%d unseen heartbeats kept, want at most %d", len(r.unseen), maxUnseen)
	}
	r.echoed(3 * maxUnseen)
	if got, want := r.fenceAt, t0.Add(time.Duration(3*maxUnseen-1)*time.Second+7*time.Second); !got.Equal(want) {
		t.Errorf("fence = %v, want %v: from the newest heartbeat", got, want)
	}
}
