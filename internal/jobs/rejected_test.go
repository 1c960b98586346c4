package jobs_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
)

// A rejected command's id is used: a valid command sent under it later
// runs nothing, and is answered with the rejection, as any re-sent id is
// with its result. One terminal event for the id.
func TestARejectedIDIsNotRunLater(t *testing.T) {
	t.Parallel()
	s := setup(t)
	rejections := corePublishes(t, s.nc, s.names.Event(phone, events.EventCommandRejected))
	s.startWorker(t)
	subject := s.names.Command(phone, events.CreateGroup)
	s.publishRaw(t, subject, "reused#1", []byte(`{"id":"reused","type":"create_group","phone_number_id":"`+phone+`","params":{}}`))
	wantOutcome(t, s.terminal(t, "reused"), events.OutcomeRejected)

	valid, _ := json.Marshal(command("reused", events.CreateGroup, "", events.CreateGroupParams{Subject: "Never made"}))
	s.publishRaw(t, subject, "reused#2", valid)
	s.events.WaitFor(t, "the rejection published again", func() bool { return len(rejections()) == 2 })
	s.waitCommandsConsumed(t)
	if n := s.calls(sim.EndpointCreateGroup); n != 0 {
		t.Errorf("%d create calls for an id already rejected, want none", n)
	}
	s.seenEveryEvent(t)
	if rs := s.events.Terminals("reused"); len(rs) != 1 || rs[0].Outcome != events.OutcomeRejected {
		t.Errorf("terminal events in the stream: %+v, want the one rejection", rs)
	}
}

// An invalid command under the id of a command being run is dropped: the
// running command's result is the id's one terminal event.
func TestAnInvalidCommandUnderARunningCommandsIDIsDropped(t *testing.T) {
	t.Parallel()
	s := setup(t)
	block := &blockingGraph{Graph: s.graph}
	_, stop := s.startWorker(t, func(c *jobs.Config) { c.Graph, c.ShutdownTimeout, c.WorkerID = block, 100*time.Millisecond, "holding" })
	g := s.newGroup(t, "Held", "")
	s.publish(t, command("taken", events.GetInviteLink, g.ID, nil))
	s.events.WaitFor(t, "the valid command's call under way", func() bool { return block.inflight.Load() == 1 })

	s.publishRaw(t, s.names.Command(phone, events.GetInviteLink), "taken#invalid",
		[]byte(`{"id":"taken","type":"get_invite_link","phone_number_id":"`+phone+`"}`))
	s.events.WaitFor(t, "the invalid command settled", func() bool {
		str, err := s.js.Stream(context.Background(), s.names.CommandStream())
		if err != nil {
			return false
		}
		info, err := str.Info(context.Background())
		return err == nil && info.State.Msgs == 1 // the valid one, still running
	})
	s.seenEveryEvent(t)
	if rs := s.events.Terminals("taken"); len(rs) != 0 {
		t.Fatalf("terminal events while the valid command runs: %+v, want none", rs)
	}
	stop()
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID = "finishing" })
	wantOutcome(t, s.terminal(t, "taken"), events.OutcomeSucceeded)
	s.waitCommandsConsumed(t)
	s.seenEveryEvent(t)
	if rs := s.events.Terminals("taken"); len(rs) != 1 {
		t.Errorf("terminal events: %+v, want only the valid command's", rs)
	}
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	if e, _, err := ledger.Get(context.Background(), "taken"); err != nil || e.State != jobs.StateSucceeded {
		t.Errorf("ledger entry %+v, %v; want succeeded", e.State, err)
	}
}

// seenEveryEvent waits until the test's event log has every event the
// event stream holds now.
func (s *stack) seenEveryEvent(t *testing.T) {
	t.Helper()
	str, err := s.js.Stream(context.Background(), s.names.EventStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.events.WaitFor(t, "every event in the stream seen", func() bool {
		return len(s.events.Filter(func(testutil.Event) bool { return true })) >= int(info.State.Msgs)
	})
}
