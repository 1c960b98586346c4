package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// A removal whose answer was lost had removed the participants: the repeat
// (removal is safe to repeat) is answered, in its webhook, "not in group"
// (131212) for each. They are reported removed, not failed.
func TestALostRemovalAnswerStillReportsTheRemoval(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointRemoveParticipant}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Lost removal", "")
	s.members(t, g, "15550000301", "15550000302")
	s.publish(t, command("rm-lost", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000301", "15550000302"}}))
	r := s.terminal(t, "rm-lost")
	if n := s.calls(sim.EndpointRemoveParticipant); n != 2 {
		t.Fatalf("%d removal calls, want 2 (the lost one and its repeat)", n)
	}
	if st, _ := s.sim.Group(g.ID); len(st.Participants) != 0 {
		t.Fatalf("participants left: %v", st.Participants)
	}
	wantOutcome(t, r, events.OutcomeSucceeded)
	for _, it := range r.Items {
		if it.Outcome != events.ItemRemoved {
			t.Errorf("participant %s: %s (code %d), want removed", it.ID, it.Outcome, it.Code)
		}
	}
}

// A throttled removal did nothing: when its repeat finds a participant not
// in the group, that is reported as it is (131212), not as removed.
func TestAStrangerIsNotReportedRemovedAfterAThrottle(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Throttle: 1, Limit: 1, ThrottleRetryAfter: time.Second, Endpoints: []string{sim.EndpointRemoveParticipant}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Stranger", "")
	s.members(t, g, "15550000311")
	s.publish(t, command("rm-stranger", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000311", "15550000312"}}))
	r := s.terminal(t, "rm-stranger")
	if n := s.calls(sim.EndpointRemoveParticipant); n != 2 {
		t.Fatalf("%d removal calls, want 2 (throttled, then repeated)", n)
	}
	wantOutcome(t, r, events.OutcomePartiallySucceeded)
	got := map[string]events.ItemOutcome{}
	for _, it := range r.Items {
		got[it.ID] = it
	}
	if it := got["15550000311"]; it.Outcome != events.ItemRemoved {
		t.Errorf("member: %+v, want removed", it)
	}
	if it := got["15550000312"]; it.Outcome != events.ItemFailed || it.Code != 131212 {
		t.Errorf("stranger: %+v, want failed with 131212", it)
	}
}

// A removal whose answer is lost, and whose in-process retry is then
// throttled: the throttle says nothing about the lost try, so the next
// delivery's 131212 still means "removed".
func TestALostRemovalRetriedIntoAThrottleStillReportsTheRemoval(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointRemoveParticipant}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Lost then throttled", "")
	s.members(t, g, "15550000901", "15550000902")
	s.publish(t, command("rm-lost-thr", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000901", "15550000902"}}))
	s.waitForCall(t, sim.EndpointRemoveParticipant)
	if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: 131208, ThrottleRetryAfter: time.Second, Endpoints: []string{sim.EndpointRemoveParticipant}}); err != nil {
		t.Fatal(err)
	}
	r := s.terminal(t, "rm-lost-thr")
	t.Logf("calls %d, outcome %s", s.calls(sim.EndpointRemoveParticipant), r.Outcome)
	if st, _ := s.sim.Group(g.ID); len(st.Participants) != 0 {
		t.Fatalf("participants left: %v", st.Participants)
	}
	for _, it := range r.Items {
		if it.Outcome != events.ItemRemoved {
			t.Errorf("participant %s: %s (code %d), want removed", it.ID, it.Outcome, it.Code)
		}
	}
}

// The lost removal's delivery ends "ambiguous" (5xx on every retry); a
// later delivery is throttled. The delivery after that still counts
// 131212 as removed: not only the last attempt is looked at.
func TestALostRemovalIsRememberedPastAThrottledDelivery(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointRemoveParticipant}}
	})
	s.startWorker(t, func(c *jobs.Config) { c.RetryMaxElapsed = 100 * time.Millisecond })
	g := s.newGroup(t, "Ambiguous then throttled", "")
	s.members(t, g, "15550000911", "15550000912")
	s.publish(t, command("rm-amb-thr", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000911", "15550000912"}}))
	s.waitForCall(t, sim.EndpointRemoveParticipant)
	if err := s.sim.SetFaults(sim.Faults{Status5xx: 1, Endpoints: []string{sim.EndpointRemoveParticipant}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: 131208, ThrottleRetryAfter: time.Second, Endpoints: []string{sim.EndpointRemoveParticipant}}); err != nil {
		t.Fatal(err)
	}
	r := s.terminal(t, "rm-amb-thr")
	t.Logf("calls %d, outcome %s", s.calls(sim.EndpointRemoveParticipant), r.Outcome)
	for _, it := range r.Items {
		if it.Outcome != events.ItemRemoved {
			t.Errorf("participant %s: %s (code %d), want removed", it.ID, it.Outcome, it.Code)
		}
	}
}

// A removal's webhook reports one participant failed with a transient
// code (131000) beside the others removed: the command runs again for that
// participant only, and ends with every participant removed, each once.
func TestARemovalRetriesOnlyTheParticipantsItsWebhookFailedTransiently(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "Transient removal", "")
	members := []string{"15550000921", "15550000922", "15550000923"}
	s.members(t, g, members...)
	if err := s.sim.SetFaults(sim.Faults{AsyncParticipantFailure: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("rm-transient", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: members}))
	r := s.terminal(t, "rm-transient")
	var bodies []string
	for _, c := range s.sim.Calls() {
		if c.Endpoint == sim.EndpointRemoveParticipant {
			bodies = append(bodies, c.Body)
		}
	}
	if len(bodies) != 2 {
		t.Fatalf("%d removal calls, want 2 (the first and one for the participant that failed): %q", len(bodies), bodies)
	}
	for _, m := range members[1:] {
		if strings.Contains(bodies[1], m) {
			t.Errorf("the second call names %s, removed by the first: %s", m, bodies[1])
		}
	}
	if st, _ := s.sim.Group(g.ID); len(st.Participants) != 0 {
		t.Fatalf("participants left: %v", st.Participants)
	}
	wantOutcome(t, r, events.OutcomeSucceeded)
	if len(r.Items) != len(members) {
		t.Fatalf("items = %+v, want one per participant", r.Items)
	}
	for i, it := range r.Items {
		if it.ID != members[i] || it.Outcome != events.ItemRemoved {
			t.Errorf("item %d: %+v, want %s removed", i, it, members[i])
		}
	}
}

