package ratelimit

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"
)

// Class is a kind of Graph call with its own per-number limit.
type Class int

const (
	// Messages are sends to a group or a user (Meta: 80/s per number by default).
	Messages Class = iota
	// GroupOps are group-management writes: create, delete, settings,
	// invite links, join requests, removals.
	GroupOps
	// Reads are queries (group info, lists, join requests). They have their
	// own limit so that a burst of reads never takes tokens from writes.
	Reads
	numClasses
)

// String names the class in logs and metrics.
func (c Class) String() string {
	switch c {
	case Messages:
		return "messages"
	case GroupOps:
		return "group_ops"
	case Reads:
		return "reads"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Limits are the calls per second allowed for one business phone number,
// across all workers, per class.
type Limits struct {
	// Messages per second. Defaults to 80 (Meta's default throughput).
	Messages float64
	// GroupOps, group-management operations per second. Defaults to 10.
	GroupOps float64
	// Reads per second. Defaults to 20.
	Reads float64
}

func (l Limits) of(c Class) float64 {
	switch c {
	case Messages:
		return l.Messages
	case GroupOps:
		return l.GroupOps
	default:
		return l.Reads
	}
}

// Default limits per phone number.
const (
	DefaultMessages = 80
	DefaultGroupOps = 10
	DefaultReads    = 20
)

// DefaultMaxWait is Config.MaxWait's default. It is also how much of a
// number's backlog one worker holds: what its share cannot serve within
// MaxWait goes back to the shared consumer (Admit, then a nak until its
// turn) for any worker to take. With a longer bound each worker holds more,
// their holdings differ more when the backlog runs out, and its last part
// is sent at one worker's share while the others' go unused. Three workers
// with a 20 s backlog for three numbers used 0.93–0.95 of the limits with
// 2 s, and 0.960–0.971 with 1 s: all the 1/(1+(Jitter+Lateness)/1s) that
// the shares allow. The cost is hand-backs, a nak each: 1.7 per command
// over that backlog with the worker's slots backing off after one (5.5
// without).
const DefaultMaxWait = time.Second

// DefaultIdle is Config.Idle's default.
const DefaultIdle = 5 * time.Minute

// DefaultJitter is Config.Jitter's default: how much later or earlier than
// its token a call may reach Meta with the limit still kept there.
const DefaultJitter = 25 * time.Millisecond

// Clock tells the time and makes timers. Tests inject a fake one to step
// time deterministically.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has passed and a
	// function that stops the timer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
func (systemClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

// Config configures a Limiter.
type Config struct {
	// Workers is the live-worker bucket (events.Names.WorkersBucket). Its
	// TTL is how long a worker counts as alive after its last heartbeat.
	// Required.
	Workers jetstream.KeyValue
	// Throttle is the shared pause bucket (events.Names.ThrottleBucket).
	// Required.
	Throttle jetstream.KeyValue
	// WorkerID names this worker in Workers; it must be unique among
	// running workers and a valid key (letters, digits, '-', '_', '=').
	// Defaults to a random id.
	WorkerID string
	// Defaults are every number's limits; zero fields take DefaultMessages,
	// DefaultGroupOps and DefaultReads. A limit must be at least 1 per second.
	Defaults Limits
	// Overrides replace Defaults per phone number id; zero fields fall back
	// to Defaults.
	Overrides map[string]Limits
	// WABAOf tells which WhatsApp Business Account a number belongs to, so
	// that an account-level throttle (80007) pauses only that account's
	// numbers. Nil, or an empty answer: every account pause covers the number.
	WABAOf func(phone string) string
	// Heartbeat is how often the worker renews its entry in Workers.
	// Defaults to a third of the bucket's TTL; must be under half of it.
	Heartbeat time.Duration
	// MaxWait is the longest a Wait queues behind this worker's other
	// callers for the number's tokens, or waits for a pause to end; beyond
	// it Wait returns a *ThrottledError. The caller at the head of the
	// queue also waits out its own share's token interval, or a new
	// worker's first share (MaxWait + Settle at most). Defaults to
	// DefaultMaxWait.
	MaxWait time.Duration
	// MaxQueue, if positive, is how many callers may queue for one
	// number's tokens of one class before Admit refuses more (Wait does
	// not enforce it). A queued caller holds one of the worker's slots
	// doing nothing; a queue of a few keeps the share busy, and capping
	// it leaves the other slots to other numbers and classes. A worker
	// sets it to half its slots.
	MaxQueue int
	// Jitter is how much the time between taking a token and the call
	// reaching Meta may vary between two calls of one worker. Shares keep
	// that much headroom, so the aggregate is used at 1/(1+Jitter/1s) of
	// the limit at best. Defaults to 25 milliseconds.
	Jitter time.Duration
	// Lateness is how late a waiter may be woken (a busy machine runs
	// timers and goroutines late) and still have its token counted at the
	// time it was due, so that the lateness is not capacity lost. Shares
	// keep that much more headroom: the aggregate is used at
	// 1/(1+(Jitter+Lateness)/1s) of the limit at best. Defaults to 10
	// milliseconds.
	Lateness time.Duration
	// Settle is how long a worker waits after the live workers changed
	// before it takes up a larger share: one window (1 s + Jitter +
	// Lateness) for the calls made under the old shares to leave it, plus
	// the time the change takes to reach every worker. Defaults to
	// 1 s + Jitter + Lateness + 250 ms.
	Settle time.Duration
	// Idle is how long this worker keeps a number's state for a class
	// (its share's token bucket, about 1.4 KB) after its last use, with
	// nobody waiting: then it is dropped, checked every Idle/4, and made
	// again on the next use. Any numeric phone number id is accepted in a
	// command, so without it a caller naming ever new numbers grows the
	// worker for as long as it runs. It must be at least two windows
	// (2 × (1 s + Jitter + Lateness)): a number's calls before it was
	// dropped and after it came back then never share a window. Defaults
	// to DefaultIdle.
	Idle time.Duration
	// Clock tells the time. Defaults to the system clock.
	Clock Clock
	// Logger receives membership changes and pauses. Defaults to slog.Default().
	Logger *slog.Logger
	// OnWait, when set, is told how every Wait ended and how long it
	// blocked: outcome is "acquired", "throttled" (a *ThrottledError),
	// "cancelled" (ctx done, or the limiter stopped) or "error". The worker
	// turns it into the rate-limit wait histogram. It is called on the
	// waiting goroutine and must be safe for concurrent use.
	OnWait func(ctx context.Context, class Class, outcome string, waited time.Duration)
}

// window is the length of the sliding window a share is sized for: one
// second, stretched by the jitter and lateness allowances.
func (c *Config) window() time.Duration { return time.Second + c.Jitter + c.Lateness }

var validKey = regexp.MustCompile(`^[-_=a-zA-Z0-9]+$`)

// ValidWorkerID reports whether id can name a worker (Config.WorkerID): it
// is its key in the workers bucket.
func ValidWorkerID(id string) bool { return validKey.MatchString(id) }

func (c Config) withDefaults() Config {
	c.Defaults.Messages = cmp.Or(c.Defaults.Messages, DefaultMessages)
	c.Defaults.GroupOps = cmp.Or(c.Defaults.GroupOps, DefaultGroupOps)
	c.Defaults.Reads = cmp.Or(c.Defaults.Reads, DefaultReads)
	if c.WorkerID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.WorkerID = "w-" + hex.EncodeToString(b[:])
	}
	c.MaxWait = cmp.Or(c.MaxWait, DefaultMaxWait)
	c.Jitter = cmp.Or(c.Jitter, DefaultJitter)
	c.Lateness = cmp.Or(c.Lateness, 10*time.Millisecond)
	c.Settle = cmp.Or(c.Settle, c.window()+250*time.Millisecond)
	c.Idle = cmp.Or(c.Idle, DefaultIdle)
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	checkLimits := func(where string, l Limits, zeroOK bool) error {
		for cl := range numClasses {
			v := l.of(cl)
			if zeroOK && v == 0 {
				continue
			}
			if !(v >= 1) || math.IsInf(v, 0) {
				return fmt.Errorf("%s.%s must be a finite number of at least 1 per second, got %v", where, cl, v)
			}
		}
		return nil
	}
	switch {
	case c.Workers == nil:
		return errors.New("workers bucket is required")
	case c.Throttle == nil:
		return errors.New("throttle bucket is required")
	case !validKey.MatchString(c.WorkerID):
		return fmt.Errorf("worker id %q must be letters, digits, '-', '_' or '='", c.WorkerID)
	case c.MaxWait < 0:
		return fmt.Errorf("max wait must not be negative, got %v", c.MaxWait)
	case c.Jitter < 0 || c.Jitter >= time.Second:
		return fmt.Errorf("jitter must be between 0 and 1s, got %v", c.Jitter)
	case c.Lateness < 0 || c.Lateness >= time.Second:
		return fmt.Errorf("lateness must be between 0 and 1s, got %v", c.Lateness)
	case c.Settle < c.window():
		return fmt.Errorf("settle must be at least 1s + jitter + lateness (%v), got %v", c.window(), c.Settle)
	case c.Idle < 2*c.window():
		return fmt.Errorf("idle must be at least 2 × (1s + jitter + lateness) (%v), got %v", 2*c.window(), c.Idle)
	case c.Heartbeat < 0:
		return fmt.Errorf("heartbeat must not be negative, got %v", c.Heartbeat)
	}
	if err := checkLimits("defaults", c.Defaults, false); err != nil {
		return err
	}
	for phone, l := range c.Overrides {
		if err := checkLimits("overrides["+phone+"]", l, true); err != nil {
			return err
		}
	}
	return nil
}

// Errors callers branch on.
var (
	// ErrThrottled matches every *ThrottledError (errors.Is).
	ErrThrottled = errors.New("ratelimit: throttled")
	// ErrClosed is returned by Wait once Run has returned.
	ErrClosed = errors.New("ratelimit: limiter stopped")
)

// ThrottledError says that no call may be made for a number before Until,
// or not within MaxWait. The caller should retry after Until (NakWithDelay).
type ThrottledError struct {
	// Until is the earliest time a retry can succeed.
	Until time.Time
	// Scope says what holds the call back: "number:<id>", "app",
	// "account:<waba id>", "account" (an account whose numbers are not
	// known: all of them) for shared pauses, or "share" when this worker's
	// own share of the number's limit cannot serve the call within MaxWait.
	Scope string
}

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("ratelimit: throttled (%s) until %s", e.Scope, e.Until.UTC().Format(time.RFC3339Nano))
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// scopeShare is the Scope of a ThrottledError caused by this worker's own
// token bucket, not by a shared pause.
const scopeShare = "share"

// Limiter paces one worker's Graph calls. Create it with New, run Run for as
// long as the worker runs, and call Wait before every Graph call.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	entries map[entryKey]*entry
	// sweepAt is when dropIdleLocked next looks for idle entries.
	sweepAt time.Time
	reg     registry
	pauses  map[Scope]pause
	// wake is closed and replaced whenever a pause changes or the limiter
	// stops, so that blocked callers look again.
	wake    chan struct{}
	synced  bool // both buckets' initial contents have been read
	running bool
	closed  bool
}

// New checks cfg and returns a Limiter. It makes no call: Run registers the
// worker and watches the buckets.
func New(cfg Config) (*Limiter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return newLimiter(cfg), nil
}

func newLimiter(cfg Config) *Limiter {
	return &Limiter{
		cfg:     cfg,
		entries: make(map[entryKey]*entry),
		reg:     newRegistry(cfg.WorkerID, cfg.Settle),
		pauses:  make(map[Scope]pause),
		wake:    make(chan struct{}),
	}
}

// WorkerID is the id this worker heartbeats under.
func (l *Limiter) WorkerID() string { return l.cfg.WorkerID }

// LiveWorkers is the number of workers this worker currently sees alive,
// itself included once registered.
func (l *Limiter) LiveWorkers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reg.view(l.cfg.Clock.Now()).members)
}

