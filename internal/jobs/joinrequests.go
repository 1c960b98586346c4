package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// joinRequestChunk is how many join request ids go in one approve or
// reject call, and in one part of the command's progress (joinPart).
const joinRequestChunk = 100

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
// participant after a rejection. What it learns and does is kept in parts
// (see joinprogress.go), whatever the number of requests.
func (w *Worker) joinRequests(ctx context.Context, job *Job, approve bool) (Result, error) {
	p, err := params[events.JoinRequestsParams](job)
	if err != nil {
		return Result{}, err
	}
	groupID := job.Command.GroupID
	named := dedupe(p.JoinRequestIDs)
	st, err := w.loadJoinState(ctx, job, named, p.AllPending)
	if err != nil {
		return Result{}, err
	}
	pending, order, err := w.pendingJoinRequests(ctx, job, named, p.AllPending)
	if err != nil {
		return Result{}, err
	}
	if p.AllPending {
		st.extend(order, pending)
	} else {
		st.extend(named, pending)
	}
	if err := w.flushJoinState(ctx, job, st); err != nil {
		return Result{}, err
	}
	ids := st.ids()
	if len(ids) == 0 {
		return Result{}, nil // nothing pending: all_pending is trivially done
	}

	done, call := events.ItemRejected, w.graph.RejectJoinRequests
	if approve {
		done, call = events.ItemApproved, w.graph.ApproveJoinRequests
	}
	items := make(map[string]events.ItemOutcome, len(ids))
	// unknown are the requests Graph called unknown (131213), and, for
	// all_pending, those gone from the list since an earlier delivery
	// listed them (its call, whose answer was lost, may have handled
	// them): judged at the end, as Graph's 131213 would be, without a call.
	var unknown []string
	for _, id := range ids {
		if it, saved := st.done(id); saved {
			items[id] = it
		} else if _, listed := pending[id]; p.AllPending && !listed {
			unknown = append(unknown, id)
		}
	}
	// unseen: a call, in an earlier delivery or retried in process, may
	// have handled requests without our seeing the answer (lost answer,
	// crash, shutdown, an outcome that could not be saved). Only then can
	// a 131213 mean "done by this command".
	unseen := hadAmbiguous(job)
	for k, part := range st.parts {
		chunk := slices.DeleteFunc(slices.Clone(part.IDs), func(id string) bool {
			_, saved := part.Done[id]
			_, listed := pending[id]
			return saved || p.AllPending && !listed
		})
		if len(chunk) == 0 {
			continue
		}
		if approve {
			// The joins this lets in name the command (group.participants_joined).
			if err := w.corr.Approving(ctx, groupID, job.Command.ID, requesterIDs(st, chunk)); err != nil {
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
					w.corr.ForgetApprovals(ctx, groupID, requesterIDs(st, chunk))
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
				st.setDone(id, it)
				saved = true
			}
		}
		if saved {
			if err := w.saveJoinPart(ctx, job, st, k); err != nil {
				return Result{}, unrecorded(err)
			}
		}
	}
	if len(unknown) > 0 {
		if err := w.judgeUnknown(ctx, job, unseen, approve, unknown, pending, st, items, done); err != nil {
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
		w.corr.ForgetApprovals(ctx, groupID, requesterIDs(st, notLetIn))
	}
	return bulkResult(out), nil
}

// pendingJoinRequests lists a group's pending join requests, whom each
// is for, and their order: every one for all_pending; otherwise those
// named, until each of them was seen.
func (w *Worker) pendingJoinRequests(ctx context.Context, job *Job, named []string, all bool) (map[string]requester, []string, error) {
	want := make(map[string]bool, len(named))
	for _, id := range named {
		want[id] = true
	}
	pending := map[string]requester{}
	var order []string
	err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) error {
		clear(pending)
		order = order[:0]
		for r, err := range w.graph.JoinRequests(ctx, job.Command.GroupID) {
			if err != nil {
				return err
			}
			if _, dup := pending[r.ID]; dup || !all && !want[r.ID] {
				continue
			}
			pending[r.ID] = requester{WAID: r.WAID, UserID: r.UserID}
			order = append(order, r.ID)
			if !all && len(pending) == len(want) {
				break
			}
		}
		return nil
	})
	return pending, order, err
}

// saveJoinPart saves part k after its call, then counts its outcomes in
// the entry: a claim lost meanwhile fails the second write if not the
// first.
func (w *Worker) saveJoinPart(ctx context.Context, job *Job, st *joinState, k int) error {
	if err := w.putJoinPart(ctx, st, k); err != nil {
		return err
	}
	return job.SetProgress(ctx, joinProgress{Parts: len(st.parts), Saved: st.saved})
}

// judgeUnknown decides the items Graph called unknown (131213): done by a
// call of this command whose answer was not seen, or really unknown.
//
// A rejection is judged on a fresh list of the pending requests: pending
// was listed before this delivery's calls, and a call retried in process
// after a lost answer finds the request gone that the list still has.
func (w *Worker) judgeUnknown(ctx context.Context, job *Job, earlier, approve bool, ids []string, pending map[string]requester, st *joinState, items map[string]events.ItemOutcome, done string) error {
	var members map[string]bool
	if earlier && !approve {
		fresh, _, err := w.pendingJoinRequests(ctx, job, ids, false)
		if err != nil {
			return err
		}
		pending = fresh
	}
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
		r, known := st.requester(id)
		member := known && (members[r.WAID] && r.WAID != "" || members[r.UserID] && r.UserID != "")
		_, isPending := pending[id]
		switch {
		case earlier && known && approve && member:
			items[id] = events.ItemOutcome{ID: id, Outcome: done}
		case earlier && known && !approve && !member && !isPending:
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
func requesterIDs(st *joinState, ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		r, _ := st.requester(id)
		for _, u := range []string{r.WAID, r.UserID} {
			if u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}
