package query_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/query"
)

func TestGroupInfoMatchesSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Support", "Orders and returns", events.JoinAutoApprove)
	b.join(t, g, "16505551234")
	b.join(t, g, "16505551235")
	g = b.group(t, g.ID)

	var got query.GroupInfoReply
	b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, &got)
	var gotIDs []string
	for _, p := range got.Participants {
		gotIDs = append(gotIDs, p.WAID)
	}
	slices.Sort(gotIDs)
	want := slices.Sorted(slices.Values(g.Participants))
	switch {
	case got.ID != g.ID || got.Subject != g.Subject:
		t.Errorf("id, subject = %q, %q; want %q, %q", got.ID, got.Subject, g.ID, g.Subject)
	case got.Description == nil || *got.Description != g.Description:
		t.Errorf("description = %v, want %q", got.Description, g.Description)
	case !slices.Equal(gotIDs, want):
		t.Errorf("participants = %v, want %v", gotIDs, want)
	case got.TotalParticipantCount == nil || *got.TotalParticipantCount != len(g.Participants):
		t.Errorf("total_participant_count = %v, want %d", got.TotalParticipantCount, len(g.Participants))
	case got.JoinApprovalMode != g.JoinApprovalMode:
		t.Errorf("join_approval_mode = %q, want %q", got.JoinApprovalMode, g.JoinApprovalMode)
	case got.Suspended == nil || *got.Suspended != g.Suspended:
		t.Errorf("suspended = %v, want %v", got.Suspended, g.Suspended)
	case !got.CreationTime.Equal(g.CreatedAt.Truncate(time.Second)):
		t.Errorf("creation_time = %v, want %v", got.CreationTime, g.CreatedAt.Truncate(time.Second))
	}

	t.Run("Selected fields only", func(t *testing.T) {
		msg := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"participants", "participants"}}, nil)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(msg.Data, &raw); err != nil {
			t.Fatal(err)
		}
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range raw {
				if !yield(k) {
					return
				}
			}
		})
		if want := []string{"id", "participants", "subject"}; !slices.Equal(keys, want) {
			t.Errorf("reply fields = %v, want %v (%s)", keys, want, msg.Data)
		}
	})
}

func TestListGroupsPagesThroughTheSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := map[string]sim.GroupState{}
	for _, s := range []string{"North", "South", "East"} {
		g := b.createGroup(t, s, "", "")
		want[g.ID] = g
	}

	var p1, p2 query.ListGroupsReply
	b.askOK(t, events.QueryListGroups, query.ListGroupsRequest{Limit: 2}, &p1)
	if len(p1.Groups) != 2 || !p1.HasNext || p1.After == "" {
		t.Fatalf("first page: %d groups, has_next %v, after %q; want 2, true, a cursor", len(p1.Groups), p1.HasNext, p1.After)
	}
	b.askOK(t, events.QueryListGroups, query.ListGroupsRequest{Limit: 2, After: p1.After}, &p2)
	if len(p2.Groups) != 1 || p2.HasNext || p2.After != "" {
		t.Fatalf("last page: %d groups, has_next %v, after %q; want 1, false, none", len(p2.Groups), p2.HasNext, p2.After)
	}
	seen := map[string]bool{}
	for _, got := range append(p1.Groups, p2.Groups...) {
		w, ok := want[got.ID]
		switch {
		case !ok || seen[got.ID]:
			t.Errorf("group %s listed but not expected (or twice)", got.ID)
		case got.Subject != w.Subject || !got.CreatedAt.Equal(w.CreatedAt.Truncate(time.Second)):
			t.Errorf("group %s: subject %q created %v, want %q %v", got.ID, got.Subject, got.CreatedAt, w.Subject, w.CreatedAt.Truncate(time.Second))
		}
		seen[got.ID] = true
	}
	if len(seen) != len(want) {
		t.Errorf("listed %d groups, the simulator has %d", len(seen), len(want))
	}

	var all query.ListGroupsReply
	b.askOK(t, events.QueryListGroups, nil, &all) // an empty body is an empty request
	if len(all.Groups) != 3 || all.HasNext {
		t.Errorf("default page: %d groups, has_next %v; want 3, false", len(all.Groups), all.HasNext)
	}
}

func TestListJoinRequestsMatchesSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Members only", "", events.JoinApprovalRequired)
	r1 := b.join(t, g, "16505550101")
	r2 := b.join(t, g, "16505550102")
	g = b.group(t, g.ID)
	if len(g.JoinRequests) != 2 {
		t.Fatalf("simulator has %d join requests, want 2", len(g.JoinRequests))
	}

	var got query.ListJoinRequestsReply
	b.askOK(t, events.QueryListJoinRequests, query.ListJoinRequestsRequest{GroupID: g.ID}, &got)
	if len(got.JoinRequests) != 2 || got.HasNext {
		t.Fatalf("join requests: %d, has_next %v; want 2, false", len(got.JoinRequests), got.HasNext)
	}
	for _, w := range g.JoinRequests {
		i := slices.IndexFunc(got.JoinRequests, func(jr query.JoinRequest) bool { return jr.JoinRequestID == w.ID })
		if i < 0 {
			t.Errorf("join request %s (%s) missing from %+v", w.ID, w.WAID, got.JoinRequests)
			continue
		}
		if jr := got.JoinRequests[i]; jr.Participant.WAID != w.WAID || !jr.CreatedAt.Equal(w.CreatedAt.Truncate(time.Second)) {
			t.Errorf("join request %s: %+v, want wa_id %s created %v", w.ID, jr, w.WAID, w.CreatedAt.Truncate(time.Second))
		}
	}
	if ids := []string{r1.JoinRequestID, r2.JoinRequestID}; !slices.ContainsFunc(got.JoinRequests, func(jr query.JoinRequest) bool { return jr.JoinRequestID == ids[0] }) {
		t.Errorf("the id Join returned (%s) is not listed", ids[0])
	}

	var page query.ListJoinRequestsReply
	b.askOK(t, events.QueryListJoinRequests, query.ListJoinRequestsRequest{GroupID: g.ID, Limit: 1}, &page)
	if len(page.JoinRequests) != 1 || !page.HasNext || page.After == "" {
		t.Errorf("limit 1: %d requests, has_next %v, after %q; want 1, true, a cursor", len(page.JoinRequests), page.HasNext, page.After)
	}
}

func TestInviteLinkMatchesSimulator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Linked", "", "")
	var got query.InviteLinkReply
	b.askOK(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: g.ID}, &got)
	if got.GroupID != g.ID || got.InviteLink != g.InviteLink {
		t.Errorf("invite link reply %+v, want group %s link %s", got, g.ID, g.InviteLink)
	}
}

