package jobs

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// parkOverbook is how much faster than the number's limit a worker books
// the commands it hands back to come back. Each worker books on its own,
// and its copies return to any worker: how many workers hand back, and
// how the returns spread over them, varies, so booking above the limit
// keeps every share busy; what comes back too early is parked again
// behind the rest.
const parkOverbook = 1.5

// parkings books the times this worker's parked commands come back, per
// number and limiter class, so a deep backlog returns at the pace its
// share can take instead of all at once. It also counts, per number and
// class, the commands admitted and not yet waiting in the limiter; a
// count that falls to zero is dropped, so numbers named once do not stay
// for the worker's life.
type parkings struct {
	mu       sync.Mutex
	next     map[parkKey]time.Time // the earliest free return time
	admitted map[parkKey]int64     // admitted, not yet at Wait; never 0
}

type parkKey struct {
	phone string
	class ratelimit.Class
}

func newParkings() *parkings {
	return &parkings{next: map[parkKey]time.Time{}, admitted: map[parkKey]int64{}}
}

// admit counts one more command of phone and class being admitted
// (handBack) and not at the limiter's Wait yet; ahead is how many were
// counted before it.
func (p *parkings) admit(phone string, class ratelimit.Class) (a *admission, ahead int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{phone, class}
	ahead = p.admitted[k]
	p.admitted[k] = ahead + 1
	return &admission{p: p, k: k}, ahead
}

// admission is one command counted by admit until it reaches Wait, its
// delivery ends, or the limiter refused it.
type admission struct {
	p    *parkings
	k    parkKey
	done atomic.Bool
}

// release uncounts the admission; it may be called more than once, and
// on nil.
func (a *admission) release() {
	if a == nil || !a.done.CompareAndSwap(false, true) {
		return
	}
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	if n := a.p.admitted[a.k] - 1; n > 0 {
		a.p.admitted[a.k] = n
	} else {
		delete(a.p.admitted, a.k)
	}
}

// book returns when a command the limiter refused until until comes back:
// the first free return time of phone and class from until on, which it
// takes. The next one comes one overbooked interval of limit (the
// number's calls per second across all workers) later. Bookings in the
// past are dropped as the map grows.
func (p *parkings) book(phone string, class ratelimit.Class, now, until time.Time, limit float64) time.Time {
	interval := time.Second
	if limit > 0 {
		interval = time.Duration(float64(time.Second) / (parkOverbook * limit))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{phone, class}
	at := until
	if next := p.next[k]; next.After(at) {
		at = next
	}
	p.next[k] = at.Add(interval)
	if len(p.next) > 4096 {
		for k, t := range p.next {
			if t.Before(now) {
				delete(p.next, k)
			}
		}
	}
	return at
}
