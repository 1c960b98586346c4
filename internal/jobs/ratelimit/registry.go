package ratelimit

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The live workers.
//
// Every worker puts its id into the workers bucket every Heartbeat and
// watches the bucket. A worker counts as alive for the bucket's TTL after its
// heartbeat was last seen here (local receipt time: a dead worker may be
// counted a little too long, which only makes shares smaller), and as gone at
// once when it deletes its entry on the way out.
//
// Joins and departures do not reach all workers at the same instant, and the
// calls made under the old shares stay in the sliding window for a second.
// So a worker uses, at any time, the smallest share it has computed over the
// last Settle (1 s + Jitter + Lateness + propagation): a smaller share
// applies at once, a larger one only after Settle. Then, for every window of
// length W = 1 s + Jitter + Lateness (the times its calls' tokens are
// counted at) starting at a, each worker's rate throughout the window is at
// most its share under the membership it saw in [a − propagation, a]:
//
//   - a worker that joins starts with no share and takes its first one
//     Settle after it saw its own entry; by then every other worker has seen
//     the entry and has run on the smaller share for a full window;
//   - a worker that leaves stops taking tokens before it deletes its entry,
//     and the survivors take the freed share only Settle after they saw the
//     deletion, when its last calls have left the window;
//   - a worker that cannot heartbeat stops taking tokens (fenceAt) before the
//     others can have dropped it, TTL after its last successful heartbeat;
//   - a heartbeat counts as successful only once the worker has seen it come
//     back through its own watch: the watch delivers in order, so its view
//     then holds every change made before the heartbeat. A worker whose
//     watch falls behind (a stalled consumer, a slow connection) while its
//     puts still succeed is fenced like one that cannot heartbeat, instead
//     of using an old, larger share for as long as the watch lags.

// snapshot is one view of the live workers.
type snapshot struct {
	at      time.Time
	members []string // sorted ids
	self    bool     // this worker is among them and may use a share
}

func (s snapshot) same(o snapshot) bool {
	return s.self == o.self && slices.Equal(s.members, o.members)
}

// target is this worker's share of a window budget of total calls.
func (s snapshot) target(self string, total int, rot uint32) int {
	if !s.self || len(s.members) == 0 {
		return 0
	}
	n := len(s.members)
	idx, _ := slices.BinarySearch(s.members, self)
	pos := (idx + n - int(rot%uint32(n))) % n //nolint:gosec // G115: n is a count of live workers, far below 2^32
	share := total / n
	if pos < total%n {
		share++
	}
	return share
}

// registry is this worker's view of the live workers and its history over
// the last Settle. It does no I/O: Run feeds it, so tests can drive it on a
// virtual timeline.
type registry struct {
	self   string
	settle time.Duration
	ttl    time.Duration // set by Run from the bucket; 0: entries never expire
	margin time.Duration // fenceAt is this much before the others may drop us
	seen   map[string]time.Time
	// fenceAt is when this worker must stop taking tokens unless a
	// heartbeat succeeds first.
	fenceAt time.Time
	// unseen are the heartbeats stored but not yet seen through the
	// watch, oldest first.
	unseen []sentBeat
	// history holds the views since the last one at or before now − settle,
	// oldest first. Before the first view the share counts as 0.
	history []snapshot
}

func newRegistry(self string, settle time.Duration) registry {
	return registry{self: self, settle: settle, seen: make(map[string]time.Time)}
}

func (r *registry) put(id string, now time.Time) { r.seen[id] = now }
func (r *registry) remove(id string)             { delete(r.seen, id) }

// sentBeat is a heartbeat the bucket stored at rev.
type sentBeat struct {
	rev uint64
	at  time.Time // when it was sent
}

// maxUnseen bounds the heartbeats kept while the watch lags; the oldest
// go first (they would only move the fence less far).
const maxUnseen = 64

// stored records a heartbeat sent at sent and stored at rev. The fence
// moves when the watch delivers it (echoed).
func (r *registry) stored(rev uint64, sent time.Time) {
	if len(r.unseen) == maxUnseen {
		r.unseen = r.unseen[1:]
	}
	r.unseen = append(r.unseen, sentBeat{rev: rev, at: sent})
}

// echoed records that the watch delivered this worker's entry at rev: the
// view now holds every change before the last heartbeat stored by then, so
// the fence moves on from that heartbeat.
func (r *registry) echoed(rev uint64) {
	i := 0
	for i < len(r.unseen) && r.unseen[i].rev <= rev {
		i++
	}
	if i > 0 {
		r.beat(r.unseen[i-1].at)
		r.unseen = r.unseen[i:]
	}
}

// beat moves the fence on from a heartbeat sent at sent.
func (r *registry) beat(sent time.Time) {
	r.fenceAt = sent.Add(r.ttl - r.margin)
}

