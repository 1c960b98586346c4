package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// A token limited to its own phone number that knows another business's
// group id cannot act on that group through a command of its own number:
// every number shares the worker's Graph access token, and Graph's group
// operations name only the group. Each command fails with group_not_owned
// and Graph is asked nothing about the group: it is not deleted, its link
// is not read, no invite to it is sent.
func TestAScopedTokenCannotActOnAnotherNumbersGroup(t *testing.T) {
	t.Parallel()
	const tenantPhone, tenantToken = "106540352242923", "gf-e2e-TENANT-token-5d1e7a"
	s := setup(t, func(o *stackOpts) { o.moreTokens = []string{tenantToken + "@" + tenantPhone} })
	s.startWorker(t, workerOpts{})

	// The victim's group, created through groupflow for its own number.
	if code, body := s.post(t, command("victim-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Victim's"}), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST create_group = %d %s", code, body)
	}
	_, created := s.events.Terminal(t, "victim-create")
	if created.Outcome != events.OutcomeSucceeded || created.GroupID == "" {
		t.Fatalf("create_group: %q %+v", created.Outcome, created.Error)
	}
	victim := created.GroupID
	s.sim.ResetCalls()

	invite, _ := json.Marshal(events.SendGroupInviteParams{To: "16505550101", GroupID: victim,
		Template: events.TemplateRef{Name: "group_invite", Language: "en"}})
	for _, c := range []events.Command{
		{ID: "tenant-link", Type: events.GetInviteLink, PhoneNumberID: tenantPhone, GroupID: victim},
		{ID: "tenant-invite", Type: events.SendGroupInvite, PhoneNumberID: tenantPhone, Params: invite},
		{ID: "tenant-delete", Type: events.DeleteGroup, PhoneNumberID: tenantPhone, GroupID: victim},
	} {
		if code, body := s.post(t, c, tenantToken); code != http.StatusAccepted {
			t.Fatalf("POST %s as the tenant = %d %s, want 202 (its own number)", c.Type, code, body)
		}
		_, r := s.events.Terminal(t, c.ID)
		if r.Outcome != events.OutcomeFailed || r.Error == nil || r.Error.Reason != events.ReasonGroupNotOwned {
			t.Errorf("%s of another number's group: %q %+v %s, want failed with reason group_not_owned", c.Type, r.Outcome, r.Error, r.Result)
		}
	}
	if g, ok := s.sim.Group(victim); !ok || g.Deleted {
		t.Errorf("the victim's group: %+v (known %v), want it still there", g, ok)
	}
	for _, c := range s.sim.Calls() {
		switch c.Endpoint {
		case sim.EndpointDeleteGroup, sim.EndpointGetInviteLink, sim.EndpointSendMessage:
			t.Errorf("Graph was called on the victim's group: %s %s", c.Method, c.Path)
		case sim.EndpointListGroups:
			// Its create's webhook told the worker whose group it is.
			t.Errorf("the tenant's groups were listed (%s): the victim's group was known as another number's", c.Path)
		}
	}
}

// knownAs records groupID as number's group, as a worker does from the
// group's webhooks.
func (s *stack) knownAs(t testing.TB, groupID, number string) {
	t.Helper()
	kv, err := s.js.KeyValue(context.Background(), s.names.OwnerBucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.NewOwners(kv).Learn(context.Background(), groupID, number); err != nil {
		t.Fatal(err)
	}
}
