package jobs

import (
	"context"
	"iter"
	"time"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Graph is what the handlers need of the Graph API client.
type Graph interface {
	CreateGroup(ctx context.Context, phoneID string, req graph.CreateGroupRequest) (graph.CreateGroupResponse, error)
	Groups(ctx context.Context, phoneID string, limit int) iter.Seq2[graph.GroupSummary, error]
	ListGroups(ctx context.Context, phoneID string, opts graph.PageOptions) (graph.GroupsPage, error)
	GroupInfo(ctx context.Context, groupID string, fields ...string) (graph.GroupInfo, error)
	UpdateGroupSettings(ctx context.Context, groupID string, req graph.UpdateSettingsRequest) (graph.AsyncResult, error)
	UpdateGroupPicture(ctx context.Context, groupID string, jpeg []byte) (graph.AsyncResult, error)
	DeleteGroup(ctx context.Context, groupID string) (graph.AsyncResult, error)
	InviteLink(ctx context.Context, groupID string) (string, error)
	ResetInviteLink(ctx context.Context, groupID string) (string, error)
	JoinRequests(ctx context.Context, groupID string) iter.Seq2[graph.JoinRequest, error]
	ApproveJoinRequests(ctx context.Context, groupID string, ids []string) (graph.JoinRequestsResult, error)
	RejectJoinRequests(ctx context.Context, groupID string, ids []string) (graph.JoinRequestsResult, error)
	RemoveParticipants(ctx context.Context, groupID string, participants []string) ([]graph.RemoveResult, error)
	TemplateLibrary(ctx context.Context, q graph.LibraryQuery) ([]graph.LibraryTemplate, error)
	AccountTemplates(ctx context.Context, wabaID, name string) ([]graph.AccountTemplate, error)
	AccountPhoneNumbers(ctx context.Context, wabaID string) ([]string, error)
	AddLibraryTemplate(ctx context.Context, wabaID string, req graph.AddTemplateRequest) (graph.AccountTemplate, error)
	SendGroupInvite(ctx context.Context, phoneID, to, groupID string, tpl graph.TemplateRef) (graph.SendResult, error)
}

var _ Graph = (*graph.Client)(nil)

// Limiter paces Graph calls per phone number and shares Meta's throttles
// between workers (ratelimit.Limiter).
type Limiter interface {
	Wait(ctx context.Context, phone string, class ratelimit.Class) error
	// AdmitBehind tells, without waiting, whether a Wait now, behind
	// ahead callers admitted earlier, would end within the limiter's
	// bound (nil), or the *ratelimit.ThrottledError it would return.
	AdmitBehind(ctx context.Context, phone string, class ratelimit.Class, ahead int64) error
	Pause(ctx context.Context, scope ratelimit.Scope, until time.Time, reason string) error
	// Limit is the number's limit for class across all workers, in calls
	// per second.
	Limit(phone string, class ratelimit.Class) float64
	AccountOf(phone string) ratelimit.Scope
}

var _ Limiter = (*ratelimit.Limiter)(nil)