func (r *registry) fenced(now time.Time) bool {
	return !r.fenceAt.IsZero() && !now.Before(r.fenceAt)
}

func (r *registry) alive(last, now time.Time) bool {
	return r.ttl <= 0 || now.Sub(last) < r.ttl
}

// view is the membership as seen now.
func (r *registry) view(now time.Time) snapshot {
	s := snapshot{at: now}
	for id, t := range r.seen {
		if r.alive(t, now) {
			s.members = append(s.members, id)
		}
	}
	slices.Sort(s.members)
	_, in := slices.BinarySearch(s.members, r.self)
	s.self = in && !r.fenced(now)
	return s
}

// record appends the current view to the history if it changed, forgets
// what is older than Settle, and reports whether the view changed.
func (r *registry) record(now time.Time) (snapshot, bool) {
	for id, t := range r.seen {
		if !r.alive(t, now) {
			delete(r.seen, id)
		}
	}
	v := r.view(now)
	changed := len(r.history) == 0 || !r.history[len(r.history)-1].same(v)
	if changed {
		r.history = append(r.history, v)
	}
	cut := now.Add(-r.settle)
	for len(r.history) >= 2 && !r.history[1].at.After(cut) {
		r.history = r.history[1:]
	}
	return v, changed
}

// start is the index of the view in force Settle ago: -1 when that was
// before the first view (share 0).
func (r *registry) start(now time.Time) int {
	cut := now.Add(-r.settle)
	i := -1
	for j, s := range r.history {
		if s.at.After(cut) {
			break
		}
		i = j
	}
	return i
}

// budget is the share this worker may use now: the smallest of the views of
// the last Settle.
func (r *registry) budget(now time.Time, total int, rot uint32) int {
	i := r.start(now)
	if i < 0 {
		return 0
	}
	return r.minTarget(i, total, rot)
}

func (r *registry) minTarget(from, total int, rot uint32) int {
	b := total
	for _, s := range r.history[from:] {
		b = min(b, s.target(r.self, total, rot))
	}
	return b
}

// growsAt is when the share will become positive if nothing changes; zero
// if never.
func (r *registry) growsAt(now time.Time, total int, rot uint32) time.Time {
	for j := r.start(now) + 1; j < len(r.history); j++ {
		if r.minTarget(j, total, rot) > 0 {
			return r.history[j].at.Add(r.settle)
		}
	}
	return time.Time{}
}

// nextWake is the next time the view or a share changes by itself (a share
// grows, a worker expires, this worker is fenced); zero if never.
func (r *registry) nextWake(now time.Time) time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if j := r.start(now) + 1; j < len(r.history) {
		earliest(r.history[j].at.Add(r.settle))
	}
	if r.ttl > 0 {
		for _, t := range r.seen {
			earliest(t.Add(r.ttl))
		}
	}
	earliest(r.fenceAt)
	return next
}

// heartbeatValue is what a worker writes under its id: for operators only.
type heartbeatValue struct {
	Worker string    `json:"worker"`
	At     time.Time `json:"at"`
}

