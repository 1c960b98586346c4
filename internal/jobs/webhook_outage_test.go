package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// Meta had its 200 and will not send a webhook again: while the event
// stream refuses writes for longer than a command's deliveries would last,
// the item waits, and its event is published once the stream is back.
func TestAWebhookItemOutlastsAnEventStreamOutage(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) { o.maxDeliv = 2 })
	s.startWorker(t)
	g := s.newGroup(t, "Outage", "")
	s.events.WaitFor(t, "group.created", func() bool { return len(s.events.OfType(events.EventGroupCreated)) > 0 })
	restore := s.refuseWrites(t, s.names.EventStream())
	if err := s.sim.Suspend(g.ID); err != nil {
		t.Fatal(err)
	}
	// Long enough for two deliveries (1 s apart) to fail: the old
	// consumer limit dropped the item after them.
	time.Sleep(2500 * time.Millisecond)
	restore()
	s.events.WaitFor(t, "group.suspended after the outage", func() bool {
		for _, e := range s.events.OfType(events.EventGroupSuspended) {
			var d struct {
				GroupID string `json:"group_id"`
			}
			if json.Unmarshal(e.Data, &d) == nil && d.GroupID == g.ID {
				return true
			}
		}
		return false
	})
}

// refuseWrites makes stream refuse every new message, as a stream that
// lost its leader or quorum does, until restore. It must hold a message
// already: the refusal is a cap at what it holds.
func (s *stack) refuseWrites(t testing.TB, stream string) (restore func()) {
	t.Helper()
	ctx := context.Background()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		t.Fatalf("stream %s is empty: a cap at what it holds would still take one message", stream)
	}
	normal := info.Config
	full := normal
	full.MaxMsgs, full.Discard = int64(info.State.Msgs), jetstream.DiscardNew
	if _, err := s.js.UpdateStream(ctx, full); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := s.js.UpdateStream(ctx, normal); err != nil {
			t.Fatal(err)
		}
	}
}