// Rate is this worker's current share of the number's limit for class, in
// calls per second (0 while it has none: not yet settled, or more workers
// than calls per second).
func (l *Limiter) Rate(phone string, class Class) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(l.entryLocked(phone, class, l.cfg.Clock.Now()).lim.Limit())
}

// Limit is the configured aggregate limit of phone for class, per second.
func (l *Limiter) Limit(phone string, class Class) float64 {
	if o, ok := l.cfg.Overrides[phone]; ok && o.of(class) > 0 {
		return o.of(class)
	}
	return l.cfg.Defaults.of(class)
}

// The share arithmetic.
//
// A token bucket with rate r and burst 1 allows at most 1 + floor(r·T) calls
// in any closed interval of length T: the token saved up at its start plus
// what accrues during it. With N workers at (r, 1) a one-second window can
// therefore hold N·(1 + floor(r)) calls; equal shares of L/N overshoot L.
// So:
//
//   - The number's per-window budget B = floor(L) calls is split into whole
//     shares c_i, B/N each and one more for the first B mod N workers in an
//     order that rotates with the number, so that Σ c_i = B exactly.
//   - Each worker runs burst 1 and rate r_i just under c_i / W, where
//     W = 1 s + Jitter + Lateness: its tokens are counted at times at least
//     1/r_i apart, so c_i + 1 of them span more than W.
//   - A token is counted at the time it was due, or Lateness before the
//     call if it was due earlier, never after the call: a waiter woken late
//     (timers and goroutines run milliseconds late on a busy machine) does
//     not lose the time it was late, yet every call is made within Lateness
//     after its token's time. So c_i + 1 calls of one worker span more than
//     W − Lateness = 1 s + Jitter.
//   - Using 1 s + Jitter instead of 1 s keeps the bound when calls reach
//     Meta up to Jitter later or earlier than their token was taken: c_i + 1
//     calls of one worker still cannot land in one second, and a second
//     holds at most Σ c_i = B ≤ L calls of all workers.
//   - Under backlog the aggregate runs at Σ r_i ≈ B / W: with the default
//     25 ms jitter and 10 ms lateness 96.6% of an integer limit (48.3/s of
//     50/s). Counting tokens when they were taken instead lost each late
//     wake-up for good: ~1 ms per call on a loaded 2-core machine, 0.93 of
//     the limit at 26 calls/s per worker. (A burst of 1% of the share,
//     tried before, gave shares under 200 calls no allowance at all.)
//
// Shares change in place (SetLimitAt/SetBurstAt keep the tokens, capped at
// one), never above the smallest share of the last Settle
// (registry.budget), so no window ever mixes old large shares with new ones.
// Every use of a bucket is at a time no earlier than the last one
// (entry.counted): a share change applies from the latest token taken on,
// and no token is counted under a rate that was not in force at its time.
// Waiting callers take a token only when one is there at the time it is
// counted: there are no reservations made at an old rate that could fire
// after a share shrank.

