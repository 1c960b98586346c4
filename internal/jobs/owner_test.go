package jobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// otherPhone is a second business's number on the same deployment.
const otherPhone = "106540352242923"

// groupElsewhere creates a group for number in the simulator whose
// group_create webhook never reaches groupflow: a group made outside it
// (another tool, or a webhook still on its way), that no worker knows.
func (s *stack) groupElsewhere(t testing.TB, number, subject string) sim.GroupState {
	t.Helper()
	s.sim.SetWebhookURL("") // the simulator gives up on what it sends meanwhile
	defer s.sim.SetWebhookURL(s.hooksURL)
	if _, err := s.graph.CreateGroup(context.Background(), number, graph.CreateGroupRequest{Subject: subject}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	s.events.WaitFor(t, "the group's webhook dropped", func() bool { return s.sim.PendingWebhooks() == 0 })
	for _, n := range s.sim.State().Numbers {
		for _, g := range n.Groups {
			if n.PhoneNumberID == number && g.Subject == subject {
				return g
			}
		}
	}
	t.Fatalf("group %q of %s not in the simulator", subject, number)
	return sim.GroupState{}
}

// callsOn counts the simulator's calls of endpoint whose path names id.
func (s *stack) callsOn(endpoint, id string) int {
	n := 0
	for _, c := range s.sim.Calls() {
		if c.Endpoint == endpoint && (strings.Contains(c.Path, "/"+id+"/") || strings.HasSuffix(c.Path, "/"+id)) {
			n++
		}
	}
	return n
}

func TestGroupOwnership(t *testing.T) {
	t.Parallel()

	t.Run("a group created through groupflow needs no listing, in any worker", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		_, stop := s.startWorker(t)
		s.publish(t, command("own-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Ours"}))
		created := s.terminal(t, "own-create")
		wantOutcome(t, created, events.OutcomeSucceeded)
		s.publish(t, command("own-link", events.GetInviteLink, created.GroupID, nil))
		wantOutcome(t, s.terminal(t, "own-link"), events.OutcomeSucceeded)
		// A worker that has seen nothing reads the group's number from
		// the bucket.
		stop()
		s.startWorker(t)
		s.publish(t, command("own-delete", events.DeleteGroup, created.GroupID, nil))
		wantOutcome(t, s.terminal(t, "own-delete"), events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointListGroups); n != 0 {
			t.Fatalf("%d group listings, want none: the create's webhook said whose group it is", n)
		}
	})

	t.Run("a group created elsewhere is listed once, then known to every worker", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		g := s.groupElsewhere(t, phone, "Made elsewhere")
		_, stop := s.startWorker(t)
		for _, id := range []string{"elsewhere-1", "elsewhere-2"} {
			s.publish(t, command(id, events.GetInviteLink, g.ID, nil))
			wantOutcome(t, s.terminal(t, id), events.OutcomeSucceeded)
		}
		stop()
		s.startWorker(t)
		s.publish(t, command("elsewhere-3", events.ResetInviteLink, g.ID, nil))
		wantOutcome(t, s.terminal(t, "elsewhere-3"), events.OutcomeSucceeded)
		if n := s.callsOn(sim.EndpointListGroups, phone); n != 1 {
			t.Fatalf("%d listings of the number's groups, want 1 for three commands in two workers", n)
		}
	})

	t.Run("another number's group fails the command, and Graph is not asked to act on it", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		victim := s.groupElsewhere(t, phone, "Not yours")
		s.startWorker(t)
		steal := command("steal-1", events.DeleteGroup, victim.ID, nil)
		steal.PhoneNumberID = otherPhone
		s.publish(t, steal)
		r := s.terminal(t, "steal-1")
		wantFailure(t, r, events.ReasonGroupNotOwned)
		if r.Error.Code != 0 {
			t.Errorf("error %+v carries a Graph code, but Graph was not asked", r.Error)
		}
		if st, _ := s.sim.Group(victim.ID); st.Deleted {
			t.Fatal("another number's command deleted the group")
		}
		if n := s.callsOn(sim.EndpointDeleteGroup, victim.ID); n != 0 {
			t.Fatalf("%d delete calls on the group, want none", n)
		}
		if n := s.callsOn(sim.EndpointListGroups, otherPhone); n != 1 {
			t.Fatalf("%d listings of the commanding number's groups, want 1 (the group was known nowhere)", n)
		}

		// Its own number's command learns whose group it is; the other
		// number's next command fails without a listing.
		s.publish(t, command("own-link", events.GetInviteLink, victim.ID, nil))
		wantOutcome(t, s.terminal(t, "own-link"), events.OutcomeSucceeded)
		steal = command("steal-2", events.GetInviteLink, victim.ID, nil)
		steal.PhoneNumberID = otherPhone
		s.publish(t, steal)
		wantFailure(t, s.terminal(t, "steal-2"), events.ReasonGroupNotOwned)
		if n := s.callsOn(sim.EndpointListGroups, otherPhone); n != 1 {
			t.Fatalf("%d listings of the commanding number's groups, want still 1: the group is known as another's", n)
		}
		if n := s.callsOn(sim.EndpointGetInviteLink, victim.ID); n != 1 {
			t.Fatalf("%d invite link reads of the group, want 1 (its own number's)", n)
		}
	})

	t.Run("a group that is no group fails as not the number's", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		s.publish(t, command("no-group", events.GetInviteLink, "120363999999999999", nil))
		r := s.terminal(t, "no-group")
		wantFailure(t, r, events.ReasonGroupNotOwned)
		if n := s.calls(sim.EndpointGetInviteLink); n != 0 {
			t.Fatalf("%d invite link calls, want none", n)
		}
	})

	t.Run("a suspended group's webhook tells whose it is", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		g := s.groupElsewhere(t, phone, "Suspended")
		s.startWorker(t)
		if err := s.sim.Suspend(g.ID); err != nil {
			t.Fatal(err)
		}
		s.events.WaitFor(t, "group.suspended", func() bool { return len(s.events.OfType(events.EventGroupSuspended)) == 1 })
		s.publish(t, command("suspended-reset", events.ResetInviteLink, g.ID, nil))
		r := s.terminal(t, "suspended-reset")
		wantFailure(t, r, events.ReasonPermanentError)
		if r.Error.Code != 131207 {
			t.Fatalf("error %+v, want Graph's 131207 (group suspended): the group is the number's", r.Error)
		}
		if n := s.calls(sim.EndpointListGroups); n != 0 {
			t.Fatalf("%d group listings, want none", n)
		}
	})

	t.Run("Graph down while verifying delays the command and does not fail it", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.maxDeliv = 10 })
		g := s.groupElsewhere(t, phone, "Verified late")
		if err := s.sim.SetFaults(sim.Faults{Status5xx: 1, Endpoints: []string{sim.EndpointListGroups}}); err != nil {
			t.Fatal(err)
		}
		s.startWorker(t)
		s.publish(t, command("late", events.GetInviteLink, g.ID, nil))
		ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
		s.events.WaitFor(t, "a delivery failed on the listing", func() bool {
			e, _, err := ledger.Get(context.Background(), "late")
			return err == nil && len(e.Attempts) > 0
		})
		if got := s.events.Terminals("late"); len(got) != 0 {
			t.Fatalf("terminal event %+v while Graph could not list the groups, want none yet", got[0])
		}
		if n := s.calls(sim.EndpointGetInviteLink); n != 0 {
			t.Fatalf("%d invite link calls before the group was verified, want none", n)
		}
		if err := s.sim.SetFaults(sim.Faults{}); err != nil {
			t.Fatal(err)
		}
		r := s.terminal(t, "late")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if r.Attempts < 2 {
			t.Fatalf("attempts = %d, want the failed delivery and the one that succeeded", r.Attempts)
		}
	})
}

