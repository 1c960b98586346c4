package query_test

import (
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/query"
)

// A group is answered for its own number only: a caller allowed another
// number's query subjects gets 404 for it, and Graph is not asked about
// the group (every number shares the worker's access token).
func TestAGroupIsNotAnsweredThroughAnotherNumber(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Not theirs", "", events.JoinApprovalRequired)
	b.join(t, g, "16505550301")
	const other = "106540352200000"
	for _, tc := range []struct {
		endpoint string
		req      any
	}{
		{events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"participants"}}},
		{events.QueryListJoinRequests, query.ListJoinRequestsRequest{GroupID: g.ID}},
		{events.QueryInviteLink, query.InviteLinkRequest{GroupID: g.ID}},
	} {
		qe := b.askErr(t, tc.endpoint, other, tc.req, query.CodeNotFound)
		if !strings.Contains(qe.Message, "not one of this phone number's groups") {
			t.Errorf("%s through %s: %q, want a 404 saying the group is not the number's", tc.endpoint, other, qe.Message)
		}
	}
	for _, ep := range []string{sim.EndpointGroupInfo, sim.EndpointListJoinRequests, sim.EndpointGetInviteLink, sim.EndpointListGroups} {
		if n := b.graphCalls(ep); n != 0 {
			t.Errorf("%d %s calls, want none: the group is known as another number's", n, ep)
		}
	}
}

// A group groupflow has not heard of is looked up once in the number's
// group list; later reads of it, and of the number's other groups then
// listed, make no listing.
func TestAGroupKnownNowhereIsListedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createUnknownGroup(t, "Made elsewhere", "", "")
	h := b.createUnknownGroup(t, "Made elsewhere too", "", "")
	b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, nil)
	b.askOK(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: g.ID}, nil)
	b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: h.ID}, nil)
	if n := b.graphCalls(sim.EndpointListGroups); n != 1 {
		t.Errorf("%d group listings, want 1", n)
	}
}
