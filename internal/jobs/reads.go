package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/groupflow/groupflow/internal/events"
)

// ReadCache is the cache the query service answers reads from, shared by
// every worker (query.Invalidator). The worker makes the answers an event
// changes stale before it publishes the event, so that whoever receives
// the event and reads at once never gets an answer older than it.
type ReadCache interface {
	// InvalidateGroup makes every cached answer about groupID stale.
	InvalidateGroup(ctx context.Context, phone, groupID string) error
	// InvalidateNumber makes the cached group list of phone stale.
	InvalidateNumber(ctx context.Context, phone string) error
}

// invalidateReads makes stale what an event may have changed: the
// answers about groupID when group is set, the number's group list when
// list is: one bucket write each. An error means the event must not go
// out yet: the caller's retry invalidates again.
func (w *Worker) invalidateReads(ctx context.Context, phone, groupID string, group, list bool) error {
	if group && groupID != "" {
		if err := w.cfg.Reads.InvalidateGroup(ctx, phone, groupID); err != nil {
			return fmt.Errorf("invalidate cached reads of group %s: %w", groupID, err)
		}
	}
	if list && phone != "" {
		if err := w.cfg.Reads.InvalidateNumber(ctx, phone); err != nil {
			return fmt.Errorf("invalidate cached group list of %s: %w", phone, err)
		}
	}
	return nil
}

// invalidateTerminal invalidates for the terminal event t of the command
// e (events.Affects): nothing for reads, messages, campaigns and
// rejections. Its group is the event's groupid extension (a created
// group's id is known only from the result).
func (w *Worker) invalidateTerminal(ctx context.Context, e Entry, t *Terminal) error {
	if w.cfg.Reads == nil {
		return nil
	}
	group, list := events.Affects(t.Type, e.CommandType)
	if !group && !list {
		return nil
	}
	var ev struct {
		GroupID string `json:"groupid"`
	}
	_ = json.Unmarshal(t.Event, &ev) // stored by terminal(): valid JSON
	return w.invalidateReads(ctx, e.PhoneNumberID, ev.GroupID, group, list)
}

// invalidateItem invalidates for the domain events evs of one webhook
// item before any of them goes out. They are all about the item's group
// (groupID), so one write covers them, however many participants the
// item names.
func (w *Worker) invalidateItem(ctx context.Context, groupID string, evs []domainEvent) error {
	if w.cfg.Reads == nil || len(evs) == 0 {
		return nil
	}
	var group, list bool
	for _, ev := range evs {
		g, l := events.Affects(ev.typ, "")
		group, list = group || g, list || l
	}
	return w.invalidateReads(ctx, evs[0].phone, groupID, group, list)
}
