package query_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/query"
)

func TestParticipantsJoinedEventInvalidatesGroupInfo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Busy", "", events.JoinAutoApprove)
	req := query.GroupInfoRequest{GroupID: g.ID}
	var before query.GroupInfoReply
	b.askOK(t, events.QueryGroupInfo, req, &before)

	const newcomer = "16505550301"
	b.join(t, g, newcomer)
	var stale query.GroupInfoReply
	if msg := b.askOK(t, events.QueryGroupInfo, req, &stale); msg.Header.Get(query.CacheHeader) != "hit" || len(stale.Participants) != len(before.Participants) {
		t.Fatalf("before any event: cache %q, %d participants; want the cached answer with %d", msg.Header.Get(query.CacheHeader), len(stale.Participants), len(before.Participants))
	}

	// What the worker publishes for the group_participants_update webhook.
	b.publishEvent(t, events.EventGroupParticipantsJoined, &events.ParticipantsJoined{
		GroupID: g.ID, Reason: "invite_link", Participants: []events.ParticipantRef{{WAID: newcomer}},
	})
	var fresh query.GroupInfoReply
	eventually(t, func() bool {
		b.askOK(t, events.QueryGroupInfo, req, &fresh)
		return len(fresh.Participants) == len(before.Participants)+1
	}, "group_info still answers %d participants after group.participants_joined", len(before.Participants))
	if fresh.Participants[len(fresh.Participants)-1].WAID != newcomer && fresh.Participants[0].WAID != newcomer {
		t.Errorf("participants %+v do not include %s", fresh.Participants, newcomer)
	}
	if n := b.graphCalls(sim.EndpointGroupInfo); n != 2 {
		t.Errorf("%d Graph group_info calls, want 2 (one before, one after the event)", n)
	}
}

func TestCommandSucceededInvalidatesInviteLink(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.createGroup(t, "Relinked", "", "")
	req := query.InviteLinkRequest{GroupID: g.ID}
	var old query.InviteLinkReply
	b.askOK(t, events.QueryInviteLink, req, &old)

	link, err := b.graph.ResetInviteLink(ctx, g.ID)
	if err != nil || link == old.InviteLink {
		t.Fatalf("reset invite link: %q, %v (old %q)", link, err, old.InviteLink)
	}
	res, _ := json.Marshal(events.InviteLinkResult{InviteLink: link})
	ev, err := events.NewTerminalEvent(events.SourceWorker, events.CommandResult{
		CommandID: "relink-1", CommandType: events.ResetInviteLink, PhoneNumberID: phone, GroupID: g.ID,
		Outcome: events.OutcomeSucceeded, Result: res, Attempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.publishCloudEvent(t, ev)
	eventually(t, func() bool {
		var got query.InviteLinkReply
		b.askOK(t, events.QueryInviteLink, req, &got)
		return got.InviteLink == link
	}, "invite_link still answers the old link after command.succeeded")
}

func TestGroupCreatedEventInvalidatesListGroups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createGroup(t, "First", "", "")
	var first query.ListGroupsReply
	b.askOK(t, events.QueryListGroups, nil, &first)
	g := b.createGroup(t, "Second", "", "")
	b.publishEvent(t, events.EventGroupCreated, &events.GroupCreated{GroupID: g.ID, RequestID: "req-2", Subject: g.Subject, InviteLink: g.InviteLink})
	eventually(t, func() bool {
		var got query.ListGroupsReply
		b.askOK(t, events.QueryListGroups, nil, &got)
		return len(got.Groups) == len(first.Groups)+1
	}, "list_groups still answers %d groups after group.created", len(first.Groups))
}

func TestInvalidateGroupMakesTheNextReadFresh(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.createGroup(t, "Suspended soon", "", "")
	req := query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"suspended"}}
	b.askOK(t, events.QueryGroupInfo, req, nil)
	if err := b.sim.Suspend(g.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.InvalidateGroup(ctx, phone, g.ID); err != nil {
		t.Fatalf("InvalidateGroup: %v", err)
	}
	var got query.GroupInfoReply
	msg := b.askOK(t, events.QueryGroupInfo, req, &got)
	if msg.Header.Get(query.CacheHeader) != "miss" || got.Suspended == nil || !*got.Suspended {
		t.Errorf("after InvalidateGroup: cache %q, suspended %v; want a miss showing the suspension", msg.Header.Get(query.CacheHeader), got.Suspended)
	}

	// The number's list is another scope: untouched by a group's invalidation,
	// made fresh by InvalidateNumber.
	b.askOK(t, events.QueryListGroups, nil, nil)
	if err := b.svc.InvalidateGroup(ctx, phone, g.ID); err != nil {
		t.Fatal(err)
	}
	if h := b.askOK(t, events.QueryListGroups, nil, nil).Header.Get(query.CacheHeader); h != "hit" {
		t.Errorf("list_groups after a group invalidation: cache %q, want hit", h)
	}
	if err := b.svc.InvalidateNumber(ctx, phone); err != nil {
		t.Fatal(err)
	}
	if h := b.askOK(t, events.QueryListGroups, nil, nil).Header.Get(query.CacheHeader); h != "miss" {
		t.Errorf("list_groups after InvalidateNumber: cache %q, want miss", h)
	}
}