func TestCommandStatusReadsTheLedger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const id = "order-4711:link" // ':' is valid in ids but not in KV keys
	if _, _, err := b.ledger.Claim(ctx, jobs.ClaimRequest{CommandID: id, CommandType: events.ResetInviteLink, PhoneNumberID: phone, Token: "t1", Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	var running query.CommandStatusReply
	msg := b.askOK(t, events.QueryCommandStatus, query.CommandStatusRequest{CommandID: id}, &running)
	if running.State != string(jobs.StateRunning) || running.CommandType != events.ResetInviteLink || running.Result != nil {
		t.Errorf("running command: %s", msg.Data)
	}
	if h := msg.Header.Get(query.CacheHeader); h != "" {
		t.Errorf("command_status has cache header %q; it is never cached", h)
	}

	res, _ := json.Marshal(events.InviteLinkResult{InviteLink: "https://chat.whatsapp.com/new"})
	ev, err := events.NewTerminalEvent(events.SourceWorker, events.CommandResult{
		CommandID: id, CommandType: events.ResetInviteLink, PhoneNumberID: phone, GroupID: "G1",
		Outcome: events.OutcomeSucceeded, Result: res, Attempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := events.Marshal(ev)
	if _, err := b.ledger.Finish(ctx, id, "t1", jobs.StateSucceeded, jobs.Terminal{Type: ev.Type(), Subject: b.names.Event(phone, ev.Type()), MsgID: ev.ID(), Event: raw},
		&jobs.Attempt{At: time.Now(), Outcome: "succeeded"}, nil); err != nil {
		t.Fatal(err)
	}
	var done query.CommandStatusReply
	b.askOK(t, events.QueryCommandStatus, query.CommandStatusRequest{CommandID: id}, &done)
	var result events.CommandResult
	if err := json.Unmarshal(done.Result, &result); err != nil {
		t.Fatalf("result %s: %v", done.Result, err)
	}
	if done.State != string(jobs.StateSucceeded) || done.Attempts != 1 || result.CommandID != id || result.Outcome != events.OutcomeSucceeded {
		t.Errorf("finished command: state %s, attempts %d, result %+v", done.State, done.Attempts, result)
	}

	t.Run("Unknown command id is 404", func(t *testing.T) {
		qe := b.askErr(t, events.QueryCommandStatus, phone, query.CommandStatusRequest{CommandID: "never-sent"}, query.CodeNotFound)
		if !strings.Contains(qe.Message, "once a worker takes it") || !strings.Contains(qe.Message, "waiting in the command stream") {
			t.Errorf("message %q, want it to say an accepted command appears once a worker takes it and waits in the stream until then", qe.Message)
		}
	})
	t.Run("Another number's command is 404", func(t *testing.T) {
		_ = b.askErr(t, events.QueryCommandStatus, "106540352242999", query.CommandStatusRequest{CommandID: id}, query.CodeNotFound) // askErr asserts the code
	})
}

func TestInvalidRequestsAre400(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name, endpoint, phone, body, field string
	}{
		{"Missing group id", events.QueryGroupInfo, phone, `{}`, "group_id"},
		{"Unknown field", events.QueryGroupInfo, phone, `{"group_id":"G1","owner":true}`, "owner"},
		{"Group id with a space", events.QueryInviteLink, phone, `{"group_id":"G 1"}`, "group_id"},
		{"Group id a dot segment", events.QueryInviteLink, phone, `{"group_id":".."}`, "group_id"},
		{"Group id the current segment", events.QueryListJoinRequests, phone, `{"group_id":"."}`, "group_id"},
		{"Unknown group info field", events.QueryGroupInfo, phone, `{"group_id":"G1","fields":["invite_link"]}`, "fields[0]"},
		{"Limit too large", events.QueryListGroups, phone, `{"limit":2000}`, "limit"},
		{"Limit not a number", events.QueryListGroups, phone, `{"limit":"ten"}`, "limit"},
		{"Both cursors", events.QueryListJoinRequests, phone, `{"group_id":"G1","after":"a","before":"b"}`, "before"},
		{"Not an object", events.QueryListGroups, phone, `[1]`, ""},
		{"Not JSON", events.QueryInviteLink, phone, `group please`, ""},
		{"Trailing data", events.QueryInviteLink, phone, `{"group_id":"G1"} {}`, ""},
		{"Bad command id", events.QueryCommandStatus, phone, `{"command_id":"a b"}`, "command_id"},
		{"Phone number id not numeric", events.QueryListGroups, "acme", `{}`, "subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qe := b.askErr(t, tc.endpoint, tc.phone, tc.body, query.CodeBadRequest)
			if len(qe.ValidationErrors) == 0 || qe.ValidationErrors[0].Field != tc.field {
				t.Errorf("validation errors %+v, want the first on field %q", qe.ValidationErrors, tc.field)
			}
		})
	}
	if n := len(b.sim.Calls()); n != 0 {
		t.Errorf("invalid requests made %d Graph calls, want 0", n)
	}
}

// TestManyInvalidFieldsGetABoundedAnswer: every unknown group info field
// was an error of its own in the reply's body and again in its
// Nats-Service-Error header. A request of 100,000 (under 500 KB) made a
// reply of about 20 MB, more than NATS takes: the caller waited out its
// timeout and the worker built the reply for nothing.
func TestManyInvalidFieldsGetABoundedAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := `{"group_id":"G1","fields":["x"` + strings.Repeat(`,"x"`, 99_999) + `]}`
	qe := b.askErr(t, events.QueryGroupInfo, phone, body, query.CodeBadRequest)
	if n := len(qe.ValidationErrors); n > events.MaxFieldErrors {
		t.Errorf("%d validation errors, want at most %d", n, events.MaxFieldErrors)
	}
	if last := qe.ValidationErrors[len(qe.ValidationErrors)-1]; !strings.Contains(last.Message, "more") {
		t.Errorf("last validation error %+v, want one saying how many more there are", last)
	}
	if len(qe.Message) > 16<<10 {
		t.Errorf("message (and Nats-Service-Error header) of %d bytes, want a bounded one", len(qe.Message))
	}
}

// A group that is not among the number's groups (none at all here) is
// 404 without a Graph call on it: only the number's list is read.
func TestAGroupNotTheNumbersIs404WithoutAGraphCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shaped := base64.StdEncoding.EncodeToString([]byte("capi_group:" + phone + ":999999"))
	for _, id := range []string{shaped, "no-such-object"} {
		qe := b.askErr(t, events.QueryGroupInfo, phone, query.GroupInfoRequest{GroupID: id}, query.CodeNotFound)
		if qe.GraphCode != 0 || !strings.Contains(qe.Message, "not one of this phone number's groups") {
			t.Errorf("group %s: %+v, want a 404 saying the group is not the number's, without a Graph code", id, qe)
		}
	}
	if n := b.graphCalls(sim.EndpointGroupInfo); n != 0 {
		t.Errorf("%d group info calls, want none", n)
	}
}

