package jobs

import (
	"context"
	"encoding/json"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// sendGroupInvite sends one invite template to one recipient. A send is
// not safe to repeat, so it is preceded by an intent; when a delivery
// finds the intent open, or the call's outcome is unknown, on_ambiguous
// decides: "fail" (the default, at most once) ends the command with
// outcome_unknown, "resend" (at least once) sends again.
func (w *Worker) sendGroupInvite(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.SendGroupInviteParams](job)
	if err != nil {
		return Result{}, err
	}
	if in := job.Entry.Intent; in != nil && in.Done {
		var r events.SendGroupInviteResult
		if json.Unmarshal(in.Outcome, &r) == nil && r.MessageID != "" {
			return Result{GroupID: p.GroupID, Data: r}, nil
		}
	}
	resend := p.OnAmbiguous == events.OnAmbiguousResend
	if job.Reconciling() && !resend {
		return outcomeUnknown(p), nil
	}
	if err := job.RecordIntent(ctx, events.SendGroupInvite); err != nil {
		return Result{}, err
	}
	var sent graph.SendResult
	err = w.call(ctx, job, ratelimit.Messages, Unsafe, func(ctx context.Context) (err error) {
		sent, err = w.graph.SendGroupInvite(ctx, job.Command.PhoneNumberID, p.To, p.GroupID,
			graph.TemplateRef{Name: p.Template.Name, Language: p.Template.Language})
		return err
	})
	if err != nil {
		if !graph.IsAmbiguous(err) {
			_ = job.ClearIntent(ctx) // nothing was sent
			return Result{}, err
		}
		if ctx.Err() == nil && !resend {
			return outcomeUnknown(p), nil
		}
		return Result{}, err // the next delivery reconciles
	}
	// The message id first: its statuses are already on their way.
	w.rememberMessage(ctx, sent.MessageID, job.Command.ID)
	r := events.SendGroupInviteResult{MessageID: sent.MessageID, WAID: sent.WAID}
	if err := job.RecordOutcome(ctx, r); err != nil {
		w.log.WarnContext(ctx, "record send outcome", "command_id", job.Command.ID, "error", err)
	}
	return Result{GroupID: p.GroupID, Data: r}, nil
}

func outcomeUnknown(p events.SendGroupInviteParams) Result {
	return Result{Outcome: events.OutcomeFailed, GroupID: p.GroupID, Failure: &events.FailureInfo{
		Reason:  events.ReasonOutcomeUnknown,
		Message: "an earlier send may or may not have reached Meta; on_ambiguous is \"fail\", so it is not sent again",
	}}
}
