package jobs

import (
	"context"
	"errors"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// removeProgress is what remove_participants learnt outside its pending
// requests: participants refused at once, participants removed by a call
// whose answer was lost (a repeat then says "not in group", 131212), and
// what the webhooks of an earlier run settled (see foldRemovals).
type removeProgress struct {
	Failed  []events.ItemOutcome `json:"failed,omitempty"`
	Removed []string             `json:"removed,omitempty"`
	// Unsure are participants to send again, after a webhook failed them
	// transiently, whose last request was itself sent unsure.
	Unsure []string `json:"unsure,omitempty"`
	// Refusal is the first chunk Graph refused for good, and how: the
	// command's failure when every participant failed, its first among
	// them (Failed's items hold only the code).
	Refusal *chunkRefusal `json:"refusal,omitempty"`
}

// chunkRefusal is Graph's permanent refusal of one removal call.
type chunkRefusal struct {
	Participants []string           `json:"participants"`
	Error        events.FailureInfo `json:"error"`
}

// removeParticipants removes participants in chunks of at most eight, one
// call per chunk. Each chunk's request id is recorded as soon as it is
// known, so a redelivery sends only the chunks not sent yet; the command
// completes when every chunk's group_participants_remove webhook came.
func (w *Worker) removeParticipants(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.RemoveParticipantsParams](job)
	if err != nil {
		return Result{}, err
	}
	groupID := job.Command.GroupID
	all := dedupe(p.Participants)
	var prog removeProgress
	job.Progress(&prog)
	// The first chunk this delivery sends is the one an earlier delivery
	// may have been sending when it was cut off (or whose outcome it
	// could not save). Any such attempt counts, not only the last: a
	// throttled delivery after it sent nothing.
	// A run after a webhook retry knows its calls' outcomes from their
	// webhooks; only its own attempts can leave one in doubt.
	carried := ambiguousThisRun(job)
	for chunk := range chunks(all, graph.MaxParticipantsPerRemove) {
		// Participants settled by an earlier run are not sent again.
		chunk = slices.DeleteFunc(slices.Clone(chunk), func(id string) bool { return handled(id, job.Entry.Pending, prog) })
		if len(chunk) == 0 {
			continue
		}
		// unsure: a call for this chunk may already have removed its
		// participants, so "not in group" (131212) now means removed.
		unsure := carried || slices.ContainsFunc(chunk, func(id string) bool { return slices.Contains(prog.Unsure, id) })
		carried = false
		var rr []graph.RemoveResult
		err := w.call(ctx, job, ratelimit.GroupOps, Safe, func(ctx context.Context) (err error) {
			rr, err = w.graph.RemoveParticipants(ctx, groupID, chunk)
			if err != nil && graph.IsAmbiguous(err) {
				unsure = true
			}
			return err
		})
		switch {
		case err == nil:
		case errors.Is(err, errExpired):
			// Nothing more is sent: the chunks left are reported as
			// expired beside what was done, or the whole command
			// expires if nothing was.
			if len(job.Entry.Pending) == 0 && len(prog.Removed) == 0 && len(prog.Failed) == 0 {
				if unsure || hadAmbiguous(job) {
					return Result{}, errExpiredUnknown
				}
				return Result{}, err
			}
			for _, id := range chunk {
				prog.Failed = append(prog.Failed, expiredItem(id))
			}
		case unsure && codeOf(err) == graph.CodeParticipantNotInGroup:
			prog.Removed = append(prog.Removed, chunk...)
		case graph.ClassOf(err) == graph.ClassPermanent:
			fi := failure(events.ReasonPermanentError, err)
			for _, id := range chunk {
				prog.Failed = append(prog.Failed, events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Code: fi.Code, Reason: truncate(err.Error(), 200)})
			}
			if prog.Refusal == nil {
				prog.Refusal = &chunkRefusal{Participants: chunk, Error: *fi}
			}
		default:
			_ = job.SetProgress(ctx, prog)
			return Result{}, err
		}
		for _, r := range rr {
			failed := map[string]bool{}
			for _, f := range r.Failed {
				code, reason := firstItemError(f.Errors)
				if unsure && code == graph.CodeParticipantNotInGroup {
					continue // removed by the earlier call: counted below
				}
				prog.Failed = append(prog.Failed, events.ItemOutcome{ID: f.ID, Outcome: events.ItemFailed, Code: code, Reason: reason})
				failed[f.ID] = true
			}
			var rest []string
			for _, id := range r.Participants {
				if !failed[id] {
					rest = append(rest, id)
				}
			}
			switch {
			case len(rest) == 0:
			case r.RequestID == "":
				prog.Removed = append(prog.Removed, rest...) // nothing to wait for
			default:
				if err := job.AddPending(ctx, Pending{RequestID: r.RequestID, Items: rest, Unsure: unsure}); err != nil {
					return Result{}, unrecorded(err)
				}
			}
		}
		if err := job.SetProgress(ctx, prog); err != nil {
			return Result{}, unrecorded(err)
		}
	}
	var waiting []Pending
	for _, pd := range job.Entry.Pending {
		if !pd.Done {
			waiting = append(waiting, pd)
		}
	}
	if len(waiting) == 0 {
		return w.completion(job.Command, job.Entry, false), nil
	}
	return Result{Await: waiting}, nil
}

func handled(id string, pending []Pending, prog removeProgress) bool {
	return slices.Contains(prog.Removed, id) || slices.ContainsFunc(prog.Failed, func(o events.ItemOutcome) bool { return o.ID == id }) ||
		slices.ContainsFunc(pending, func(p Pending) bool { return slices.Contains(p.Items, id) })
}

// ambiguousThisRun is hadAmbiguous for the command's current run: the
// attempts since it last ran again after a webhook (whose participants in
// doubt removeProgress.Unsure names).
func ambiguousThisRun(job *Job) bool {
	a := job.Entry.Attempts
	for i := len(a) - 1; i >= 0; i-- {
		if a[i].Outcome == attemptWebhookRetry {
			a = a[i+1:]
			break
		}
	}
	return slices.ContainsFunc(a, mayHaveTakenEffect) || job.Reconciling()
}
