package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// joinRequestChunk is how many join request ids go in one approve or
// reject call.
const joinRequestChunk = 100

// joinProgress remembers, across deliveries, whom each join request was
// for (once a request is handled it disappears from the pending list, and
// only this tells whether a 131213 means "already done by us") and what
// each call answered, saved after every chunk: a later delivery neither
// repeats those calls nor has to guess what a 131213 for them means.
type joinProgress struct {
	Requesters map[string]requester          `json:"requesters,omitempty"`
	Done       map[string]events.ItemOutcome `json:"done,omitempty"`
}

type requester struct {
	WAID   string `json:"wa_id,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

func (w *Worker) approveJoinRequests(ctx context.Context, job *Job) (Result, error) {
	return w.joinRequests(ctx, job, true)
}

func (w *Worker) rejectJoinRequests(ctx context.Context, job *Job) (Result, error) {
	return w.joinRequests(ctx, job, false)
}

// joinRequests approves or rejects join requests: it lists the pending
// requests first (all of them for all_pending; otherwise to learn who is
// behind each id), then acts in bulk and reports each item. Both calls
// are naturally idempotent and simply retried; 131213 ("no such request")
// after an earlier delivery counts as done when the requester's state
// shows it: a participant after an approval, neither pending nor a
// participant after a rejection.
func (w *Worker) joinRequests(ctx context.Context, job *Job, approve bool) (Result, error) {
	p, err := params[events.JoinRequestsParams](job)
	if err != nil {
		return Result{}, err
	}
	groupID := job.Command.GroupID
	var prog joinProgress
	job.Progress(&prog)
	if prog.Requesters == nil {
		prog.Requesters = map[string]requester{}
	}
	listedBefore := slices.Sorted(maps.Keys(prog.Requesters)) // by earlier deliveries
	pending := map[string]bool{}
	var order []string
	err = w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) error {
		clear(pending)
		order = order[:0]
		for r, err := range w.graph.JoinRequests(ctx, groupID) {
			if err != nil {
				return err
			}
			pending[r.ID] = true
			order = append(order, r.ID)
			prog.Requesters[r.ID] = requester{WAID: r.WAID, UserID: r.UserID}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if len(order) > 0 {
		if err := job.SetProgress(ctx, prog); err != nil {
			return Result{}, err
		}
	}
	ids := dedupe(p.JoinRequestIDs)
	act := ids
	var gone []string // listed by an earlier delivery, pending no more, outcome not saved
	if p.AllPending {
		act = order
		// An earlier delivery's call, whose answer was lost, may have
		// handled requests that are no longer listed: they are reported
		// too, judged as Graph's 131213 would be, without a call.
		for _, id := range listedBefore {
			if _, saved := prog.Done[id]; !pending[id] && !saved {
				gone = append(gone, id)
			}
		}
		ids = append(slices.Clone(order), gone...)
		for _, id := range slices.Sorted(maps.Keys(prog.Done)) {
			if !pending[id] {
				ids = append(ids, id) // handled by an earlier delivery
			}
		}
	}
	if len(ids) == 0 {
		return Result{}, nil // nothing pending: all_pending is trivially done
	}
	act = slices.DeleteFunc(slices.Clone(act), func(id string) bool { _, saved := prog.Done[id]; return saved })

	done, call := events.ItemRejected, w.graph.RejectJoinRequests
	if approve {
		done, call = events.ItemApproved, w.graph.ApproveJoinRequests
	}
	items := maps.Clone(prog.Done)
	if items == nil {
		items = make(map[string]events.ItemOutcome, len(ids))
	}
	if prog.Done == nil {
		prog.Done = map[string]events.ItemOutcome{}
	}
	// unknown are the requests Graph called unknown (131213), and those
	// gone from the list since an earlier delivery: judged at the end.
	unknown := slices.Clone(gone)
	// unseen: a call, in an earlier delivery or retried in process, may
	// have handled requests without our seeing the answer (lost answer,
	// crash, shutdown, an outcome that could not be saved). Only then can
	// a 131213 mean "done by this command".
	unseen := hadAmbiguous(job)
	for chunk := range chunks(act, joinRequestChunk) {
		if approve {
			// The joins this lets in name the command (group.participants_joined).
			if err := w.corr.Approving(ctx, groupID, job.Command.ID, requesterIDs(prog, chunk)); err != nil {
				return Result{}, err
			}
		}
		var res graph.JoinRequestsResult
		err := w.call(ctx, job, ratelimit.GroupOps, Safe, func(ctx context.Context) (err error) {
			res, err = call(ctx, groupID, chunk)
			if err != nil && graph.IsAmbiguous(err) {
				unseen = true
			}
			return err
		})
		if err != nil && graph.ClassOf(err) == graph.ClassPermanent && len(res.Failed)+len(res.Succeeded) > 0 {
			// Every item failed: Graph answers with the first item's
			// code but lists each item's own reason.
			err = nil
		}
		switch {
		case errors.Is(err, errExpired):
			// Nothing more is sent: the requests left are reported as
			// expired beside those handled, or the whole command expires
			// if none was.
			if len(items) == 0 && len(unknown) == 0 {
				if unseen {
					return Result{}, errExpiredUnknown
				}
				if approve {
					w.corr.ForgetApprovals(ctx, groupID, requesterIDs(prog, chunk))
				}
				return Result{}, err
			}
			for _, id := range chunk {
				items[id] = expiredItem(id)
			}
			continue
		case codeOf(err) == graph.CodeJoinRequestUnknown:
			// The whole request refused as unknown: judge each item.
			unknown = append(unknown, chunk...)
			continue
		case err != nil && graph.ClassOf(err) == graph.ClassPermanent && codeOf(err) != 0:
			// Refused as a whole (every item failed alike): report it per item.
			for _, id := range chunk {
				items[id] = events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Code: codeOf(err), Reason: truncate(err.Error(), 200)}
			}
		case err != nil:
			return Result{}, err
		}
		for _, id := range res.Succeeded {
			items[id] = events.ItemOutcome{ID: id, Outcome: done}
		}
		for _, f := range res.Failed {
			code, reason := firstItemError(f.Errors)
			if code == graph.CodeJoinRequestUnknown {
				unknown = append(unknown, f.ID)
				continue
			}
			items[f.ID] = events.ItemOutcome{ID: f.ID, Outcome: events.ItemFailed, Code: code, Reason: reason}
		}
		saved := false
		for _, id := range chunk {
			if it, ok := items[id]; ok {
				prog.Done[id], saved = it, true
			}
		}
		if saved {
			if err := job.SetProgress(ctx, prog); err != nil {
				return Result{}, unrecorded(err)
			}
		}
	}
	if len(unknown) > 0 {
		if err := w.judgeUnknown(ctx, job, unseen, approve, unknown, pending, prog, items, done); err != nil {
			return Result{}, err
		}
	}
	out := make([]events.ItemOutcome, 0, len(ids))
	var notLetIn []string
	for _, id := range ids {
		it, ok := items[id]
		if !ok {
			it = events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Reason: "Graph did not report on this join request"}
		}
		if it.Outcome != events.ItemApproved {
			notLetIn = append(notLetIn, id)
		}
		out = append(out, it)
	}
	if approve && len(notLetIn) > 0 {
		w.corr.ForgetApprovals(ctx, groupID, requesterIDs(prog, notLetIn))
	}
	return bulkResult(out), nil
}

// judgeUnknown decides the items Graph called unknown (131213): done by a
// call of this command whose answer was not seen, or really unknown.
func (w *Worker) judgeUnknown(ctx context.Context, job *Job, earlier, approve bool, ids []string, pending map[string]bool, prog joinProgress, items map[string]events.ItemOutcome, done string) error {
	var members map[string]bool
	if earlier {
		err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) error {
			info, err := w.graph.GroupInfo(ctx, job.Command.GroupID, graph.FieldParticipants)
			if err != nil {
				return err
			}
			members = map[string]bool{}
			for _, p := range info.Participants {
				if p.WAID != "" {
					members[p.WAID] = true
				}
				if p.UserID != "" {
					members[p.UserID] = true
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, id := range ids {
		r, known := prog.Requesters[id]
		member := known && (members[r.WAID] && r.WAID != "" || members[r.UserID] && r.UserID != "")
		switch {
		case earlier && known && approve && member:
			items[id] = events.ItemOutcome{ID: id, Outcome: done}
		case earlier && known && !approve && !member && !pending[id]:
			items[id] = events.ItemOutcome{ID: id, Outcome: done}
		default:
			items[id] = events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Code: graph.CodeJoinRequestUnknown,
				Reason: "join request does not exist (already handled or revoked)"}
		}
	}
	return nil
}

// bulkResult sums per-item outcomes up: all done → succeeded, none →
// failed (with the first item's code), otherwise partially_succeeded.
func bulkResult(items []events.ItemOutcome) Result {
	failed := 0
	var first *events.ItemOutcome
	for i := range items {
		if items[i].Outcome == events.ItemFailed {
			failed++
			if first == nil {
				first = &items[i]
			}
		}
	}
	switch {
	case failed == 0:
		return Result{Items: items}
	case failed == len(items):
		return Result{Outcome: events.OutcomeFailed, Items: items, Failure: &events.FailureInfo{
			Reason: events.ReasonPermanentError, Code: first.Code, Message: first.Reason,
		}}
	}
	return Result{Outcome: events.OutcomePartiallySucceeded, Items: items}
}

func firstItemError(errs []graph.ItemError) (int, string) {
	if len(errs) == 0 {
		return 0, "failed without a reason"
	}
	e := errs[0]
	reason := e.Title
	if e.Message != "" {
		reason = e.Message
	}
	if reason == "" {
		reason = fmt.Sprintf("error %d", e.Code)
	}
	// Cut as every other item reason is: Meta's text is not bounded, and
	// each failed item of a bulk command repeats it in the result.
	return e.Code, truncate(reason, 200)
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// chunks yields consecutive slices of at most n elements.
func chunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// requesterIDs are the users behind join requests ids, as a join webhook
// names them: wa_id and business-scoped user id, where known.
func requesterIDs(prog joinProgress, ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		r := prog.Requesters[id]
		for _, u := range []string{r.WAID, r.UserID} {
			if u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}
