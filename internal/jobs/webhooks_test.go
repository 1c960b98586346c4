package jobs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/testutil"
)

func TestWebhooksBecomeDomainEventsOnceEach(t *testing.T) {
	t.Parallel()
	// Every webhook delivered twice: each fact must still be one event.
	// Webhooks come 300 ms after their call, so the worker has linked
	// dom-rm's request before its webhook arrives and the removal event
	// names the command. (A webhook that beats the link completes the
	// command all the same, but its domain event, published on arrival,
	// cannot name it: TestWebhookBeforeResponse. With 5 ms, a loaded CI
	// machine lost that race.)
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{WebhookDuplicate: 1}
		o.sim.WebhookDelay = 300 * time.Millisecond
	})
	s.startWorker(t)

	open := s.newGroup(t, "Open group", "")
	s.members(t, open, "15550000501", "15550000502")
	if err := s.sim.Leave("15550000502", open.ID); err != nil {
		t.Fatal(err)
	}
	closed := s.newGroup(t, "Closed group", graph.JoinApprovalRequired)
	req := s.joinRequests(t, closed, "15550000503")
	if err := s.sim.RevokeJoinRequest(req[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.Suspend(open.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.Unsuspend(open.ID); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("dom-rm", events.RemoveParticipants, open.ID, events.RemoveParticipantsParams{Participants: []string{"15550000501"}}))
	s.publish(t, command("dom-set", events.UpdateGroupSettings, closed.ID, events.UpdateGroupSettingsParams{Description: ptr("Members only")}))
	wantOutcome(t, s.terminal(t, "dom-rm"), events.OutcomeSucceeded)
	wantOutcome(t, s.terminal(t, "dom-set"), events.OutcomeSucceeded)

	want := map[string]int{
		events.EventGroupCreated:             2,
		events.EventGroupParticipantsJoined:  2,
		events.EventGroupParticipantLeft:     1,
		events.EventGroupJoinRequestCreated:  1,
		events.EventGroupJoinRequestRevoked:  1,
		events.EventGroupSuspended:           1,
		events.EventGroupSuspensionCleared:   1,
		events.EventGroupParticipantsRemoved: 1,
		events.EventGroupSettingsUpdated:     1,
	}
	count := func() map[string]int {
		got := map[string]int{}
		for _, r := range s.events.Filter(func(testutil.Event) bool { return true }) {
			got[r.Type]++
		}
		return got
	}
	s.events.WaitFor(t, "every domain event", func() bool {
		got := count()
		for typ, n := range want {
			if got[typ] < n {
				return false
			}
		}
		return true
	})
	// Let the duplicates arrive, and the worker process them.
	s.events.WaitFor(t, "the simulator's webhooks delivered", func() bool { return s.sim.PendingWebhooks() == 0 })
	time.Sleep(100 * time.Millisecond)
	got := count()
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%d %s events, want %d", got[typ], typ, n)
		}
	}

	var removed events.ParticipantsRemoved
	for _, r := range s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventGroupParticipantsRemoved }) {
		_ = json.Unmarshal(r.Data, &removed)
	}
	if removed.CommandID != "dom-rm" || removed.GroupID != open.ID || len(removed.Removed) != 1 {
		t.Errorf("group.participants_removed = %+v, want dom-rm's removal of one participant", removed)
	}
	var left events.ParticipantLeft
	for _, r := range s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventGroupParticipantLeft }) {
		_ = json.Unmarshal(r.Data, &left)
	}
	if left.Participant.WAID != "15550000502" {
		t.Errorf("group.participant_left = %+v, want 15550000502", left)
	}
}
