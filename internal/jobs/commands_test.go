package jobs_test

import (
	"encoding/json"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestCreateGroupCompletesThroughItsWebhook(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)

	s.publish(t, command("create-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Watch club"}))
	r := s.terminal(t, "create-1")
	if r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("outcome = %s (%+v), want succeeded", r.Outcome, r.Error)
	}
	var res events.CreateGroupResult
	if err := json.Unmarshal(r.Result, &res); err != nil || res.GroupID == "" || res.InviteLink == "" || res.RequestID == "" {
		t.Fatalf("result = %s, want group id, invite link and request id", r.Result)
	}
	if g, ok := s.sim.Group(res.GroupID); !ok || g.Subject != "Watch club" {
		t.Fatalf("simulator group %s = %+v, %v; want subject Watch club", res.GroupID, g, ok)
	}
	created := s.events.filter(func(r recorded) bool { return r.Type == events.EventGroupCreated })
	if len(created) != 1 {
		t.Fatalf("%d group.created events, want 1", len(created))
	}
	var gc events.GroupCreated
	_ = json.Unmarshal(created[0].Data, &gc)
	if gc.CommandID != "create-1" && gc.CommandID != "" {
		t.Errorf("group.created names command %q", gc.CommandID)
	}
	_ = sim.DefaultWABAID
}
