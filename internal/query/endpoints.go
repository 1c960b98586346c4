package query

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

func (s *Service) groupInfo(ctx context.Context, phone string, data []byte) ([]byte, bool, error) {
	var req GroupInfoRequest
	if qe := decode(data, &req); qe != nil {
		return nil, false, qe
	}
	errs := checkID("group_id", req.GroupID, nil)
	fields, ferrs := canonicalFields(req.Fields)
	if errs = append(errs, ferrs...); errs != nil {
		return nil, false, badRequest(errs...)
	}
	if err := s.owned(ctx, phone, req.GroupID); err != nil {
		return nil, false, err
	}
	key := answerKey(phone, events.QueryGroupInfo, req.GroupID, strings.Join(fields, ","))
	return s.read(ctx, scope{phone, req.GroupID}, key, func(ctx context.Context) (any, error) {
		gi, err := s.cfg.Graph.GroupInfo(ctx, req.GroupID, fields...)
		if err != nil {
			return nil, err
		}
		return groupInfoReply(gi, fields), nil
	})
}

func (s *Service) listGroups(ctx context.Context, phone string, data []byte) ([]byte, bool, error) {
	var req ListGroupsRequest
	if qe := decode(data, &req); qe != nil {
		return nil, false, qe
	}
	if errs := checkPage(req.Limit, req.After, req.Before, nil); errs != nil {
		return nil, false, badRequest(errs...)
	}
	// The default is explicit so that "no limit" and "limit 25" share an entry.
	req.Limit = cmp.Or(req.Limit, defaultPageSize)
	key := answerKey(phone, events.QueryListGroups, strconv.Itoa(req.Limit), req.After, req.Before)
	return s.read(ctx, scope{phone: phone}, key, func(ctx context.Context) (any, error) {
		p, err := s.cfg.Graph.ListGroups(ctx, phone, graph.PageOptions{Limit: req.Limit, After: req.After, Before: req.Before})
		if err != nil {
			return nil, err
		}
		return listGroupsReply(p), nil
	})
}

func (s *Service) listJoinRequests(ctx context.Context, phone string, data []byte) ([]byte, bool, error) {
	var req ListJoinRequestsRequest
	if qe := decode(data, &req); qe != nil {
		return nil, false, qe
	}
	errs := checkID("group_id", req.GroupID, nil)
	if errs = checkPage(req.Limit, req.After, req.Before, errs); errs != nil {
		return nil, false, badRequest(errs...)
	}
	if err := s.owned(ctx, phone, req.GroupID); err != nil {
		return nil, false, err
	}
	key := answerKey(phone, events.QueryListJoinRequests, req.GroupID, strconv.Itoa(req.Limit), req.After, req.Before)
	return s.read(ctx, scope{phone, req.GroupID}, key, func(ctx context.Context) (any, error) {
		p, err := s.cfg.Graph.ListJoinRequests(ctx, req.GroupID, graph.PageOptions{Limit: req.Limit, After: req.After, Before: req.Before})
		if err != nil {
			return nil, err
		}
		return joinRequestsReply(p), nil
	})
}

func (s *Service) inviteLink(ctx context.Context, phone string, data []byte) ([]byte, bool, error) {
	var req InviteLinkRequest
	if qe := decode(data, &req); qe != nil {
		return nil, false, qe
	}
	if errs := checkID("group_id", req.GroupID, nil); errs != nil {
		return nil, false, badRequest(errs...)
	}
	if err := s.owned(ctx, phone, req.GroupID); err != nil {
		return nil, false, err
	}
	key := answerKey(phone, events.QueryInviteLink, req.GroupID)
	return s.read(ctx, scope{phone, req.GroupID}, key, func(ctx context.Context) (any, error) {
		link, err := s.cfg.Graph.InviteLink(ctx, req.GroupID)
		if err != nil {
			return nil, err
		}
		return InviteLinkReply{GroupID: req.GroupID, InviteLink: link}, nil
	})
}