func TestCampaignGroupOwnership(t *testing.T) {
	t.Parallel()

	t.Run("a campaign naming another number's group fails before any invite", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 1)
		s.startWorker(t)
		other := s.groupElsewhere(t, otherPhone, "Another business")
		invites := append(invitesFor(3, groups), events.Invite{To: recipient(3), GroupID: other.ID})
		startCampaign(t, s, "start-foreign", events.StartInviteCampaignParams{CampaignID: "foreign", Template: inviteTemplate, Invites: invites})
		r := s.terminal(t, "start-foreign")
		wantFailure(t, r, events.ReasonGroupNotOwned)
		if n := s.calls(sim.EndpointSendMessage); n != 0 {
			t.Fatalf("%d invites sent, want none", n)
		}
		if _, err := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "foreign"); !errors.Is(err, jobs.ErrNotFound) {
			t.Fatalf("campaign entry: %v, want none", err)
		}
	})

	t.Run("another number's campaign is not described through this one", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 1)
		s.startWorker(t)
		startCampaign(t, s, "start-theirs", events.StartInviteCampaignParams{CampaignID: "theirs", Template: inviteTemplate, Invites: invitesFor(3, groups)})
		s.completed(t, "theirs", 2*time.Minute)
		cancel := command("cancel-theirs", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "theirs"})
		cancel.PhoneNumberID = otherPhone
		start := command("start-theirs-too", events.StartInviteCampaign, "",
			events.StartInviteCampaignParams{CampaignID: "theirs", Template: inviteTemplate, Invites: invitesFor(1, groups)})
		start.PhoneNumberID = otherPhone
		for _, c := range []events.Command{cancel, start} {
			s.publish(t, c)
			r := s.terminal(t, c.ID)
			wantFailure(t, r, events.ReasonPermanentError)
			// A business learns nothing of another's: not its number, not
			// its command ids.
			if strings.Contains(r.Error.Message, phone) || strings.Contains(r.Error.Message, "start-theirs") {
				t.Errorf("%s through %s: %q names the campaign's number or command", c.Type, otherPhone, r.Error.Message)
			}
		}
	})

	t.Run("a campaign's groups are listed once for all its invites", func(t *testing.T) {
		t.Parallel()
		s, _ := campaignStack(t, 0)
		groups := []sim.GroupState{s.groupElsewhere(t, phone, "Elsewhere A"), s.groupElsewhere(t, phone, "Elsewhere B")}
		s.startWorker(t)
		invites := invitesFor(20, groups)
		startCampaign(t, s, "start-listed", events.StartInviteCampaignParams{CampaignID: "listed", Template: inviteTemplate, Invites: invites})
		done := s.completed(t, "listed", 2*time.Minute)
		if done.Counts.Sent != len(invites) {
			t.Fatalf("counts %+v, want every invite sent", done.Counts)
		}
		if n := s.calls(sim.EndpointListGroups); n != 1 {
			t.Fatalf("%d group listings for a campaign of %d invites to 2 groups, want 1", n, len(invites))
		}
	})
}