// rateFor is the token rate of a share of budget calls per window.
func rateFor(budget int, window time.Duration) rate.Limit {
	if budget <= 0 {
		return 0
	}
	// Strictly under budget/window: floor(r·W) must be budget−1.
	return rate.Limit(float64(budget) / window.Seconds() * (1 - 1e-9))
}

// windowBudget is the number of calls a limit allows in one second.
func windowBudget(limit float64) int { return int(math.Floor(limit + 1e-9)) }

// rotation spreads the one-call-larger shares of different numbers and
// classes over different workers.
func rotation(phone string, class Class) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(phone))
	_, _ = h.Write([]byte{'/', byte(class)}) //nolint:gosec // G115: a Class is one of numClasses small constants
	return h.Sum32()
}

type entryKey struct {
	phone string
	class Class
}

// entry is this worker's limiter for one number and class.
type entry struct {
	total  int    // the number's window budget for the class
	rot    uint32 // rotation of the larger shares
	lim    *rate.Limiter
	budget int // this worker's share, as applied to lim
	// counted is the latest time lim was used at (a token counted, a
	// share applied); it is never used at an earlier one.
	counted time.Time
	// changed is closed and replaced when the share changes.
	changed chan struct{}
	// head is held by the one caller that polls lim; the others queue on it
	// in arrival order.
	head chan struct{}
	// waiting counts the callers between their lookup of the entry and
	// the end of their Wait. It is raised under Limiter.mu, in the same
	// critical section as the lookup, so that dropIdleLocked never drops
	// an entry a caller is about to queue on: that caller would poll a
	// bucket no longer in the map while the next caller got a new, full
	// one, and the worker would take two tokens where its share has one.
	waiting atomic.Int64
	// used is when the entry was last looked up.
	used time.Time
}

