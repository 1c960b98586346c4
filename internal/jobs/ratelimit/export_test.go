package ratelimit

// Tracked is how many numbers and classes the limiter holds state for.
func (l *Limiter) Tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
