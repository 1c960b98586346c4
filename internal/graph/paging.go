package graph

import (
	"context"
	"fmt"
	"iter"
	"net/url"
	"strconv"
)

// PageOptions selects one page of a Graph list. Cursors are opaque strings
// copied from a previous page; a stale one fails with code 131059
// (CodeInvalidCursor): restart from the first page.
type PageOptions struct {
	// Limit is the page size. 0 leaves it to Graph (25 for groups).
	Limit int
	// After asks for the page after this cursor.
	After string
	// Before asks for the page before this cursor.
	Before string
}

func (o PageOptions) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.After != "" {
		q.Set("after", o.After)
	}
	if o.Before != "" {
		q.Set("before", o.Before)
	}
	return q
}

// wirePaging is Graph's paging object. The next/previous links are never
// followed (they repeat the query; the cursors are enough) — only their
// presence matters.
type wirePaging struct {
	Cursors struct {
		After  string `json:"after"`
		Before string `json:"before"`
	} `json:"cursors"`
	Next *string `json:"next"`
}

// hasNext reports whether a page after this one exists: Graph sends a
// "next" link unless this is the last page.
func (p wirePaging) hasNext() bool {
	return p.Next != nil && *p.Next != ""
}

// maxPages stops an iterator on a server whose cursors never end.
const maxPages = 10_000

// paginate walks pages through fetch, which returns one page's items, its
// after cursor and whether another page follows. It stops at the first
// error (yielded once), when the consumer stops, or when a cursor repeats.
func paginate[T any](ctx context.Context, endpoint string, fetch func(ctx context.Context, after string) ([]T, string, bool, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		seen := map[string]bool{}
		after := ""
		for range maxPages {
			items, next, more, err := fetch(ctx, after)
			if err != nil {
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if !more || next == "" {
				return
			}
			if seen[next] {
				yield(zero, fmt.Errorf("%w: %s: paging cursor repeated", ErrMalformedResponse, endpoint))
				return
			}
			seen[next] = true
			after = next
		}
		yield(zero, fmt.Errorf("%w: %s: more than %d pages", ErrMalformedResponse, endpoint, maxPages))
	}
}
