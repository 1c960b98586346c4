package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
)

// Requests and replies of the endpoints, as JSON on the wire (schemas
// internal/events/schemas/query.<name>.{request,reply}.json). Callers in Go
// can use these types; others read the schemas.

// GroupInfoRequest asks for one group's current state.
type GroupInfoRequest struct {
	GroupID string `json:"group_id"`
	// Fields selects what to read, by Graph's names (fact sheet §2.4:
	// subject, description, participants, join_approval_mode, suspended,
	// creation_timestamp, total_participant_count). Empty: all of them.
	// The subject is always read.
	Fields []string `json:"fields,omitempty"`
}

// GroupInfoReply is a group's state. Fields that were not asked for are
// absent.
type GroupInfoReply struct {
	ID                    string           `json:"id"`
	Subject               string           `json:"subject"`
	Description           *string          `json:"description,omitempty"`
	Participants          []ParticipantRef `json:"participants,omitzero"`
	JoinApprovalMode      string           `json:"join_approval_mode,omitempty"`
	Suspended             *bool            `json:"suspended,omitempty"`
	CreationTime          time.Time        `json:"creation_time,omitzero"`
	TotalParticipantCount *int             `json:"total_participant_count,omitempty"`
}

// ParticipantRef identifies a WhatsApp user as Meta gave it.
type ParticipantRef struct {
	WAID         string `json:"wa_id,omitempty"`
	UserID       string `json:"user_id,omitempty"`
	ParentUserID string `json:"parent_user_id,omitempty"`
	Username     string `json:"username,omitempty"`
}

// ListGroupsRequest asks for one page of the number's active groups.
// Cursors are Graph's, passed through.
type ListGroupsRequest struct {
	// Limit is the page size, 1 to 1024. Defaults to 25.
	Limit  int    `json:"limit,omitempty"`
	After  string `json:"after,omitempty"`
	Before string `json:"before,omitempty"`
}

// ListGroupsReply is one page of groups.
type ListGroupsReply struct {
	Groups []GroupSummary `json:"groups"`
	// After is the cursor of the next page, absent on the last page.
	After  string `json:"after,omitempty"`
	Before string `json:"before,omitempty"`
	// HasNext reports whether a page after this one exists.
	HasNext bool `json:"has_next"`
}

// GroupSummary is one entry of ListGroupsReply.
type GroupSummary struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// ListJoinRequestsRequest asks for one page of a group's pending join
// requests.
type ListJoinRequestsRequest struct {
	GroupID string `json:"group_id"`
	// Limit is the page size, 1 to 1024. Defaults to Graph's.
	Limit  int    `json:"limit,omitempty"`
	After  string `json:"after,omitempty"`
	Before string `json:"before,omitempty"`
}

// ListJoinRequestsReply is one page of join requests.
type ListJoinRequestsReply struct {
	JoinRequests []JoinRequest `json:"join_requests"`
	After        string        `json:"after,omitempty"`
	Before       string        `json:"before,omitempty"`
	HasNext      bool          `json:"has_next"`
}

// JoinRequest is a pending request to join a group.
type JoinRequest struct {
	JoinRequestID string         `json:"join_request_id"`
	Participant   ParticipantRef `json:"participant"`
	CreatedAt     time.Time      `json:"created_at,omitzero"`
}

// InviteLinkRequest asks for a group's current invite link.
type InviteLinkRequest struct {
	GroupID string `json:"group_id"`
}

// InviteLinkReply is a group's current invite link.
type InviteLinkReply struct {
	GroupID    string `json:"group_id"`
	InviteLink string `json:"invite_link"`
}

// CommandStatusRequest asks what the ledger knows about a command id.
type CommandStatusRequest struct {
	CommandID string `json:"command_id"`
}

// CommandStatusReply is a command's ledger entry, as callers need it.
type CommandStatusReply struct {
	CommandID     string `json:"command_id"`
	CommandType   string `json:"command_type,omitempty"`
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	// State is the ledger state: queued (parked until its number's rate
	// limit can take it), running, awaiting_webhook, succeeded,
	// partially_succeeded, failed or rejected.
	State string `json:"state"`
	// Attempts counts execution attempts so far.
	Attempts  int       `json:"attempts"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Result is the data of the terminal event (events.CommandResult), once
	// there is one.
	Result json.RawMessage `json:"result,omitempty"`
}

// CommandStatus is the documented status of a ledger entry: what the
// command_status query and the ingest's GET /v1/commands/{id} answer
// (schema query.command_status.reply.json). It leaves out everything
// internal to the ledger (the claim, its lease, intents, progress, the
// command as received), which callers must not come to depend on.
func CommandStatus(e jobs.Entry) (CommandStatusReply, error) {
	r := CommandStatusReply{
		CommandID: e.CommandID, CommandType: e.CommandType, PhoneNumberID: e.PhoneNumberID,
		State: string(e.State), Attempts: len(e.Attempts), CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
	if e.Result != nil {
		var ce struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(e.Result.Event, &ce); err != nil {
			return CommandStatusReply{}, fmt.Errorf("decode terminal event of %s: %w", e.CommandID, err)
		}
		r.Result = ce.Data
	}
	return r, nil
}

const (
	defaultPageSize = 25
	maxPageSize     = 1024
	maxIDLength     = 256
)

// decode reads a request strictly: one JSON object, no unknown fields, no
// trailing data. An empty body is an empty object, so
// `nats req groups.query.<phone>.list_groups ”` works.
func decode(data []byte, v any) *Error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil
	}
	if data[0] != '{' {
		return badRequest(events.FieldError{Message: "the request must be a JSON object"})
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest(events.FieldError{Field: jsonField(err), Message: jsonProblem(err)})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(events.FieldError{Message: "trailing data after the JSON object"})
	}
	return nil
}

func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return strings.Trim(f, `"`)
	}
	return ""
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		return "must be " + jsonKind(te.Type.Kind().String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field"
	}
	return "not valid JSON"
}

