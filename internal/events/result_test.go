package events_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
)

func TestSetItems(t *testing.T) {
	t.Parallel()
	outcomes := func(n, failEvery int) []events.ItemOutcome {
		items := make([]events.ItemOutcome, n)
		for i := range items {
			items[i] = events.ItemOutcome{ID: fmt.Sprint("r", i), Outcome: events.ItemApproved}
			if i%failEvery == 0 {
				items[i] = events.ItemOutcome{ID: fmt.Sprint("r", i), Outcome: events.ItemFailed, Code: 131203, Reason: strings.Repeat("x", 200)}
			}
		}
		return items
	}

	t.Run("a short list is kept whole, in its order, and counted", func(t *testing.T) {
		t.Parallel()
		items := outcomes(events.MaxItems, 3)
		var r events.CommandResult
		r.SetItems(items)
		if len(r.Items) != len(items) || r.Items[1] != items[1] || r.ItemsOmitted != 0 {
			t.Fatalf("%d items (second %+v), %d omitted; want all %d in order", len(r.Items), r.Items[1], r.ItemsOmitted, len(items))
		}
		if want := (events.ItemCounts{Approved: 682, Failed: 342}); r.ItemCounts == nil || *r.ItemCounts != want {
			t.Fatalf("counts %+v, want %+v", r.ItemCounts, want)
		}
	})

	t.Run("a long list keeps the failed items first and counts them all", func(t *testing.T) {
		t.Parallel()
		// 100,000 join requests, one in ten refused with the longest reason.
		items := outcomes(100_000, 10)
		var r events.CommandResult
		r.SetItems(items)
		if len(r.Items) != events.MaxItems || r.ItemsOmitted != len(items)-events.MaxItems {
			t.Fatalf("%d items, %d omitted; want %d and %d", len(r.Items), r.ItemsOmitted, events.MaxItems, len(items)-events.MaxItems)
		}
		for i, it := range r.Items {
			if it.Outcome != events.ItemFailed || it.ID != fmt.Sprint("r", i*10) {
				t.Fatalf("item %d %+v, want the failed ones, in their order", i, it)
			}
		}
		if want := (events.ItemCounts{Approved: 90_000, Failed: 10_000}); r.ItemCounts == nil || *r.ItemCounts != want {
			t.Fatalf("counts %+v, want %+v", r.ItemCounts, want)
		}
		b, err := json.Marshal(r)
		if err != nil || len(b) > 512<<10 {
			t.Fatalf("the result is %d bytes (%v), want it well within a 1 MiB message", len(b), err)
		}
	})

	t.Run("no items, no counts", func(t *testing.T) {
		t.Parallel()
		r := events.CommandResult{Items: outcomes(3, 1)}
		r.SetItems(nil)
		if r.Items != nil || r.ItemCounts != nil || r.ItemsOmitted != 0 {
			t.Fatalf("result %+v, want no items, counts or omission", r)
		}
	})
}
