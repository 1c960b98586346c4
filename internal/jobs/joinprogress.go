package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
)

// An approval or rejection keeps, across deliveries, whom each join
// request it acts on was for (once a request is handled it disappears from
// the pending list, and only this tells whether a 131213 means "already
// done by us") and what each call answered, saved after every chunk: a
// later delivery neither repeats those calls nor has to guess what a 131213
// for them means.
//
// That is kept in parts of the command's progress (Ledger.Part), one per
// chunk of joinRequestChunk requests, in the order they are acted on; the
// ledger entry keeps only how many parts there are (joinProgress). Both
// grow with the requests, and all_pending has no bound on them: kept in
// the entry, they made it larger than NATS takes in a message at about
// 5,800 requests on a server with the default 1 MiB max_payload (45,000 on
// the 8 MB of deploy/nats), and the command could never finish. A part
// holds at most joinRequestChunk requests (about 25 KB), so no message
// grows with the command. The campaigns keep their per-invite state in
// chunks beside a small entry in the same way.
//
// Every request listed is in a part before the first call, so a later
// delivery knows all of them: one pending no more, whose outcome no call
// saved, is reported as a 131213 for it would be judged.
//
// A chunk's call is followed by two writes: its part, by compare-and-set
// on the revision this delivery read or wrote, then the entry's count of
// saved outcomes, under the claim. A worker that lost its claim stops
// after one call, as when the whole progress was in the entry.

// joinProgress is what the ledger entry keeps of an approval or rejection.
type joinProgress struct {
	// Parts is how many parts (joinPart) hold the requests acted on.
	Parts int `json:"parts,omitempty"`
	// Saved is how many outcomes the parts hold.
	Saved int `json:"saved,omitempty"`
	// Requesters and Done are the progress of workers that kept all of it
	// in the entry: read from an entry they left (the command was under
	// way during an upgrade) and moved into parts.
	Requesters map[string]requester          `json:"requesters,omitempty"`
	Done       map[string]events.ItemOutcome `json:"done,omitempty"`
}

type requester struct {
	WAID   string `json:"wa_id,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

// joinPart is one part: at most joinRequestChunk requests, whom each was
// for (those ever listed pending) and the outcomes their call answered.
type joinPart struct {
	IDs        []string                      `json:"ids"`
	Requesters map[string]requester          `json:"requesters,omitempty"`
	Done       map[string]events.ItemOutcome `json:"done,omitempty"`

	rev   uint64 // revision read or last written; 0 when not written
	fresh bool   // started by this delivery: more requests may join it
	dirty bool   // changed since it was read or written
}

// joinState is every part of one command, as this delivery knows them.
type joinState struct {
	cmdID string
	parts []*joinPart
	where map[string]int // request id → its part
	saved int            // outcomes in the parts
}

// loadJoinState reads a command's parts. An entry written before parts
// existed is turned into parts (written by the next flush): the requests
// named (or, for all_pending, every one it knew) in their order.
func (w *Worker) loadJoinState(ctx context.Context, job *Job, named []string, allPending bool) (*joinState, error) {
	var prog joinProgress
	job.Progress(&prog)
	st := &joinState{cmdID: job.Command.ID, where: map[string]int{}}
	for k := range prog.Parts {
		b, rev, err := w.ledger.Part(ctx, st.cmdID, k)
		if err != nil {
			return nil, err
		}
		p := &joinPart{rev: rev}
		if b != nil {
			if err := json.Unmarshal(b, p); err != nil {
				return nil, fmt.Errorf("join requests: decode part %d: %w", k, err)
			}
		}
		for _, id := range p.IDs {
			st.where[id] = k
		}
		st.saved += len(p.Done)
		st.parts = append(st.parts, p)
	}
	if prog.Requesters != nil || prog.Done != nil {
		ids := named
		if allPending {
			ids = slices.Sorted(maps.Keys(prog.Requesters))
			for id := range prog.Done {
				if _, ok := prog.Requesters[id]; !ok {
					ids = append(ids, id)
				}
			}
		}
		st.extend(ids, prog.Requesters)
		for id, it := range prog.Done {
			st.setDone(id, it)
		}
	}
	return st, nil
}

// extend adds the requests not in a part yet, with whom they are for where
// known, filling the parts this delivery started before it starts others.
func (st *joinState) extend(ids []string, who map[string]requester) {
	for _, id := range ids {
		if _, ok := st.where[id]; ok {
			continue
		}
		last := len(st.parts) - 1
		if last < 0 || !st.parts[last].fresh || len(st.parts[last].IDs) == joinRequestChunk {
			st.parts = append(st.parts, &joinPart{fresh: true})
			last++
		}
		p := st.parts[last]
		p.IDs, p.dirty = append(p.IDs, id), true
		st.where[id] = last
	}
	st.learn(who)
}

// learn records whom requests in the parts are for, where not known yet
// (a named request that was not pending when its part was written).
func (st *joinState) learn(who map[string]requester) {
	for id, r := range who {
		k, ok := st.where[id]
		if !ok {
			continue
		}
		p := st.parts[k]
		if _, known := p.Requesters[id]; known {
			continue
		}
		if p.Requesters == nil {
			p.Requesters = map[string]requester{}
		}
		p.Requesters[id], p.dirty = r, true
	}
}

// setDone keeps an outcome in its request's part.
func (st *joinState) setDone(id string, it events.ItemOutcome) {
	k, ok := st.where[id]
	if !ok {
		return
	}
	p := st.parts[k]
	if p.Done == nil {
		p.Done = map[string]events.ItemOutcome{}
	}
	if _, had := p.Done[id]; !had {
		st.saved++
	}
	p.Done[id], p.dirty = it, true
}

// done returns a request's saved outcome.
func (st *joinState) done(id string) (events.ItemOutcome, bool) {
	k, ok := st.where[id]
	if !ok {
		return events.ItemOutcome{}, false
	}
	it, ok := st.parts[k].Done[id]
	return it, ok
}

// requester returns whom a request is for, if it was ever listed.
func (st *joinState) requester(id string) (requester, bool) {
	k, ok := st.where[id]
	if !ok {
		return requester{}, false
	}
	r, ok := st.parts[k].Requesters[id]
	return r, ok
}

// ids are every request in the parts, in order.
func (st *joinState) ids() []string {
	out := make([]string, 0, len(st.where))
	for _, p := range st.parts {
		out = append(out, p.IDs...)
	}
	return out
}

// flush writes the parts changed since they were read, then the entry's
// count of them. It writes nothing when nothing changed.
func (w *Worker) flushJoinState(ctx context.Context, job *Job, st *joinState) error {
	changed := false
	for k, p := range st.parts {
		if !p.dirty {
			continue
		}
		if err := w.putJoinPart(ctx, st, k); err != nil {
			return err
		}
		changed = true
	}
	if !changed {
		return nil
	}
	return job.SetProgress(ctx, joinProgress{Parts: len(st.parts), Saved: st.saved})
}

func (w *Worker) putJoinPart(ctx context.Context, st *joinState, k int) error {
	p := st.parts[k]
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("join requests: encode part %d: %w", k, err)
	}
	rev := p.rev
	if p.fresh {
		rev = 0 // whatever a crash or an earlier execution left there
	}
	if p.rev, err = w.ledger.PutPart(ctx, st.cmdID, k, b, rev); err != nil {
		return err
	}
	p.fresh, p.dirty = false, false
	return nil
}
