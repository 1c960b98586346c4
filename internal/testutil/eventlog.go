package testutil

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// EventLog records every message of an event stream, in stream order,
// through a real ordered consumer, for tests to wait on and look through.
type EventLog struct {
	mu   sync.Mutex
	all  []Event
	wake chan struct{} // closed and replaced on every event
}

// Event is one recorded CloudEvent.
type Event struct {
	Subject string
	Header  nats.Header
	Type    string
	ID      string
	Data    json.RawMessage
	Seq     uint64 // stream sequence
	// Raw is the whole CloudEvent as published.
	Raw json.RawMessage
}

// WatchEvents records stream's events from its start until the test ends.
// A message that is not a CloudEvent fails the test.
func WatchEvents(t testing.TB, js jetstream.JetStream, stream string) *EventLog {
	t.Helper()
	l := &EventLog{wake: make(chan struct{})}
	cons, err := js.OrderedConsumer(context.Background(), stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Unmarshal(m.Data())
		if err != nil {
			t.Errorf("event on %s is not a CloudEvent: %v", m.Subject(), err)
			return
		}
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq = md.Sequence.Stream
		}
		l.mu.Lock()
		l.all = append(l.all, Event{Subject: m.Subject(), Header: m.Headers(), Type: ev.Type(), ID: ev.ID(), Data: ev.Data(), Seq: seq, Raw: m.Data()})
		close(l.wake)
		l.wake = make(chan struct{})
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return l
}

// Filter returns the events matching keep, in stream order.
func (l *EventLog) Filter(keep func(Event) bool) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.all {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// OfType returns the events of type typ.
func (l *EventLog) OfType(typ string) []Event {
	return l.Filter(func(e Event) bool { return e.Type == typ })
}

// Terminals returns the terminal events of a command, decoded.
func (l *EventLog) Terminals(commandID string) []events.CommandResult {
	var out []events.CommandResult
	for _, e := range l.Filter(func(e Event) bool { return events.IsTerminal(e.Type) }) {
		var r events.CommandResult
		if err := json.Unmarshal(e.Data, &r); err == nil && r.CommandID == commandID {
			out = append(out, r)
		}
	}
	return out
}

// Terminal waits for the first terminal event of a command and returns it
// with its decoded result.
func (l *EventLog) Terminal(t testing.TB, commandID string) (Event, events.CommandResult) {
	t.Helper()
	var ev Event
	var r events.CommandResult
	l.WaitFor(t, "terminal event of "+commandID, func() bool {
		for _, e := range l.Filter(func(e Event) bool { return events.IsTerminal(e.Type) }) {
			var cr events.CommandResult
			if json.Unmarshal(e.Data, &cr) == nil && cr.CommandID == commandID {
				ev, r = e, cr
				return true
			}
		}
		return false
	})
	return ev, r
}

// WaitFor waits until cond holds, failing the test after a generous bound:
// a guard against hangs, not a timing assertion. cond is checked on every
// event and at least every 50 ms. The bound leaves room for a command
// that sits out a throttle's 10 s pause (131208) and runs again, on a
// loaded 2-core CI machine with the race detector.
func (l *EventLog) WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(45 * time.Second)
	for {
		l.mu.Lock()
		wake := l.wake
		l.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-wake:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