// entryLocked returns the entry of phone and class, creating it with the
// current share.
func (l *Limiter) entryLocked(phone string, class Class, now time.Time) *entry {
	k := entryKey{phone, class}
	if e, ok := l.entries[k]; ok {
		e.used = later(now, e.used)
		return e
	}
	e := &entry{
		total:   windowBudget(l.Limit(phone, class)),
		rot:     rotation(phone, class),
		changed: make(chan struct{}),
		head:    make(chan struct{}, 1),
		used:    now,
	}
	e.budget = l.budgetLocked(e, now)
	e.lim = rate.NewLimiter(rateFor(e.budget, l.cfg.window()), min(e.budget, 1))
	l.entries[k] = e
	return e
}

// budgetLocked is the share the entry may use now.
func (l *Limiter) budgetLocked(e *entry, now time.Time) int {
	if !l.synced || l.reg.fenced(now) {
		return 0
	}
	return l.reg.budget(now, e.total, e.rot)
}

// applyLocked brings every entry to its current share.
func (l *Limiter) applyLocked(now time.Time) {
	for _, e := range l.entries {
		b := l.budgetLocked(e, now)
		if b == e.budget {
			continue
		}
		e.budget = b
		// Limit first: tokens accrued so far are counted at the old rate
		// and capped at the burst (≤ 1); going to burst 0 then forbids any
		// call, and coming back from 0 starts from an empty bucket.
		at := later(now, e.counted)
		e.lim.SetLimitAt(at, rateFor(b, l.cfg.window()))
		e.lim.SetBurstAt(at, min(b, 1))
		e.counted = at
		close(e.changed)
		e.changed = make(chan struct{})
	}
}

