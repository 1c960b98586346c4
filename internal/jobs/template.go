package jobs

import (
	"context"
	"fmt"
	"strings"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Meta's library names for the group invite link templates.
const (
	inviteTopic   = "group_invite_link"
	inviteUsecase = "group_invite_upon_request"
)

// ensureInviteTemplate makes sure the WABA has the named template, copied
// unchanged from the library's group invite template (editing it would lose
// utility pricing). It looks before it adds, so it is idempotent: a second
// run, or a run after a lost answer, finds the template and reports it.
// The WABA must be the command's number's (checkAccount): nothing is asked
// of Graph about another business's account.
func (w *Worker) ensureInviteTemplate(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.EnsureInviteTemplateParams](job)
	if err != nil {
		return Result{}, err
	}
	if err := w.checkAccount(ctx, job, p.WABAID); err != nil {
		return Result{}, err
	}
	if t, ok, err := w.findTemplate(ctx, job, p); err != nil || ok {
		return Result{Data: templateResult(t, false)}, err
	}
	var lib []graph.LibraryTemplate
	err = w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
		lib, err = w.graph.TemplateLibrary(ctx, graph.LibraryQuery{Topic: inviteTopic, Language: p.Language})
		return err
	})
	if err != nil {
		return Result{}, err
	}
	var pick *graph.LibraryTemplate
	for i, t := range lib {
		if t.Language != p.Language {
			continue
		}
		if pick == nil || strings.EqualFold(t.Usecase, inviteUsecase) && !strings.EqualFold(pick.Usecase, inviteUsecase) {
			pick = &lib[i]
		}
	}
	if pick == nil {
		return Result{}, Permanent(fmt.Errorf("the template library has no group invite template in language %q", p.Language))
	}
	var added graph.AccountTemplate
	err = w.call(ctx, job, ratelimit.GroupOps, Unsafe, func(ctx context.Context) (err error) {
		added, err = w.graph.AddLibraryTemplate(ctx, p.WABAID, graph.AddTemplateRequest{
			Name: p.Name, Category: cmpStr(pick.Category, "UTILITY"), Language: p.Language, LibraryTemplateName: pick.Name,
		})
		return err
	})
	if err != nil {
		// Added meanwhile (another command, or our own lost answer)?
		if t, ok, ferr := w.findTemplate(ctx, job, p); ferr == nil && ok {
			return Result{Data: templateResult(t, false)}, nil
		}
		return Result{}, err
	}
	added.Name, added.Language = cmpStr(added.Name, p.Name), cmpStr(added.Language, p.Language)
	return Result{Data: templateResult(added, true)}, nil
}

func (w *Worker) findTemplate(ctx context.Context, job *Job, p events.EnsureInviteTemplateParams) (graph.AccountTemplate, bool, error) {
	var found []graph.AccountTemplate
	err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
		found, err = w.graph.AccountTemplates(ctx, p.WABAID, p.Name)
		return err
	})
	if err != nil {
		return graph.AccountTemplate{}, false, err
	}
	for _, t := range found {
		if t.Name == p.Name && t.Language == p.Language {
			return t, true, nil
		}
	}
	return graph.AccountTemplate{}, false, nil
}

func templateResult(t graph.AccountTemplate, created bool) events.EnsureInviteTemplateResult {
	return events.EnsureInviteTemplateResult{TemplateID: t.ID, Name: t.Name, Language: t.Language, Status: cmpStr(t.Status, "PENDING"), Created: created}
}