// Run registers the worker, heartbeats, and watches the workers and
// throttle buckets until ctx is cancelled; then it stops Wait (ErrClosed)
// and deletes the worker's entry so the others take over its share. It
// returns nil after cancellation and an error if it cannot start or a watch
// ends. Run may be called once.
func (l *Limiter) Run(ctx context.Context) error {
	l.mu.Lock()
	if l.running || l.closed {
		l.mu.Unlock()
		return errors.New("ratelimit: Run called twice")
	}
	l.running = true
	l.mu.Unlock()
	registered := false
	defer func() { l.stop(ctx, registered) }()

	st, err := l.cfg.Workers.Status(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: read workers bucket: %w", err)
	}
	ttl := st.TTL()
	if ttl <= 0 {
		return fmt.Errorf("ratelimit: workers bucket %s has no TTL: a dead worker would never be dropped", st.Bucket())
	}
	hb := cmp.Or(l.cfg.Heartbeat, ttl/3)
	if 2*hb >= ttl {
		return fmt.Errorf("ratelimit: heartbeat %v must be under half the workers bucket TTL %v", hb, ttl)
	}
	l.mu.Lock()
	l.reg.ttl, l.reg.margin = ttl, hb
	l.mu.Unlock()

	if err := l.heartbeat(ctx, hb); err != nil {
		return fmt.Errorf("ratelimit: register worker %s: %w", l.cfg.WorkerID, err)
	}
	registered = true
	workers, err := l.cfg.Workers.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: watch workers: %w", err)
	}
	defer func() { _ = workers.Stop() }()
	throttle, err := l.cfg.Throttle.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("ratelimit: watch throttle: %w", err)
	}
	defer func() { _ = throttle.Stop() }()

	clock := l.cfg.Clock
	nextBeat := clock.Now().Add(hb)
	var workersRead, throttleRead bool
	for {
		now := clock.Now()
		l.mu.Lock()
		wakeAt := nextBeat
		if w := l.reg.nextWake(now); !w.IsZero() && w.Before(wakeAt) {
			wakeAt = w
		}
		l.mu.Unlock()
		timer, stopTimer := clock.NewTimer(max(wakeAt.Sub(now), 0))
		select {
		case <-ctx.Done():
			stopTimer()
			return nil
		case e, ok := <-workers.Updates():
			stopTimer()
			if !ok {
				return watchEnded(ctx, "workers")
			}
			if e == nil {
				workersRead = true
				l.markSynced(workersRead && throttleRead)
				continue
			}
			if l.onWorker(e) {
				nextBeat = clock.Now() // someone deleted our entry: come back
			}
		case e, ok := <-throttle.Updates():
			stopTimer()
			if !ok {
				return watchEnded(ctx, "throttle")
			}
			if e == nil {
				throttleRead = true
				l.markSynced(workersRead && throttleRead)
				continue
			}
			l.onPauseEntry(e)
		case <-timer:
		}
		if !clock.Now().Before(nextBeat) {
			if err := l.heartbeat(ctx, hb); err != nil && ctx.Err() == nil {
				l.cfg.Logger.WarnContext(ctx, "rate limiter heartbeat failed", slog.String("worker_id", l.cfg.WorkerID), slog.Any("error", err))
			}
			nextBeat = clock.Now().Add(hb)
		}
		l.mu.Lock()
		l.refreshLocked(clock.Now())
		l.mu.Unlock()
	}
}

// watchEnded is Run's answer when a watch's channel closes. The watches
// share ctx, so cancellation closes them too, and select may see that
// before ctx.Done: that is a normal stop, not a failure.
func watchEnded(ctx context.Context, bucket string) error {
	if ctx.Err() == nil {
		return fmt.Errorf("ratelimit: %s watch ended", bucket)
	}
	return nil
}

// heartbeat renews this worker's entry; the fence moves on when the watch
// delivers it.
func (l *Limiter) heartbeat(ctx context.Context, hb time.Duration) error {
	sent := l.cfg.Clock.Now()
	v, err := json.Marshal(heartbeatValue{Worker: l.cfg.WorkerID, At: sent.UTC()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, hb)
	defer cancel()
	rev, err := l.cfg.Workers.Put(ctx, l.cfg.WorkerID, v)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.reg.stored(rev, sent)
	l.mu.Unlock()
	return nil
}

// onWorker applies one change of the workers bucket; it reports whether
// this worker's own entry was deleted.
func (l *Limiter) onWorker(e jetstream.KeyValueEntry) (selfDeleted bool) {
	now := l.cfg.Clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		l.reg.put(e.Key(), now)
		if e.Key() == l.cfg.WorkerID {
			l.reg.echoed(e.Revision())
		}
	} else {
		l.reg.remove(e.Key())
		selfDeleted = e.Key() == l.cfg.WorkerID
	}
	l.refreshLocked(now)
	return selfDeleted
}

// markSynced starts using shares once both buckets have been read.
func (l *Limiter) markSynced(ready bool) {
	if !ready {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.synced {
		return
	}
	l.synced = true
	l.refreshLocked(l.cfg.Clock.Now())
	l.wakeLocked()
}

// refreshLocked records the current view and applies the shares it allows.
func (l *Limiter) refreshLocked(now time.Time) {
	if l.synced {
		if v, changed := l.reg.record(now); changed {
			l.cfg.Logger.Info("live workers changed",
				slog.String("worker_id", l.cfg.WorkerID),
				slog.Int("live_workers", len(v.members)),
				slog.Bool("has_share", v.self))
		}
	}
	l.dropIdleLocked(now)
	l.applyLocked(now)
	l.prunePausesLocked(now)
}

// stop ends the limiter: no more tokens, blocked callers get ErrClosed, and
// the entry is deleted so the others take over the share.
func (l *Limiter) stop(ctx context.Context, registered bool) {
	l.mu.Lock()
	l.closed = true
	l.wakeLocked()
	l.mu.Unlock()
	if !registered {
		return
	}
	// ctx is usually cancelled by now (that is what stops Run):
	// deregistering gets its own deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := l.cfg.Workers.Delete(ctx, l.cfg.WorkerID); err != nil {
		l.cfg.Logger.Warn("rate limiter could not deregister; its entry expires with the bucket TTL",
			slog.String("worker_id", l.cfg.WorkerID), slog.Any("error", err))
	}
}
