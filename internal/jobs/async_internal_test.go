package jobs

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/webhook"
)

// The worker that made a create's call links its request id; the webhook
// comes at once, and the worker it reached makes the command terminal and
// is about to publish the event. The first worker, checking whether the
// command is complete, finds it terminal with its event not out yet: it
// must leave the event to the other, not publish it (and make the group's
// cached reads stale) a second time. Should the other never publish, the
// sweeper does: nothing is lost.
func TestAnAwaitingCommandFinishedByItsWebhookIsPublishedByThatPathOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := embeddedJS(t)
	names := events.Names{}
	if err := events.Ensure(ctx, js, events.TopologyConfig{Names: names, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	s := sim.New(sim.Config{})
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); s.Close() })
	gc, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken})
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(ctx, Config{JS: js, Names: names, Graph: gc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}

	const id, phone = "raced-create", "106540352242922"
	cmd, _ := json.Marshal(events.Command{ID: id, Type: events.CreateGroup, PhoneNumberID: phone,
		Params: json.RawMessage(`{"subject":"Raced"}`)})
	if _, _, err := w.ledger.Claim(ctx, ClaimRequest{CommandID: id, CommandType: events.CreateGroup, PhoneNumberID: phone,
		Command: cmd, Token: "maker", Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	awaiting, err := w.ledger.Await(ctx, id, "maker", []Pending{{RequestID: "req-1"}}, time.Now().Add(time.Minute), Attempt{At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// The webhook's worker, between its compare-and-set and its publish.
	created, _ := json.Marshal(webhook.GroupEvent{Type: webhook.TypeGroupCreate, RequestID: "req-1", GroupID: "g-1", Subject: "Raced"})
	if _, err := w.ledger.Update(ctx, id, func(e *Entry) error {
		e.Pending[0].Done, e.Pending[0].Result = true, created
		return w.makeTerminal(e, false)
	}); err != nil {
		t.Fatal(err)
	}

	if err := w.linkPending(ctx, awaiting); err != nil {
		t.Fatalf("linkPending: %v", err)
	}
	if n := terminalEvents(t, js, names, phone); n != 0 {
		t.Fatalf("the worker that linked the request published %d terminal events of a command another worker finished, want 0", n)
	}

	if _, err := w.SweepOnce(ctx); err != nil {
		t.Fatalf("SweepOnce: %v", err)
	}
	if n := terminalEvents(t, js, names, phone); n != 1 {
		t.Fatalf("after a sweep: %d terminal events, want 1 (the event its maker never published)", n)
	}
	if e, _, err := w.ledger.Get(ctx, id); err != nil || e.Result == nil || !e.Result.Published {
		t.Errorf("after a sweep: entry %+v (%v), want its result marked published", e.Result, err)
	}
}

// terminalEvents counts the command.succeeded events of phone in the
// event stream.
func terminalEvents(t *testing.T, js jetstream.JetStream, names events.Names, phone string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), names.EventStream())
	if err != nil {
		t.Fatal(err)
	}
	subject := names.Event(phone, events.EventCommandSucceeded)
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}
