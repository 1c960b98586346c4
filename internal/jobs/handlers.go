package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// builtinHandlers is the dispatch table: one handler per command type of
// DESIGN §3. Sends that are invites of a campaign go through the campaign
// (cancel, pause, join index) first.
func (w *Worker) builtinHandlers() map[string]Handler {
	return map[string]Handler{
		events.CreateGroup:          HandlerFunc(w.createGroup),
		events.DeleteGroup:          HandlerFunc(w.deleteGroup),
		events.UpdateGroupSettings:  HandlerFunc(w.updateGroupSettings),
		events.GetInviteLink:        HandlerFunc(w.getInviteLink),
		events.ResetInviteLink:      HandlerFunc(w.resetInviteLink),
		events.ApproveJoinRequests:  HandlerFunc(w.approveJoinRequests),
		events.RejectJoinRequests:   HandlerFunc(w.rejectJoinRequests),
		events.RemoveParticipants:   HandlerFunc(w.removeParticipants),
		events.EnsureInviteTemplate: HandlerFunc(w.ensureInviteTemplate),
		events.SendGroupInvite:      w.campaignInvite(HandlerFunc(w.sendGroupInvite)),
		events.StartInviteCampaign:  HandlerFunc(w.startInviteCampaign),
		events.CancelCampaign:       HandlerFunc(w.cancelCampaign),
	}
}

// params decodes the command's params; the command was validated, so an
// error here is a bug in the contract, not worth a retry.
func params[T any](job *Job) (T, error) {
	var p T
	if err := job.Command.DecodeParams(&p); err != nil {
		return p, Permanent(err)
	}
	return p, nil
}

// getInviteLink reads the link: a read, safe to repeat.
func (w *Worker) getInviteLink(ctx context.Context, job *Job) (Result, error) {
	link, err := w.readInviteLink(ctx, job)
	if err != nil {
		return Result{}, err
	}
	return Result{Data: events.InviteLinkResult{InviteLink: link}}, nil
}

// resetInviteLink replaces the link. Resetting twice would invalidate the
// link the first reset handed out, so the link is read before the reset
// and kept with the intent. After a lost answer the link is read again:
// changed, it is the one the lost reset made; unchanged, the reset did not
// take effect and is made again.
func (w *Worker) resetInviteLink(ctx context.Context, job *Job) (Result, error) {
	if in := job.Entry.Intent; in != nil && in.Done {
		var r events.InviteLinkResult
		if json.Unmarshal(in.Outcome, &r) == nil && r.InviteLink != "" {
			return Result{Data: r}, nil
		}
	}
	current, err := w.readInviteLink(ctx, job)
	if err != nil {
		return Result{}, err
	}
	if job.Reconciling() && current != job.Entry.Intent.Before {
		// Made by the lost reset (or, for an intent kept without the old
		// link, the best that can be known).
		return Result{Data: events.InviteLinkResult{InviteLink: current}}, nil
	}
	if err := job.RecordIntentBefore(ctx, events.ResetInviteLink, current); err != nil {
		return Result{}, err
	}
	var link string
	err = w.call(ctx, job, ratelimit.GroupOps, Unsafe, func(ctx context.Context) (err error) {
		link, err = w.graph.ResetInviteLink(ctx, job.Command.GroupID)
		return err
	})
	if err != nil {
		if !graph.IsAmbiguous(err) {
			_ = job.ClearIntent(ctx)
		}
		return Result{}, err
	}
	r := events.InviteLinkResult{InviteLink: link}
	_ = job.RecordOutcome(ctx, r) // best effort: the result is recorded with the terminal state anyway
	return Result{Data: r}, nil
}

func (w *Worker) readInviteLink(ctx context.Context, job *Job) (link string, err error) {
	err = w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
		link, err = w.graph.InviteLink(ctx, job.Command.GroupID)
		return err
	})
	return link, err
}

// deleteGroup deletes a group; its group_delete webhook completes it.
// Deleting again after a lost answer finds the group gone (131041), which
// then means the first delete worked.
func (w *Worker) deleteGroup(ctx context.Context, job *Job) (Result, error) {
	ambiguousBefore := hadAmbiguous(job)
	var res graph.AsyncResult
	err := w.call(ctx, job, ratelimit.GroupOps, Safe, func(ctx context.Context) (err error) {
		res, err = w.graph.DeleteGroup(ctx, job.Command.GroupID)
		if err != nil && graph.IsAmbiguous(err) {
			ambiguousBefore = true
		}
		return err
	})
	if err != nil {
		if ambiguousBefore && codeOf(err) == graph.CodeGroupUnknown {
			return Result{}, nil
		}
		return Result{}, err
	}
	if res.RequestID == "" {
		return Result{}, nil // nothing to correlate: Graph's answer is all we get
	}
	return Result{Await: []Pending{{RequestID: res.RequestID}}}, nil
}

// hadAmbiguous reports whether an earlier delivery of the job ended with
// an error after which the call may have taken effect.
func hadAmbiguous(job *Job) bool {
	return slices.ContainsFunc(job.Entry.Attempts, mayHaveTakenEffect) || job.Reconciling()
}

func mayHaveTakenEffect(a Attempt) bool {
	return a.Outcome == "ambiguous" || a.Outcome == "cancelled" || a.Outcome == AttemptAbandoned
}

func codeOf(err error) int {
	var ge *graph.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// ClearIntent forgets an intent whose call certainly did not reach Meta,
// so the next delivery makes the call rather than reconciling.
//
// It writes even when ctx is done: a call cut short by shutdown (in the
// limiter's wait, or before its request was written) is exactly one that
// did not reach Meta, and an intent left open would have the next delivery
// reconcile it as possibly made: an invite reported outcome_unknown
// without ever being sent, a link reset reported done with the old link.
func (j *Job) ClearIntent(ctx context.Context) error {
	ctx, cancel := cleanupCtx(ctx)
	defer cancel()
	_, err := j.w.ledger.UpdateOwned(ctx, j.Command.ID, j.token, func(e *Entry) error {
		e.Intent = nil
		return nil
	})
	if err == nil {
		j.Entry.Intent = nil
	}
	return err
}
