package testutil

import (
	"sync"
	"time"
)

// Clock is a time that moves only when a test moves it (Advance), so that
// what depends on time (leases, rate bounds, message windows) changes when
// the test says and not with the machine's speed. Goroutines may read it
// while the test moves it.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