func jsonKind(k string) string {
	switch k {
	case "int", "int64":
		return "an integer"
	case "slice":
		return "an array"
	}
	return "a " + k
}

// checkID validates an opaque Graph id (schema common.json opaque_id):
// printable ASCII without spaces, 1 to 256 bytes.
func checkID(field, id string, errs []events.FieldError) []events.FieldError {
	switch {
	case id == "":
		return append(errs, events.FieldError{Field: field, Message: "required"})
	case len(id) > maxIDLength:
		return append(errs, events.FieldError{Field: field, Message: fmt.Sprintf("at most %d characters", maxIDLength)})
	}
	for i := range len(id) {
		if id[i] < '!' || id[i] > '~' {
			return append(errs, events.FieldError{Field: field, Message: "printable ASCII without spaces"})
		}
	}
	if id == "." || id == ".." {
		// Path segments every server resolves, not ids: GET
		// /v23.0/../invite_link is GET /invite_link.
		return append(errs, events.FieldError{Field: field, Message: "a Graph id, not . or .."})
	}
	return errs
}

func checkPage(limit int, after, before string, errs []events.FieldError) []events.FieldError {
	if limit != 0 && (limit < 1 || limit > maxPageSize) {
		errs = append(errs, events.FieldError{Field: "limit", Message: fmt.Sprintf("between 1 and %d", maxPageSize)})
	}
	if after != "" && before != "" {
		errs = append(errs, events.FieldError{Field: "before", Message: "after and before are exclusive"})
	}
	for field, c := range map[string]string{"after": after, "before": before} {
		if len(c) > 4096 {
			errs = append(errs, events.FieldError{Field: field, Message: "cursor too long"})
		}
	}
	return errs
}

// canonicalFields validates and orders the requested fields, so the same
// selection in any order or with repeats shares one cache entry. The
// subject is always included: the reply requires it.
func canonicalFields(fields []string) ([]string, []events.FieldError) {
	if len(fields) == 0 {
		return graph.AllGroupFields, nil
	}
	var errs []events.FieldError
	for i, f := range fields {
		if !slices.Contains(graph.AllGroupFields, f) {
			errs = append(errs, events.FieldError{Field: fmt.Sprintf("fields[%d]", i),
				Message: "unknown field; one of " + strings.Join(graph.AllGroupFields, ", ")})
		}
	}
	if errs != nil {
		return nil, errs
	}
	var out []string
	for _, f := range graph.AllGroupFields {
		if f == graph.FieldSubject || slices.Contains(fields, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

func groupInfoReply(gi graph.GroupInfo, fields []string) GroupInfoReply {
	r := GroupInfoReply{ID: gi.ID, Subject: gi.Subject}
	for _, f := range fields {
		switch f {
		case graph.FieldDescription:
			r.Description = &gi.Description
		case graph.FieldParticipants:
			r.Participants = make([]ParticipantRef, 0, len(gi.Participants))
			for _, p := range gi.Participants {
				r.Participants = append(r.Participants, ParticipantRef{WAID: p.WAID, UserID: p.UserID, ParentUserID: p.ParentUserID, Username: p.Username})
			}
		case graph.FieldJoinApprovalMode:
			r.JoinApprovalMode = gi.JoinApprovalMode
		case graph.FieldSuspended:
			r.Suspended = &gi.Suspended
		case graph.FieldCreationTimestamp:
			r.CreationTime = gi.CreationTimestamp.UTC()
		case graph.FieldTotalParticipantCount:
			r.TotalParticipantCount = &gi.TotalParticipantCount
		}
	}
	return r
}

func listGroupsReply(p graph.GroupsPage) ListGroupsReply {
	r := ListGroupsReply{Groups: make([]GroupSummary, 0, len(p.Groups)), Before: p.Before, HasNext: p.HasNext}
	if p.HasNext {
		r.After = p.After
	}
	for _, g := range p.Groups {
		r.Groups = append(r.Groups, GroupSummary{ID: g.ID, Subject: g.Subject, CreatedAt: g.CreatedAt.UTC()})
	}
	return r
}

func joinRequestsReply(p graph.JoinRequestsPage) ListJoinRequestsReply {
	r := ListJoinRequestsReply{JoinRequests: make([]JoinRequest, 0, len(p.Requests)), Before: p.Before, HasNext: p.HasNext}
	if p.HasNext {
		r.After = p.After
	}
	for _, jr := range p.Requests {
		r.JoinRequests = append(r.JoinRequests, JoinRequest{
			JoinRequestID: jr.ID,
			Participant:   ParticipantRef{WAID: jr.WAID, UserID: jr.UserID, ParentUserID: jr.ParentUserID, Username: jr.Username},
			CreatedAt:     jr.CreatedAt.UTC(),
		})
	}
	return r
}
