package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// createOutcome is the recorded outcome of a create_group call.
type createOutcome struct {
	RequestID string `json:"request_id,omitempty"`
	GroupID   string `json:"group_id,omitempty"`
}

// createGroup creates a group; the group_create webhook with the same
// request id completes the command. Creation is not idempotent, so the
// call is preceded by an intent, and a delivery that finds the intent open
// looks for the group instead of creating a second one.
func (w *Worker) createGroup(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.CreateGroupParams](job)
	if err != nil {
		return Result{}, err
	}
	if in := job.Entry.Intent; in != nil && in.Done {
		// The call answered and the answer was recorded, but the command
		// never reached awaiting_webhook: await it now.
		var o createOutcome
		if json.Unmarshal(in.Outcome, &o) == nil {
			switch {
			case o.GroupID != "":
				return w.adoptGroup(ctx, job, o.GroupID)
			case o.RequestID != "":
				return Result{Await: []Pending{{RequestID: o.RequestID}}}, nil
			}
		}
	}
	if job.Reconciling() {
		res, found, err := w.findCreatedGroup(ctx, job, p)
		if err != nil || found {
			return res, err
		}
		if wait := w.cfg.ReconcileGrace - w.now().Sub(job.Entry.Intent.At); wait > 0 {
			// Meta creates groups asynchronously: give the one we may
			// have asked for time to appear before asking again.
			return Result{}, RetryAfter(min(wait, 5*time.Second), errors.New("group of an ambiguous create not found yet"))
		}
		// Long enough: the earlier call did not take effect.
	}
	// Noted before the call, so that another command of the subject
	// reconciling an ambiguous create waits for this one's group to be
	// claimed rather than take it.
	if err := w.corr.Creating(ctx, job.Command.PhoneNumberID, strings.TrimSpace(p.Subject), job.Command.ID, w.now(), w.cfg.WebhookTimeout); err != nil {
		return Result{}, err
	}
	if err := job.RecordIntent(ctx, events.CreateGroup); err != nil {
		return Result{}, err
	}
	var resp graph.CreateGroupResponse
	err = w.call(ctx, job, ratelimit.GroupOps, Unsafe, func(ctx context.Context) (err error) {
		resp, err = w.graph.CreateGroup(ctx, job.Command.PhoneNumberID, graph.CreateGroupRequest{
			Subject: p.Subject, Description: p.Description, JoinApprovalMode: p.JoinApprovalMode,
		})
		return err
	})
	if err != nil {
		if !graph.IsAmbiguous(err) {
			_ = job.ClearIntent(ctx) // nothing was created
		}
		return Result{}, err
	}
	// Await records the request id as the intent's outcome, in one write.
	return Result{Await: []Pending{{RequestID: resp.RequestID}}}, nil
}

// findCreatedGroup looks for the group an ambiguous create may have made:
// one of the number's groups with the command's subject, created no
// earlier than the intent (less a second of clock and rounding slack). The
// earliest such group that no other command holds (ClaimGroup) is adopted:
// another create_group of the same subject, made meanwhile, keeps its own.
// A command claims its group when its webhook comes; while another create
// of the subject is still waiting for its webhook, the unclaimed groups
// may be its, and this one waits.
func (w *Worker) findCreatedGroup(ctx context.Context, job *Job, p events.CreateGroupParams) (Result, bool, error) {
	since := job.Entry.Intent.At.Add(-time.Second).Truncate(time.Second)
	subject := strings.TrimSpace(p.Subject)
	var found []graph.GroupSummary
	err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) error {
		found = found[:0]
		for g, err := range w.graph.Groups(ctx, job.Command.PhoneNumberID, 1024) {
			if err != nil {
				return err
			}
			if g.Subject == subject && !g.CreatedAt.Before(since) {
				found = append(found, g)
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, false, err
	}
	slices.SortStableFunc(found, func(a, b graph.GroupSummary) int { return a.CreatedAt.Compare(b.CreatedAt) })
	var free []string // groups nobody claimed yet, or this command did
	for _, g := range found {
		holder, err := w.corr.GroupHolder(ctx, g.ID)
		if err != nil {
			return Result{}, false, err
		}
		if holder == "" || holder == job.Command.ID {
			free = append(free, g.ID)
		}
	}
	if len(free) == 0 {
		return Result{}, false, nil
	}
	if busy, err := w.otherCreateInFlight(ctx, job, subject); err != nil || busy != "" {
		if err == nil {
			err = RetryAfter(2*time.Second, fmt.Errorf("create_group %s of the same subject still waits for its group", busy))
		}
		return Result{}, false, err
	}
	for _, id := range free {
		holder, err := w.corr.ClaimGroup(ctx, id, job.Command.ID)
		if err != nil {
			return Result{}, false, err
		}
		if holder != job.Command.ID {
			continue // claimed meanwhile
		}
		if err := job.RecordOutcome(ctx, createOutcome{GroupID: id}); err != nil {
			return Result{}, false, err
		}
		res, err := w.adoptGroup(ctx, job, id)
		return res, err == nil, err
	}
	return Result{}, false, nil
}

// otherCreateInFlight returns another create_group command of subject on
// the number that called within WebhookTimeout and is not over yet, or "".
func (w *Worker) otherCreateInFlight(ctx context.Context, job *Job, subject string) (string, error) {
	others, err := w.corr.OthersCreating(ctx, job.Command.PhoneNumberID, subject, job.Command.ID, w.now().Add(-w.cfg.WebhookTimeout))
	if err != nil {
		return "", err
	}
	for _, id := range others {
		e, _, err := w.ledger.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return "", err
		case !e.State.Terminal():
			return id, nil
		}
	}
	return "", nil
}

// adoptGroup completes a create_group with a group found rather than
// announced by its webhook (whose request id was never learnt).
func (w *Worker) adoptGroup(ctx context.Context, job *Job, groupID string) (Result, error) {
	if err := w.owners.Learn(ctx, groupID, job.Command.PhoneNumberID); err != nil {
		return Result{}, err
	}
	var link string
	err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
		link, err = w.graph.InviteLink(ctx, groupID)
		return err
	})
	if err != nil {
		return Result{}, err
	}
	return Result{GroupID: groupID, Data: events.CreateGroupResult{GroupID: groupID, InviteLink: link}}, nil
}