// owned fails a read about a group that is not phone's (jobs.ErrGroupNotOwned,
// answered 404) before anything else: cached answers are the group's
// number's, and Graph would answer any number. A group known nowhere costs
// a listing of the number's groups, page by page, each page a token of the
// number's reads as any read takes.
func (s *Service) owned(ctx context.Context, phone, groupID string) error {
	return s.owners.Check(ctx, phone, []string{groupID}, func(ctx context.Context, opts graph.PageOptions) (graph.GroupsPage, error) {
		if err := s.cfg.Limiter.Wait(ctx, phone, ratelimit.Reads); err != nil {
			return graph.GroupsPage{}, err
		}
		p, err := s.cfg.Graph.ListGroups(ctx, phone, opts)
		if err != nil {
			s.shareThrottle(ctx, phone, err)
		}
		return p, err
	})
}

// commandStatus reads the ledger: never cached (callers poll it to see
// progress) and no Graph call, so no rate limit either.
func (s *Service) commandStatus(ctx context.Context, phone string, data []byte) ([]byte, bool, error) {
	var req CommandStatusRequest
	if qe := decode(data, &req); qe != nil {
		return nil, false, qe
	}
	if !events.ValidCommandID(req.CommandID) {
		msg := "1-128 of A-Z a-z 0-9 _ - . :"
		if req.CommandID == "" {
			msg = "required"
		}
		return nil, false, badRequest(events.FieldError{Field: "command_id", Message: msg})
	}
	e, _, err := s.cfg.Ledger.Get(ctx, req.CommandID)
	if err != nil {
		return nil, false, err
	}
	// A number's callers see only its commands (NATS permissions may be
	// granted per phone number subject). A command rejected before its
	// phone number was known has none.
	if e.PhoneNumberID != "" && e.PhoneNumberID != phone {
		return nil, false, jobs.ErrNotFound
	}
	r, err := CommandStatus(e)
	if err != nil {
		return nil, false, err
	}
	body, err := json.Marshal(r)
	return body, false, err
}

// read serves a Graph read through the cache: an answer cached under the
// scope's current generation, else a limiter token, the Graph call and
// a store under the generation read before the call (so an invalidation
// during the call makes the stored answer stale at once). A cache that
// fails is bypassed, never fatal: Graph still answers.
func (s *Service) read(ctx context.Context, sc scope, key string, fetch func(context.Context) (any, error)) ([]byte, bool, error) {
	var gen uint64
	useCache := s.cache != nil
	if useCache {
		g, err := s.cache.generation(ctx, sc)
		if err != nil {
			s.log.WarnContext(ctx, "query cache unavailable", slog.Any("error", err))
			useCache = false
		} else {
			gen = g
			body, hit, err := s.cache.get(ctx, key, gen)
			switch {
			case err != nil:
				s.log.WarnContext(ctx, "query cache unavailable", slog.Any("error", err))
			case hit:
				return body, true, nil
			}
		}
	}
	if err := s.cfg.Limiter.Wait(ctx, sc.phone, ratelimit.Reads); err != nil {
		return nil, false, err
	}
	v, err := fetch(ctx)
	if err != nil {
		s.shareThrottle(ctx, sc.phone, err)
		return nil, false, err
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, false, err
	}
	if useCache {
		if err := s.cache.put(ctx, key, gen, body); err != nil {
			s.log.WarnContext(ctx, "query cache store", slog.Any("error", err))
		}
	}
	return body, false, nil
}

// shareThrottle pauses what a throttling answer covers on every worker,
// as the command path does, so that neither reads nor writes keep hitting
// Meta's limit.
func (s *Service) shareThrottle(ctx context.Context, phone string, err error) {
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.Class != graph.ClassThrottled {
		return
	}
	var sc ratelimit.Scope
	switch ge.Scope() {
	case graph.ScopeApp:
		sc = ratelimit.AppScope()
	case graph.ScopeAccount:
		sc = s.cfg.Limiter.AccountOf(phone)
	case graph.ScopeNumber:
		sc = ratelimit.NumberScope(phone)
	default:
		return // a recipient's pair limit or the spam limit: not about reads
	}
	until := s.cfg.Now().Add(max(ge.RetryAfter, time.Second))
	if perr := s.cfg.Limiter.Pause(ctx, sc, until, strconv.Itoa(ge.Code)); perr != nil {
		s.log.WarnContext(ctx, "share throttle", slog.String("scope", sc.String()), slog.Any("error", perr))
	}
}