// dropIdleLocked forgets, every Idle/4, the entries nobody waits on that
// have been neither looked up nor used for Idle.
//
// A dropped entry comes back with a full bucket (one token) at the share
// of the time, counted no earlier than Lateness before its first call. Its
// last token was counted at least Idle (two windows) before it was
// dropped, so no window of W holds calls of both: the share's bound, at
// most c_i calls in any window, holds across the gap as it does within
// one entry's life. Pauses are not in entries: they stay until they end.
func (l *Limiter) dropIdleLocked(now time.Time) {
	if now.Before(l.sweepAt) {
		return
	}
	l.sweepAt = now.Add(l.cfg.Idle / 4)
	for k, e := range l.entries {
		if e.waiting.Load() == 0 && now.Sub(later(e.used, e.counted)) >= l.cfg.Idle {
			delete(l.entries, k)
		}
	}
}

// wakeLocked makes every blocked caller look again.
func (l *Limiter) wakeLocked() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// Wait blocks until this worker may make one call of class for phone. It
// returns a *ThrottledError, without blocking, when the number is paused
// beyond MaxWait or its share cannot serve the call within MaxWait, and
// ErrClosed once Run has returned.
func (l *Limiter) Wait(ctx context.Context, phone string, class Class) error {
	if l.cfg.OnWait == nil {
		return l.wait(ctx, phone, class)
	}
	start := l.cfg.Clock.Now()
	err := l.wait(ctx, phone, class)
	l.cfg.OnWait(ctx, class, waitOutcome(err), l.cfg.Clock.Now().Sub(start))
	return err
}

