package e2e

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// A command re-sent over HTTP once it is done is a duplicate (200), and
// its stored result is published again, as for a re-send over NATS, so a
// caller that missed the event gets it: without a second Graph call, and
// well inside the stream's duplicate window, which would drop the copy if
// it went under the command's own id.
func TestAFinishedCommandReSentOverHTTPRepublishesItsResult(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	tok := s.opts.secrets.APIToken
	create := command("resend-group", events.CreateGroup, "", events.CreateGroupParams{Subject: "Resent"})
	if code, body := s.post(t, create, tok); code != http.StatusAccepted {
		t.Fatalf("POST create_group = %d %s", code, body)
	}
	_, created := s.events.Terminal(t, "resend-group")
	if created.Outcome != events.OutcomeSucceeded {
		t.Fatalf("create_group: %q %+v", created.Outcome, created.Error)
	}

	var seen atomic.Int64
	sub, err := s.nc.Subscribe(s.names.Event(phone, events.EventCommandSucceeded), func(m *nats.Msg) {
		var ev struct {
			Data events.CommandResult `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) == nil && ev.Data.CommandID == "resend-group" && ev.Data.GroupID == created.GroupID {
			seen.Add(1)
		}
	})
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	must(t, s.nc.Flush())

	code, body := s.post(t, create, tok)
	var got struct{ ID, Status string }
	_ = json.Unmarshal(body, &got)
	if code != http.StatusOK || got.ID != "resend-group" || got.Status != "duplicate" {
		t.Fatalf("re-POST = %d %s, want 200 duplicate", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for seen.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the re-sent command's result was not published again")
		}
		time.Sleep(20 * time.Millisecond)
	}
	creates := 0
	for _, c := range s.sim.Calls() {
		if c.Endpoint == sim.EndpointCreateGroup {
			creates++
		}
	}
	if creates != 1 {
		t.Fatalf("%d create_group calls, want 1", creates)
	}
}
