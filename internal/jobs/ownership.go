package jobs

import (
	"context"
	"errors"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/webhook"
)

// ownGroup is the middleware that carries out a command naming a group
// only when the group belongs to the command's phone number (Owners): a
// caller limited to its own number must not reach another business's
// group through it. A group that is not the number's fails the command
// with group_not_owned before the handler runs, so nothing is asked of
// Graph about it. A group known to be the number's costs a look in the
// cache; one known nowhere, a listing of the number's groups.
func (w *Worker) ownGroup(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job) (Result, error) {
		if g := commandGroup(job.Command); g != "" {
			if err := w.checkGroups(ctx, job, []string{g}); err != nil {
				return Result{}, err
			}
		}
		return next.Handle(ctx, job)
	})
}

// commandGroup is the group a command acts on, or "": the top-level
// group_id of group-scoped types, the invite's group of send_group_invite.
// A campaign's groups are checked when it starts (campaigns.create).
func commandGroup(c events.Command) string {
	switch {
	case events.GroupScoped(c.Type):
		return c.GroupID
	case c.Type == events.SendGroupInvite:
		var p events.SendGroupInviteParams
		if c.DecodeParams(&p) == nil {
			return p.GroupID
		}
	}
	return ""
}

// checkGroups checks that groups belong to the job's phone number, listing
// its groups page by page, each page a call through the number's rate
// limiter, when some group is known nowhere. A group that is not the
// number's is a permanent failure (reason group_not_owned); a listing that
// fails is retried as any Graph read is.
func (w *Worker) checkGroups(ctx context.Context, job *Job, groups []string) error {
	phone := job.Command.PhoneNumberID
	err := w.owners.Check(ctx, phone, groups, func(ctx context.Context, opts graph.PageOptions) (page graph.GroupsPage, err error) {
		err = w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
			page, err = w.graph.ListGroups(ctx, phone, opts)
			return err
		})
		return page, err
	})
	if errors.Is(err, ErrGroupNotOwned) {
		return Permanent(err)
	}
	return err
}

// learnOwner records the group of a webhook item as the item's number's:
// Meta sends every webhook of a group under the number it belongs to. A
// failed create's item names a group that was never made.
func (w *Worker) learnOwner(ctx context.Context, it webhook.Item, p webhook.Payload) error {
	g := p.Group
	if g == nil || g.GroupID == "" || g.Type == webhook.TypeGroupCreate && len(g.Errors) > 0 {
		return nil
	}
	phone := cmpStr(it.PhoneNumberID, p.Metadata.PhoneNumberID)
	if !events.ValidToken(phone) {
		return nil
	}
	return w.owners.Learn(ctx, g.GroupID, phone)
}