// A group recorded as the number's that Graph does not know (a deleted
// one) is Graph's 404, with its code.
func TestAKnownGroupGraphDoesNotKnowIs404WithGraphCode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	shaped := base64.StdEncoding.EncodeToString([]byte("capi_group:" + phone + ":999999"))
	b.knownAs(t, shaped, phone)
	qe := b.askErr(t, events.QueryGroupInfo, phone, query.GroupInfoRequest{GroupID: shaped}, query.CodeNotFound)
	if qe.GraphCode != graph.CodeGroupUnknown {
		t.Errorf("graph_code %d, want %d (%s)", qe.GraphCode, graph.CodeGroupUnknown, qe.Message)
	}
}

func TestSecondReadWithinTTLMakesNoGraphCall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Cached", "", events.JoinApprovalRequired)
	b.join(t, g, "16505550201")
	for _, tc := range []struct {
		endpoint, simEndpoint string
		req                   any
	}{
		{events.QueryGroupInfo, sim.EndpointGroupInfo, query.GroupInfoRequest{GroupID: g.ID}},
		{events.QueryListGroups, sim.EndpointListGroups, query.ListGroupsRequest{}},
		{events.QueryListJoinRequests, sim.EndpointListJoinRequests, query.ListJoinRequestsRequest{GroupID: g.ID}},
		{events.QueryInviteLink, sim.EndpointGetInviteLink, query.InviteLinkRequest{GroupID: g.ID}},
	} {
		t.Run(tc.endpoint, func(t *testing.T) {
			first := b.askOK(t, tc.endpoint, tc.req, nil)
			second := b.askOK(t, tc.endpoint, tc.req, nil)
			if n := b.graphCalls(tc.simEndpoint); n != 1 {
				t.Errorf("%d Graph %s calls for two reads, want 1", n, tc.simEndpoint)
			}
			if h1, h2 := first.Header.Get(query.CacheHeader), second.Header.Get(query.CacheHeader); h1 != "miss" || h2 != "hit" {
				t.Errorf("cache headers %q then %q, want miss then hit", h1, h2)
			}
			if string(first.Data) != string(second.Data) {
				t.Errorf("cached answer differs:\n%s\n%s", first.Data, second.Data)
			}
		})
	}
	t.Run("Other arguments are another entry", func(t *testing.T) {
		before := b.graphCalls(sim.EndpointGroupInfo)
		msg := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"subject"}}, nil)
		if h := msg.Header.Get(query.CacheHeader); h != "miss" || b.graphCalls(sim.EndpointGroupInfo) != before+1 {
			t.Errorf("a different field selection: cache %q, Graph calls %d → %d; want a miss and one call", h, before, b.graphCalls(sim.EndpointGroupInfo))
		}
	})
}

func TestCacheOffReadsGraphEveryTime(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) {
		o.cfg = func(c *query.Config) {
			// Without JetStream, the owner records must be given.
			c.Owners = jobs.NewOwners(kv(t, c.JS, c.Names.OwnerBucket()))
			c.CacheTTL, c.JS = -1, nil
		}
	})
	g := b.createGroup(t, "Uncached", "", "")
	for range 2 {
		if msg := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, nil); msg.Header.Get(query.CacheHeader) != "" {
			t.Errorf("cache header %q with the cache off", msg.Header.Get(query.CacheHeader))
		}
	}
	if n := b.graphCalls(sim.EndpointGroupInfo); n != 2 {
		t.Errorf("%d Graph calls for two reads without cache, want 2", n)
	}
	if err := b.svc.InvalidateGroup(context.Background(), phone, g.ID); !errors.Is(err, query.ErrCacheOff) {
		t.Errorf("InvalidateGroup with the cache off = %v, want ErrCacheOff", err)
	}
}

func TestCacheTTLCapsAnswerAge(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	b := setup(t, func(o *options) {
		o.cfg = func(c *query.Config) {
			c.CacheTTL = time.Minute // longer than the bucket's 30 s: capped
			c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		}
	})
	g := b.createGroup(t, "Aging", "", "")
	req := query.GroupInfoRequest{GroupID: g.ID}
	b.askOK(t, events.QueryGroupInfo, req, nil)
	offset.Store(int64(31 * time.Second)) // the service's clock moves past the bucket's TTL
	if h := b.askOK(t, events.QueryGroupInfo, req, nil).Header.Get(query.CacheHeader); h != "miss" {
		t.Errorf("answer older than the bucket TTL: cache %q, want miss", h)
	}
}

func TestGroupInfoFieldsKeepTheirOrderInTheKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Keys", "", "")
	b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"suspended", "participants"}}, nil)
	msg := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID, Fields: []string{"participants", "suspended", "subject"}}, nil)
	if h := msg.Header.Get(query.CacheHeader); h != "hit" {
		t.Errorf("same fields in another order: cache %q, want hit", h)
	}
}