// waitOutcome names how a Wait ended, for Config.OnWait.
func waitOutcome(err error) string {
	switch {
	case err == nil:
		return "acquired"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.Is(err, ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	}
	return "error"
}

func (l *Limiter) wait(ctx context.Context, phone string, class Class) error {
	if class < 0 || class >= numClasses {
		return fmt.Errorf("ratelimit: unknown class %d", int(class))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	clock := l.cfg.Clock
	now := clock.Now()
	deadline, headDeadline := now.Add(l.cfg.MaxWait), now.Add(l.headWait())

	l.mu.Lock()
	e := l.entryLocked(phone, class, now)
	closed := l.closed
	until, scope := l.pausedLocked(phone, now)
	var ahead int64
	if !closed && !until.After(deadline) {
		// Counted before the lock is released: see entry.waiting.
		ahead = e.waiting.Add(1) - 1
	}
	l.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case until.After(deadline):
		// Paused for long: say so without queueing behind the others.
		return &ThrottledError{Until: until, Scope: scope.String()}
	}
	defer e.waiting.Add(-1)

	// Those already queued go first: if they alone take longer than
	// MaxWait, say so now instead of queueing.
	if ahead > 0 {
		if err := queueTooLong(e, ahead, now, deadline); err != nil {
			return err
		}
	}
	if err := l.takeHead(ctx, e, now, deadline); err != nil {
		return err
	}
	defer func() { <-e.head }()

	for {
		now = clock.Now()
		next, wake, changed, err := l.step(e, phone, now, deadline, headDeadline)
		if err != nil || next.IsZero() {
			return err
		}
		c, stop := clock.NewTimer(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-c:
		case <-wake:
			stop()
		case <-changed:
			stop()
		}
	}
}

// headWait is how long the caller at the head of a queue may wait for its
// token, or for the share a join holds back: MaxWait + Settle. MaxWait
// bounds how long a caller queues behind others. The head waits for one
// token interval (up to W with a share of one call per window), or for a
// worker that just started to take its first share (Settle after its own
// heartbeat was seen); a MaxWait of a second or less would refuse both
// every time and hand the command back for nothing.
func (l *Limiter) headWait() time.Duration { return l.cfg.MaxWait + l.cfg.Settle }

// queueTooLong returns the *ThrottledError for a caller with ahead callers
// queued before it on e, if its token would come after deadline.
func queueTooLong(e *entry, ahead int64, now, deadline time.Time) error {
	r := float64(e.lim.Limit())
	if r <= 0 {
		return nil
	}
	need := float64(ahead) + 1 - e.lim.TokensAt(now)
	if until := now.Add(seconds(need / r)); until.After(deadline) {
		return &ThrottledError{Until: until, Scope: scopeShare}
	}
	return nil
}

// Admit tells, without waiting or taking a token, whether a Wait for phone
// and class starting now would get its token within its bounds (MaxWait,
// and headWait at the head of the queue). It returns nil if so (or if it
// cannot tell), otherwise the *ThrottledError that Wait would return: the
// number is paused beyond MaxWait, this worker has no share and will not
// have one in time, or the callers already queued here take longer than
// MaxWait.
//
// A worker asks before it claims a command. When its share of a number is
// busy for longer than MaxWait, the command goes back to the queue (for
// any worker, at its turn) at the cost of a nak, not of a claim, a release
// and a nak: a deep backlog hands back many commands, often several times.
//
// A refusal is reported to Config.OnWait as a "throttled" wait of zero.
func (l *Limiter) Admit(ctx context.Context, phone string, class Class) error {
	return l.AdmitBehind(ctx, phone, class, 0)
}

// AdmitBehind is Admit for a caller that knows of ahead callers already
// admitted for phone and class that have not reached Wait yet: they will
// queue before it. A worker counts the commands it admitted and is still
// claiming, so a burst of commands arriving together is not admitted
// whole, only to be refused by Wait after each was claimed.
func (l *Limiter) AdmitBehind(ctx context.Context, phone string, class Class, ahead int64) error {
	err := l.admit(phone, class, max(ahead, 0))
	if err != nil && l.cfg.OnWait != nil {
		l.cfg.OnWait(ctx, class, waitOutcome(err), 0)
	}
	return err
}

func (l *Limiter) admit(phone string, class Class, admitted int64) error {
	if class < 0 || class >= numClasses {
		return fmt.Errorf("ratelimit: unknown class %d", int(class))
	}
	now := l.cfg.Clock.Now()
	deadline, headDeadline := now.Add(l.cfg.MaxWait), now.Add(l.headWait())
	l.mu.Lock()
	e := l.entryLocked(phone, class, now)
	v := l.lookLocked(e, phone, now)
	l.mu.Unlock()
	switch {
	case v.closed:
		return nil // Wait says so
	case v.until.After(deadline):
		return &ThrottledError{Until: v.until, Scope: v.scope.String()}
	case v.budget == 0 && v.synced && (v.grows.IsZero() || v.grows.After(headDeadline)):
		return &ThrottledError{Until: cmp.Or(v.grows, now.Add(l.cfg.Settle)), Scope: scopeShare}
	}
	ahead := e.waiting.Load() + admitted
	if l.cfg.MaxQueue > 0 && ahead >= int64(l.cfg.MaxQueue) {
		// Refused unless a token is free for it at once.
		return queueTooLong(e, ahead, now, now)
	}
	if ahead > 0 {
		return queueTooLong(e, ahead, now, deadline)
	}
	return nil
}

// look is what Wait and Admit decide on for one entry at one time.
type look struct {
	closed, synced bool
	budget         int       // the entry's share
	until          time.Time // the end of the pause in force, if any
	scope          Scope     // that pause's scope
	grows          time.Time // when a zero share grows, zero if never
}

func (l *Limiter) lookLocked(e *entry, phone string, now time.Time) look {
	v := look{closed: l.closed, synced: l.synced, budget: e.budget}
	v.until, v.scope = l.pausedLocked(phone, now)
	if v.budget == 0 && v.synced {
		v.grows = l.reg.growsAt(now, e.total, e.rot)
	}
	return v
}

// step looks once whether the caller at the head of e's queue may call now.
// It returns a zero next and nil error when it took a token; otherwise the
// time to look again (or earlier, when wake or changed is closed), or the
// error to return.
//
// A pause must end by deadline (MaxWait); the caller's token, or the share
// a join makes it wait for, must come by headDeadline (headWait).
func (l *Limiter) step(e *entry, phone string, now, deadline, headDeadline time.Time) (next time.Time, wake, changed <-chan struct{}, err error) {
	l.mu.Lock()
	if l.budgetLocked(e, now) != e.budget {
		// A share grew or the fence fell (heartbeats failing) before Run
		// got round to it: apply it now rather than spin or overspend.
		l.applyLocked(now)
	}
	wake, changed = l.wake, e.changed
	v := l.lookLocked(e, phone, now)
	l.mu.Unlock()
	closed, synced, budget, until, scope, grows := v.closed, v.synced, v.budget, v.until, v.scope, v.grows

	switch {
	case closed:
		return time.Time{}, nil, nil, ErrClosed
	case until.After(now):
		if until.After(deadline) {
			return time.Time{}, nil, nil, &ThrottledError{Until: until, Scope: scope.String()}
		}
		return until, wake, changed, nil
	case budget == 0 && synced:
		// No share now: more workers than calls per second, just joined, or
		// fenced. Wait only for a share that is sure to come in time.
		if grows.IsZero() || grows.After(headDeadline) {
			return time.Time{}, nil, nil, &ThrottledError{Until: cmp.Or(grows, now.Add(l.cfg.Settle)), Scope: scopeShare}
		}
		return grows, wake, changed, nil
	case budget == 0:
		// Run is starting: it wakes us when both buckets have been read.
		if !now.Before(deadline) {
			return time.Time{}, nil, nil, &ThrottledError{Until: now.Add(l.cfg.Settle), Scope: scopeShare}
		}
		return deadline, wake, changed, nil
	}
	l.mu.Lock()
	took, next := l.takeLocked(e, now)
	l.mu.Unlock()
	switch {
	case took:
		return time.Time{}, nil, nil, nil
	case next.IsZero():
		// The share went to 0 since we looked; changed is closed already.
		return now, wake, changed, nil
	case next.After(headDeadline):
		return time.Time{}, nil, nil, &ThrottledError{Until: next, Scope: scopeShare}
	}
	return next, wake, changed, nil
}

// takeLocked takes one of e's tokens for a call made now, counting it at
// the time it was due but not before now − Lateness (see The share
// arithmetic). Otherwise it returns when the next token is due, or zero
// if none will come at the current share.
func (l *Limiter) takeLocked(e *entry, now time.Time) (took bool, next time.Time) {
	now = later(now, e.counted)
	at := later(now.Add(-l.cfg.Lateness), e.counted)
	r := float64(e.lim.Limit())
	if tokens := e.lim.TokensAt(at); tokens < 1 {
		if r <= 0 || e.lim.Burst() < 1 {
			return false, time.Time{}
		}
		// The microsecond makes up for rounding: a whole token by then.
		at = at.Add(seconds((1-tokens)/r) + time.Microsecond)
		if at.After(now) {
			return false, at
		}
	}
	if !e.lim.AllowN(at, 1) {
		return false, now.Add(time.Microsecond) // not expected: look again
	}
	e.counted = at
	return true, time.Time{}
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// takeHead queues for the right to poll e's token bucket.
func (l *Limiter) takeHead(ctx context.Context, e *entry, now, deadline time.Time) error {
	select {
	case e.head <- struct{}{}:
		return nil
	default:
	}
	c, stop := l.cfg.Clock.NewTimer(deadline.Sub(now))
	defer stop()
	select {
	case e.head <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c:
		until := deadline
		if r := float64(e.lim.Limit()); r > 0 {
			until = until.Add(seconds(float64(e.waiting.Load()) / r))
		}
		return &ThrottledError{Until: until, Scope: scopeShare}
	}
}

func seconds(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	if s > 1e9 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(s * float64(time.Second))
}