// A removal whose webhook fails every participant transiently, every run:
// after its runs (MaxDeliver) it ends with each participant's outcome,
// not in the dead-letter queue.
func TestARemovalFailingTransientlyEveryRunEndsWithItsOutcomes(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "Doomed removal", "")
	members := []string{"15550000931", "15550000932"}
	s.members(t, g, members...)
	if err := s.sim.SetFaults(sim.Faults{AsyncParticipantFailure: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("rm-doomed", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: members}))
	r := s.terminal(t, "rm-doomed")
	if n := s.calls(sim.EndpointRemoveParticipant); n != 4 {
		t.Fatalf("%d removal calls, want 4 (MaxDeliver)", n)
	}
	wantOutcome(t, r, events.OutcomeFailed)
	if len(r.Items) != len(members) {
		t.Fatalf("items = %+v, want one per participant", r.Items)
	}
	for i, it := range r.Items {
		if it.ID != members[i] || it.Outcome != events.ItemFailed || it.Code != 131000 {
			t.Errorf("item %d: %+v, want %s failed with 131000", i, it, members[i])
		}
	}
}

// A removal whose answer was lost is repeated unsure; the repeat's webhook
// fails a participant transiently. The run for that participant is still
// unsure: its "not in group" (131212) means the lost call removed them.
func TestARemovalRunAgainAfterALostAnswerStaysUnsure(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointRemoveParticipant}}
	})
	s.startWorker(t)
	g := s.newGroup(t, "Lost then transient", "")
	members := []string{"15550000941", "15550000942"}
	s.members(t, g, members...)
	s.publish(t, command("rm-lost-transient", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: members}))
	s.waitForCall(t, sim.EndpointRemoveParticipant)
	if err := s.sim.SetFaults(sim.Faults{AsyncParticipantFailure: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	r := s.terminal(t, "rm-lost-transient")
	if n := s.calls(sim.EndpointRemoveParticipant); n != 3 {
		t.Fatalf("%d removal calls, want 3 (lost, repeated, run again for one)", n)
	}
	wantOutcome(t, r, events.OutcomeSucceeded)
	for _, it := range r.Items {
		if it.Outcome != events.ItemRemoved {
			t.Errorf("participant %s: %s (code %d), want removed", it.ID, it.Outcome, it.Code)
		}
	}
}
