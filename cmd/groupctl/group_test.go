package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/query"
)

func TestGroupReadsGoThroughTheQueryService(t *testing.T) {
	t.Parallel()
	s := setupStack(t)
	open := s.createGroup(t, "q-create-1", "Open house")
	closed := s.createGroup(t, "q-create-2", "Members only", "--join-approval-mode", "approval_required")
	s.simJoin(t, "15550000001", open.InviteLink)
	jr := s.simJoin(t, "15550000002", closed.InviteLink)

	r := s.groupctl(t, "group", "info", open.GroupID, "--phone", phone)
	wantCode(t, r, 0)
	wantContains(t, "group info", r.stdout, open.GroupID, "Open house", "15550000001")

	r = s.groupctl(t, "group", "list", "--phone", phone, "--json")
	wantCode(t, r, 0)
	var list query.ListGroupsReply
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Groups) != 2 {
		t.Fatalf("group list --json = %s (%v), want both groups", r.stdout, err)
	}

	r = s.groupctl(t, "group", "join-requests", closed.GroupID, "--phone", phone)
	wantCode(t, r, 0)
	wantContains(t, "join requests", r.stdout, jr.JoinRequestID, "15550000002")

	r = s.groupctl(t, "group", "invite-link", open.GroupID, "--phone", phone)
	wantCode(t, r, 0)
	wantContains(t, "invite link", r.stdout, "https://")

	// A group that is not the number's: refused without asking Graph.
	r = s.groupctl(t, "group", "info", "no-such-group", "--phone", phone)
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "group_info:", "not one of this phone number's groups")

	// One recorded as the number's that Graph does not know: Graph's
	// refusal, its code named once.
	if err := jobs.NewOwners(s.kv(t, s.names.OwnerBucket())).Learn(context.Background(), "gone-group", phone); err != nil {
		t.Fatal(err)
	}
	r = s.groupctl(t, "group", "info", "gone-group", "--phone", phone)
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "group_info:", "Graph code")
	if n := strings.Count(r.stderr, "code "); n != 1 {
		t.Errorf("stderr %q names the Graph code %d times, want once", r.stderr, n)
	}
}

func TestGroupWithoutQueryServiceSaysSo(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	r := b.groupctl(t, "group", "list", "--phone", phone)
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "no query service answers on groups.query."+phone+".list_groups: is a worker running?")
}
