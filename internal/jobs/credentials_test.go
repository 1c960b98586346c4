package jobs_test

import (
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// Graph refusing the worker's access token (code 190) is the worker's
// fault, not the commands': they wait, are not failed, and the refused
// token is tried once per CredentialsWait rather than by every command.
// Once the token works again, they all go through.
func TestARefusedAccessTokenMakesCommandsWaitNotFail(t *testing.T) {
	t.Parallel()
	s := setup(t)
	w, _ := s.startWorker(t, func(c *jobs.Config) { c.CredentialsWait = 700 * time.Millisecond })
	g := s.newGroup(t, "Token", "")
	s.sim.SetAccessToken("rotated-in-business-settings")

	ids := []string{"tok-1", "tok-2", "tok-3", "tok-4", "tok-5"}
	for _, id := range ids {
		s.publish(t, command(id, events.GetInviteLink, g.ID, nil))
	}
	deadline := time.Now().Add(10 * time.Second)
	for !w.CredentialsRefused() {
		if time.Now().After(deadline) {
			t.Fatal("the worker never noticed Graph refusing its token")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Refused calls happen only as probes now: a handful at first (the
	// commands already past the gate), then about one per wait.
	time.Sleep(2 * time.Second)
	refused := s.calls(sim.EndpointGetInviteLink)
	if limit := len(ids) + 4; refused > limit {
		t.Errorf("%d calls with the refused token in 2 s, want at most %d: every command kept trying it", refused, limit)
	}
	for _, id := range ids {
		if len(s.events.Terminals(id)) > 0 {
			t.Fatalf("command %s ended while the token was refused; it should wait", id)
		}
	}

	// A command whose deadline passes meanwhile expires; it is not held
	// for a token it will never use.
	late := command("tok-late", events.GetInviteLink, g.ID, nil)
	deadlineAt := time.Now().Add(300 * time.Millisecond)
	late.Deadline = &deadlineAt
	s.publish(t, late)
	if r := s.terminal(t, "tok-late"); r.Outcome != events.OutcomeFailed || r.Error == nil || r.Error.Reason != events.ReasonExpired {
		t.Fatalf("command past its deadline while the token is refused: %s %+v, want failed, expired", r.Outcome, r.Error)
	}

	s.sim.SetAccessToken(sim.DefaultAccessToken)
	for _, id := range ids {
		wantOutcome(t, s.terminal(t, id), events.OutcomeSucceeded)
	}
	if w.CredentialsRefused() {
		t.Error("the worker still reports the token refused after calls went through")
	}
}
