package query

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/events"
)

// ErrCacheOff is returned by the Invalidate methods when the cache is off
// or the service is not started.
var ErrCacheOff = errors.New("query: cache not running")

// InvalidateGroup makes every cached answer about groupID (group_info,
// list_join_requests, invite_link) stale, on every worker.
func (s *Service) InvalidateGroup(ctx context.Context, phone, groupID string) error {
	if groupID == "" {
		return errors.New("query: invalidate: empty group id")
	}
	return s.invalidate(ctx, scope{phone, groupID})
}

// InvalidateNumber makes the cached list_groups answers of phone stale,
// on every worker.
func (s *Service) InvalidateNumber(ctx context.Context, phone string) error {
	return s.invalidate(ctx, scope{phone: phone})
}

func (s *Service) invalidate(ctx context.Context, sc scope) error {
	if !validPhone(sc.phone) {
		return errors.New("query: invalidate: phone number id must be numeric")
	}
	s.mu.Lock()
	c := s.cache
	s.mu.Unlock()
	if c == nil {
		return ErrCacheOff
	}
	return c.invalidate(ctx, sc)
}

// eventAttrs is what invalidation needs of a CloudEvent (structured JSON):
// the groupid extension and, for terminal events, the command type.
type eventAttrs struct {
	GroupID string `json:"groupid"`
	Data    struct {
		CommandType string `json:"command_type"`
	} `json:"data"`
}

// onEvent invalidates from the events the workers publish after a webhook
// or a command result: a core NATS queue subscription, so one worker
// handles each event (the cache is shared) and nothing durable is left
// behind. An event missed while no worker runs costs at most one TTL of
// staleness.
func (s *Service) onEvent(msg *nats.Msg) {
	rest, ok := strings.CutPrefix(msg.Subject, s.prefix()+".event.")
	if !ok {
		return
	}
	phone, typ, ok := strings.Cut(rest, ".")
	if !ok || !validPhone(phone) {
		return
	}
	var ev eventAttrs
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		s.log.Warn("query invalidation: undecodable event", slog.String("subject", msg.Subject), slog.Any("error", err))
		return
	}
	group, list := affects(typ, ev.Data.CommandType)
	ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	defer cancel()
	if group && ev.GroupID != "" {
		if err := s.InvalidateGroup(ctx, phone, ev.GroupID); err != nil {
			s.log.Warn("query invalidation", slog.String("event_type", typ), slog.String("group_id", ev.GroupID), slog.Any("error", err))
		}
	}
	if list {
		if err := s.InvalidateNumber(ctx, phone); err != nil {
			s.log.Warn("query invalidation", slog.String("event_type", typ), slog.String("phone_number_id", phone), slog.Any("error", err))
		}
	}
}

// affects tells whether an event of type typ (for a terminal event, of a
// command of cmdType) may change the group's answers and the number's
// group list. Every group event and every command that acts on the group
// may change it; only what changes existence or subject changes the list.
// Reads, messages and campaigns change nothing about the group (the joins
// an invite brings arrive as group events), and each of their results
// would otherwise cost a cache write: one per invite of a campaign.
func affects(typ, cmdType string) (group, list bool) {
	switch {
	case strings.HasPrefix(typ, "group."):
		switch typ {
		case events.EventGroupCreated, events.EventGroupDeleted, events.EventGroupSettingsUpdated,
			events.EventGroupSuspended, events.EventGroupSuspensionCleared:
			return true, true
		}
		return true, false
	case typ == events.EventCommandRejected:
		return false, false // nothing was sent to Graph
	case strings.HasPrefix(typ, "command."):
		switch cmdType {
		case events.CreateGroup, events.DeleteGroup, events.UpdateGroupSettings:
			return true, true
		case events.GetInviteLink, events.SendGroupInvite, events.EnsureInviteTemplate,
			events.StartInviteCampaign, events.CancelCampaign:
			return false, false
		}
		return true, false
	}
	return false, false
}
