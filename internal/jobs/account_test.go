package jobs_test

import (
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// otherWABA is otherPhone's WhatsApp Business Account: another business's.
const otherWABA = "100000000000002"

// templateCallsOn counts the simulator's template reads and writes on waba.
func (s *stack) templateCallsOn(waba string) int {
	return s.callsOn(sim.EndpointListTemplates, waba) + s.callsOn(sim.EndpointCreateTemplate, waba)
}

func TestEnsureInviteTemplateAccount(t *testing.T) {
	t.Parallel()
	tpl := events.EnsureInviteTemplateParams{WABAID: sim.DefaultWABAID, Name: "my_group_invite", Language: "en"}

	t.Run("another business's account fails the command, and Graph is asked nothing of its templates", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		acc := ratelimit.NewAccounts(nil)
		s.startWorker(t, func(c *jobs.Config) { c.Accounts = acc })
		steal := command("steal-tpl-1", events.EnsureInviteTemplate, "", tpl)
		steal.PhoneNumberID = otherPhone
		s.publish(t, steal)
		r := s.terminal(t, "steal-tpl-1")
		wantFailure(t, r, events.ReasonAccountNotOwned)
		if r.Error.Code != 0 {
			t.Errorf("error %+v carries a Graph code, but Graph was asked nothing of the account's templates", r.Error)
		}
		if n := s.templateCallsOn(sim.DefaultWABAID); n != 0 {
			t.Fatalf("%d template calls on another business's account, want none", n)
		}
		if n := len(s.sim.State().Templates); n != 0 {
			t.Fatalf("%d templates in the account, want none", n)
		}
		if n := s.callsOn(sim.EndpointPhoneNumbers, sim.DefaultWABAID); n != 1 {
			t.Fatalf("%d listings of the account's numbers, want 1 (the number's account was known nowhere)", n)
		}
		if got := acc.Of(phone); got != sim.DefaultWABAID {
			t.Errorf("the listing did not teach whose number %s is: %q, want %s", phone, got, sim.DefaultWABAID)
		}

		// Once a webhook of its own number names its account, the command
		// fails with no listing. (A number not listed is not remembered
		// as any account's: until then each command lists again.)
		create := command("other-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Theirs"})
		create.PhoneNumberID = otherPhone
		s.publish(t, create)
		wantOutcome(t, s.terminal(t, "other-create"), events.OutcomeSucceeded)
		if got := acc.Of(otherPhone); got != otherWABA {
			t.Fatalf("account of %s after its webhook: %q, want %s", otherPhone, got, otherWABA)
		}
		steal = command("steal-tpl-2", events.EnsureInviteTemplate, "", tpl)
		steal.PhoneNumberID = otherPhone
		s.publish(t, steal)
		wantFailure(t, s.terminal(t, "steal-tpl-2"), events.ReasonAccountNotOwned)
		if n := s.callsOn(sim.EndpointPhoneNumbers, sim.DefaultWABAID); n != 1 {
			t.Fatalf("%d listings of the account's numbers, want still 1", n)
		}
		if n := s.templateCallsOn(sim.DefaultWABAID); n != 0 {
			t.Fatalf("%d template calls on another business's account, want none", n)
		}
	})

	t.Run("an account known from configuration to be another number's costs no call", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t, func(c *jobs.Config) {
			c.Accounts = ratelimit.NewAccounts(map[string]string{otherPhone: otherWABA})
		})
		steal := command("steal-tpl", events.EnsureInviteTemplate, "", tpl)
		steal.PhoneNumberID = otherPhone
		s.publish(t, steal)
		wantFailure(t, s.terminal(t, "steal-tpl"), events.ReasonAccountNotOwned)
		if n := len(s.sim.Calls()); n != 0 {
			t.Fatalf("%d Graph calls, want none: %+v", n, s.sim.Calls())
		}
	})

	t.Run("an account Graph does not know fails as not the number's", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		p := tpl
		p.WABAID = "100000000000999"
		s.publish(t, command("no-account", events.EnsureInviteTemplate, "", p))
		wantFailure(t, s.terminal(t, "no-account"), events.ReasonAccountNotOwned)
	})

	t.Run("its own account known from configuration costs no listing", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t, func(c *jobs.Config) {
			c.Accounts = ratelimit.NewAccounts(map[string]string{phone: sim.DefaultWABAID})
		})
		s.publish(t, command("own-tpl", events.EnsureInviteTemplate, "", tpl))
		wantOutcome(t, s.terminal(t, "own-tpl"), events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointPhoneNumbers); n != 0 {
			t.Fatalf("%d listings of an account's numbers, want none", n)
		}
		if n := s.callsOn(sim.EndpointCreateTemplate, sim.DefaultWABAID); n != 1 {
			t.Fatalf("%d template creations, want 1", n)
		}
	})

	t.Run("its own account known from a webhook costs no listing", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		s.publish(t, command("own-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Ours"}))
		wantOutcome(t, s.terminal(t, "own-create"), events.OutcomeSucceeded)
		s.publish(t, command("own-tpl", events.EnsureInviteTemplate, "", tpl))
		wantOutcome(t, s.terminal(t, "own-tpl"), events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointPhoneNumbers); n != 0 {
			t.Fatalf("%d listings of an account's numbers, want none: the group's webhook named the account", n)
		}
	})

	t.Run("its own account known nowhere costs one listing, then none", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		for _, id := range []string{"own-tpl-1", "own-tpl-2"} {
			s.publish(t, command(id, events.EnsureInviteTemplate, "", tpl))
			wantOutcome(t, s.terminal(t, id), events.OutcomeSucceeded)
		}
		if n := s.callsOn(sim.EndpointPhoneNumbers, sim.DefaultWABAID); n != 1 {
			t.Fatalf("%d listings of the account's numbers, want 1 for two commands", n)
		}
	})

	t.Run("a listing Graph cannot answer is retried, not failed", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		if err := s.sim.SetFaults(sim.Faults{Code2: 1, Limit: 3, Endpoints: []string{sim.EndpointPhoneNumbers}}); err != nil {
			t.Fatal(err)
		}
		s.startWorker(t)
		s.publish(t, command("own-tpl", events.EnsureInviteTemplate, "", tpl))
		wantOutcome(t, s.terminal(t, "own-tpl"), events.OutcomeSucceeded)
		if n := s.callsOn(sim.EndpointPhoneNumbers, sim.DefaultWABAID); n < 4 {
			t.Fatalf("%d listings of the account's numbers, want the 3 that failed and one more", n)
		}
	})
}
