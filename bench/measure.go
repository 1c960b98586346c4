package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// Terminals records the arrival of terminal events as core NATS delivers
// them: the timing source of the throughput and latency figures. (Chaos
// checks read the event stream itself.)
type Terminals struct {
	sub *nats.Subscription

	mu    sync.Mutex
	first map[string]time.Time // command id → first arrival
	times []time.Time          // every arrival, in order
	wake  chan struct{}
}

// WatchTerminals subscribes to every terminal event.
func (s *Stack) WatchTerminals() (*Terminals, error) {
	t := &Terminals{first: map[string]time.Time{}, wake: make(chan struct{})}
	sub, err := s.NC.Subscribe(s.TerminalSubject(), func(m *nats.Msg) {
		now := time.Now()
		var ev struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		id := strings.TrimSuffix(ev.ID, ":terminal")
		t.mu.Lock()
		if _, seen := t.first[id]; !seen {
			t.first[id] = now
		}
		t.times = append(t.times, now)
		close(t.wake)
		t.wake = make(chan struct{})
		t.mu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	// A burst of thousands of events must not be dropped as a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)
	if err := s.NC.Flush(); err != nil {
		return nil, err
	}
	t.sub = sub
	return t, nil
}

// Stop unsubscribes.
func (t *Terminals) Stop() { _ = t.sub.Unsubscribe() }

// Distinct is the number of command ids with a terminal event.
func (t *Terminals) Distinct() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.first)
}

// At returns when the command's first terminal event arrived.
func (t *Terminals) At(id string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.first[id]
	return at, ok
}

// Times returns the first arrival of each command id in ids, sorted.
func (t *Terminals) Times(ids []string) []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Time, 0, len(ids))
	for _, id := range ids {
		if at, ok := t.first[id]; ok {
			out = append(out, at)
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

// WaitIDs waits until every id has a terminal event, or ctx ends.
func (t *Terminals) WaitIDs(ctx context.Context, ids []string) error {
	for {
		t.mu.Lock()
		missing := 0
		for _, id := range ids {
			if _, ok := t.first[id]; !ok {
				missing++
			}
		}
		wake := t.wake
		t.mu.Unlock()
		if missing == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d commands without a terminal event: %w", missing, len(ids), ctx.Err())
		case <-wake:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Percentile returns the nearest-rank p-quantile (0 < p ≤ 1) of sorted.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Ms converts a duration to float milliseconds.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// SteadyRate is the completion rate between the lo and hi fractions of
// sorted completion times (e.g. 0.1 and 0.9): start-up and the tail of the
// last stragglers are left out.
func SteadyRate(sorted []time.Time, lo, hi float64) float64 {
	n := len(sorted)
	if n < 2 {
		return 0
	}
	i, j := int(lo*float64(n-1)), int(hi*float64(n-1))
	if j <= i {
		i, j = 0, n-1
	}
	span := sorted[j].Sub(sorted[i]).Seconds()
	if span <= 0 {
		return 0
	}
	return float64(j-i) / span
}

// MaxInWindow is the largest number of sorted times within any window of
// length w (half-open: [t, t+w)).
func MaxInWindow(sorted []time.Time, w time.Duration) int {
	best, j := 0, 0
	for i := range sorted {
		for j < len(sorted) && sorted[j].Sub(sorted[i]) < w {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// Bins counts sorted times in consecutive bins of width w from start.
func Bins(sorted []time.Time, start time.Time, w time.Duration) []int {
	if len(sorted) == 0 {
		return nil
	}
	n := int(sorted[len(sorted)-1].Sub(start)/w) + 1
	out := make([]int, n)
	for _, t := range sorted {
		if i := int(t.Sub(start) / w); i >= 0 && i < n {
			out[i]++
		}
	}
	return out
}

// StreamMsg is one stored message read back by ScanStream.
type StreamMsg struct {
	Subject string
	Seq     uint64
	MsgID   string
	Data    []byte
}

// ScanStream reads every message of stream (optionally only subject),
// in order, up to the stream's last sequence at the time of the call.
func (s *Stack) ScanStream(ctx context.Context, stream, subject string, fn func(StreamMsg)) error {
	st, err := s.JS.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info := st.CachedInfo()
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil
	}
	if info.Config.Retention == jetstream.WorkQueuePolicy {
		// A work queue refuses a second consumer: read message by message.
		for seq := info.State.FirstSeq; seq <= last; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if subject != "" && m.Subject != subject {
				continue
			}
			fn(StreamMsg{Subject: m.Subject, Seq: m.Sequence, MsgID: m.Header.Get(jetstream.MsgIDHeader), Data: m.Data})
		}
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if subject != "" {
		cfg.FilterSubjects = []string{subject}
	}
	cons, err := s.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			fn(StreamMsg{Subject: m.Subject(), Seq: md.Sequence.Stream, MsgID: m.Headers().Get(jetstream.MsgIDHeader), Data: m.Data()})
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			return nil // nothing more matches the filter
		}
	}
}

// TerminalRecord is one terminal event read from the event stream.
type TerminalRecord struct {
	Seq    uint64
	Type   string
	ID     string
	Result events.CommandResult
}

// ReadTerminals returns the terminal events in the event stream by command id.
func (s *Stack) ReadTerminals(ctx context.Context) (map[string][]TerminalRecord, error) {
	out := map[string][]TerminalRecord{}
	var bad error
	err := s.ScanStream(ctx, s.Names.EventStream(), s.TerminalSubject(), func(m StreamMsg) {
		ev, err := events.Unmarshal(m.Data)
		if err != nil {
			bad = fmt.Errorf("event %d is not a CloudEvent: %w", m.Seq, err)
			return
		}
		var cr events.CommandResult
		if err := json.Unmarshal(ev.Data(), &cr); err != nil {
			bad = fmt.Errorf("event %d: %w", m.Seq, err)
			return
		}
		out[cr.CommandID] = append(out[cr.CommandID], TerminalRecord{Seq: m.Seq, Type: ev.Type(), ID: ev.ID(), Result: cr})
	})
	if err == nil {
		err = bad
	}
	return out, err
}

func sortDurations(d []time.Duration) { slices.Sort(d) }
