package sim

import (
	"sync"
	"time"
)

// Call is one Graph API call as the simulator saw and answered it.
type Call struct {
	// Seq numbers calls from 1 in arrival order; it survives ResetCalls.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Endpoint names the operation ("create_group", "send_message", …;
	// "unknown" for paths the Graph API does not serve).
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`
	Path     string `json:"path"`
	Query    string `json:"query,omitempty"`
	// Body is the request body, cut at 4 KiB.
	Body string `json:"body,omitempty"`
	// Status is the HTTP status answered; 0 when no answer was written
	// (Fault is "timeout" or "lost_response").
	Status int `json:"status"`
	// Code is the Graph error code answered, 0 on success.
	Code int `json:"code,omitempty"`
	// Fault names the injected fault, if any.
	Fault    string        `json:"fault,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

const (
	callChunk   = 4096
	maxBodyLogs = 4096
)

// callLog keeps the last N calls in fixed-size chunks: appending never
// copies old entries, and dropping the oldest chunk is O(1). The lock is
// held only to place one entry.
type callLog struct {
	mu     sync.Mutex
	chunks [][]Call
	max    int // in chunks
	seq    uint64
}

func newCallLog(size int) *callLog {
	n := (size + callChunk - 1) / callChunk
	return &callLog{max: max(n, 1)}
}

func (l *callLog) add(c Call) {
	l.mu.Lock()
	l.seq++
	c.Seq = l.seq
	last := len(l.chunks) - 1
	if last < 0 || len(l.chunks[last]) == callChunk {
		if len(l.chunks) == l.max {
			copy(l.chunks, l.chunks[1:])
			l.chunks = l.chunks[:len(l.chunks)-1]
		}
		l.chunks = append(l.chunks, make([]Call, 0, callChunk))
		last = len(l.chunks) - 1
	}
	l.chunks[last] = append(l.chunks[last], c)
	l.mu.Unlock()
}

// since returns up to limit calls with Seq > after (limit <= 0: all).
func (l *callLog) since(after uint64, limit int) []Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Call
	for _, ch := range l.chunks {
		if len(ch) == 0 || ch[len(ch)-1].Seq <= after {
			continue
		}
		for _, c := range ch {
			if c.Seq <= after {
				continue
			}
			out = append(out, c)
			if limit > 0 && len(out) == limit {
				return out
			}
		}
	}
	return out
}

func (l *callLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ch := range l.chunks {
		n += len(ch)
	}
	return n
}

func (l *callLog) reset() {
	l.mu.Lock()
	l.chunks = nil
	l.mu.Unlock()
}

// Calls returns every remembered Graph call, oldest first.
func (s *Server) Calls() []Call { return s.calls.since(0, 0) }

// CallsSince returns up to limit calls with Seq greater than seq (limit <= 0:
// all), for polling the log without copying all of it.
func (s *Server) CallsSince(seq uint64, limit int) []Call { return s.calls.since(seq, limit) }

// ResetCalls forgets the remembered calls (sequence numbers keep growing).
func (s *Server) ResetCalls() { s.calls.reset() }