// A group's answer asked through another number than the group's goes
// stale with the group: events invalidate under the group's own number.
func TestAGroupAskedThroughAnotherNumberGoesStaleWithTheGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	g := b.createGroup(t, "Asked elsewhere", "", "")
	const other = "106540352200000"
	req := query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"suspended"}}
	if qe := query.ReplyError(b.ask(t, events.QueryGroupInfo, other, req)); qe != nil {
		t.Fatalf("group_info through %s: %d %s", other, qe.Code, qe.Message)
	}
	if err := b.sim.Suspend(g.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.svc.InvalidateGroup(ctx, phone, g.ID); err != nil { // as the group's own events do
		t.Fatal(err)
	}
	msg := b.ask(t, events.QueryGroupInfo, other, req)
	var got query.GroupInfoReply
	if err := json.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(query.CacheHeader) != "miss" || got.Suspended == nil || !*got.Suspended {
		t.Fatalf("through %s after the group's invalidation: cache %q, suspended %v; want a miss showing the suspension",
			other, msg.Header.Get(query.CacheHeader), got.Suspended)
	}
}

func TestRejectedCommandDoesNotInvalidate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Calm", "", "")
	req := query.GroupInfoRequest{GroupID: g.ID}
	b.askOK(t, events.QueryGroupInfo, req, nil)
	b.askOK(t, events.QueryListGroups, nil, nil)
	terminal := func(r events.CommandResult) {
		t.Helper()
		r.PhoneNumberID = phone
		ev, err := events.NewTerminalEvent(events.SourceWorker, r)
		if err != nil {
			t.Fatal(err)
		}
		b.publishCloudEvent(t, ev)
	}
	terminal(events.CommandResult{CommandID: "bad-1", CommandType: events.DeleteGroup, GroupID: g.ID,
		Outcome: events.OutcomeRejected, ValidationErrors: []events.FieldError{{Field: "params", Message: "unknown field"}}})
	// A later terminal event reaches the same subscription after the
	// rejected one: once it has taken effect, the rejected one was handled.
	res, _ := json.Marshal(events.CreateGroupResult{GroupID: "other", RequestID: "r"})
	terminal(events.CommandResult{CommandID: "create-1", CommandType: events.CreateGroup, GroupID: "other", Outcome: events.OutcomeSucceeded, Result: res, Attempts: 1})
	eventually(t, func() bool {
		return b.askOK(t, events.QueryListGroups, nil, nil).Header.Get(query.CacheHeader) == "miss"
	}, "command.succeeded of create_group never invalidated list_groups")
	if h := b.askOK(t, events.QueryGroupInfo, req, nil).Header.Get(query.CacheHeader); h != "hit" {
		t.Errorf("group_info after command.rejected: cache %q, want hit (nothing changed)", h)
	}
}
