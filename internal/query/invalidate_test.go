package query_test

import (
	"context"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/query"
)

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
