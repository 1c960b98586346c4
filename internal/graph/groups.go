package graph

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"iter"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// Join approval modes of a group, fixed at creation.
const (
	JoinApprovalRequired = "approval_required"
	JoinAutoApprove      = "auto_approve"
)

// CreateGroupRequest is the body of a group creation. Graph validates it
// (subject 1–128 characters after trimming, description ≤ 2048).
type CreateGroupRequest struct {
	Subject     string
	Description string
	// JoinApprovalMode is JoinApprovalRequired or JoinAutoApprove; empty
	// leaves Graph's default (auto_approve).
	JoinApprovalMode string
}

// CreateGroupResponse is the synchronous answer to a creation. The group id
// arrives later, in the group_create webhook carrying the same RequestID.
type CreateGroupResponse struct {
	RequestID string
}

// AsyncResult is the synchronous answer to an operation completed by a
// webhook carrying the same RequestID (settings update, delete, removal).
// RequestID may be empty when Graph only answers {"success": true}.
type AsyncResult struct {
	RequestID string
}

// CreateGroup asks Graph to create a group owned by phoneID. It is not
// idempotent: after an error for which IsAmbiguous is true, a group may
// exist; do not retry blindly.
func (c *Client) CreateGroup(ctx context.Context, phoneID string, req CreateGroupRequest) (CreateGroupResponse, error) {
	const ep = EndpointCreateGroup
	if err := requireIDs(ep, phoneID); err != nil {
		return CreateGroupResponse{}, err
	}
	body := struct {
		MessagingProduct string `json:"messaging_product"`
		Subject          string `json:"subject"`
		Description      string `json:"description,omitempty"`
		JoinApprovalMode string `json:"join_approval_mode,omitempty"`
	}{messagingProduct, req.Subject, req.Description, req.JoinApprovalMode}
	var out struct {
		RequestID flexString `json:"request_id"`
	}
	resp, err := c.call(ctx, request{endpoint: ep, method: "POST", path: "{phone_number_id}/groups", ids: []string{phoneID}, json: body}, &out)
	if err != nil {
		return CreateGroupResponse{}, err
	}
	if out.RequestID == "" {
		// Without it the creation webhook cannot be correlated.
		return CreateGroupResponse{}, c.malformed(ep, resp.status, "no request_id")
	}
	return CreateGroupResponse{RequestID: string(out.RequestID)}, nil
}

// GroupSummary is one entry of the active-groups list.
type GroupSummary struct {
	ID        string
	Subject   string
	CreatedAt time.Time
}

// GroupsPage is one page of active groups.
type GroupsPage struct {
	Groups []GroupSummary
	// After and Before are the cursors for the neighbouring pages.
	After, Before string
	// HasNext reports whether a page after this one exists.
	HasNext bool
}

type wireGroupSummary struct {
	ID        flexString `json:"id"`
	Subject   string     `json:"subject"`
	CreatedAt flexTime   `json:"created_at"`
}

// wireGroupsData is the "data" member of the groups list: documented as
// {"groups": [...]}, tolerated as a bare list.
type wireGroupsData struct {
	Groups []wireGroupSummary
}

func (d *wireGroupsData) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		return json.Unmarshal(b, &d.Groups)
	}
	var obj struct {
		Groups []wireGroupSummary `json:"groups"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	d.Groups = obj.Groups
	return nil
}

type wireGroupsPage struct {
	Data   wireGroupsData `json:"data"`
	Paging wirePaging     `json:"paging"`
}

// ListGroups returns one page of the groups phoneID belongs to.
func (c *Client) ListGroups(ctx context.Context, phoneID string, opts PageOptions) (GroupsPage, error) {
	const ep = EndpointListGroups
	if err := requireIDs(ep, phoneID); err != nil {
		return GroupsPage{}, err
	}
	var out wireGroupsPage
	_, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "{phone_number_id}/groups", ids: []string{phoneID}, query: opts.query(nil)}, &out)
	if err != nil {
		return GroupsPage{}, err
	}
	page := GroupsPage{
		Groups:  make([]GroupSummary, 0, len(out.Data.Groups)),
		After:   out.Paging.Cursors.After,
		Before:  out.Paging.Cursors.Before,
		HasNext: out.Paging.hasNext(),
	}
	for _, g := range out.Data.Groups {
		page.Groups = append(page.Groups, GroupSummary{ID: string(g.ID), Subject: g.Subject, CreatedAt: g.CreatedAt.Time()})
	}
	return page, nil
}

// Groups iterates over every active group of phoneID, limit per page (0:
// Graph's default). It yields at most one error, then stops.
func (c *Client) Groups(ctx context.Context, phoneID string, limit int) iter.Seq2[GroupSummary, error] {
	return paginate(ctx, EndpointListGroups, func(ctx context.Context, after string) ([]GroupSummary, string, bool, error) {
		p, err := c.ListGroups(ctx, phoneID, PageOptions{Limit: limit, After: after})
		return p.Groups, p.After, p.HasNext, err
	})
}

// Group info fields accepted by GroupInfo.
const (
	FieldSubject               = "subject"
	FieldDescription           = "description"
	FieldParticipants          = "participants"
	FieldJoinApprovalMode      = "join_approval_mode"
	FieldSuspended             = "suspended"
	FieldCreationTimestamp     = "creation_timestamp"
	FieldTotalParticipantCount = "total_participant_count"
)

// AllGroupFields is what GroupInfo asks for when given no fields.
var AllGroupFields = []string{
	FieldSubject, FieldDescription, FieldParticipants, FieldJoinApprovalMode,
	FieldSuspended, FieldCreationTimestamp, FieldTotalParticipantCount,
}

// Participant is a group member other than the business. With
// business-scoped user ids, WAID may be empty and UserID set.
type Participant struct {
	WAID         string
	UserID       string
	ParentUserID string
	Username     string
}

// ID returns the participant's phone-based id, else its business-scoped
// user id.
func (p Participant) ID() string {
	if p.WAID != "" {
		return p.WAID
	}
	return p.UserID
}

// GroupInfo is a group's metadata. Fields not requested are zero.
type GroupInfo struct {
	ID                    string
	Subject               string
	Description           string
	Participants          []Participant
	JoinApprovalMode      string
	Suspended             bool
	CreationTimestamp     time.Time
	TotalParticipantCount int
}

type wireParticipant struct {
	WAID         flexString `json:"wa_id"`
	UserID       string     `json:"user_id"`
	ParentUserID string     `json:"parent_user_id"`
	Username     string     `json:"username"`
}

func (w wireParticipant) participant() Participant {
	return Participant{WAID: string(w.WAID), UserID: w.UserID, ParentUserID: w.ParentUserID, Username: w.Username}
}

type wireGroupInfo struct {
	ID                    flexString                `json:"id"`
	Subject               string                    `json:"subject"`
	Description           string                    `json:"description"`
	Participants          flexList[wireParticipant] `json:"participants"`
	JoinApprovalMode      string                    `json:"join_approval_mode"`
	Suspended             flexBool                  `json:"suspended"`
	CreationTimestamp     flexTime                  `json:"creation_timestamp"`
	TotalParticipantCount flexInt                   `json:"total_participant_count"`
}

// GroupInfo returns the requested fields of a group (FieldSubject, …). With
// no fields it asks for AllGroupFields: Graph itself would answer only the
// id.
func (c *Client) GroupInfo(ctx context.Context, groupID string, fields ...string) (GroupInfo, error) {
	const ep = EndpointGroupInfo
	if err := requireIDs(ep, groupID); err != nil {
		return GroupInfo{}, err
	}
	if len(fields) == 0 {
		fields = AllGroupFields
	}
	q := url.Values{"fields": {strings.Join(fields, ",")}}
	var out wireGroupInfo
	if _, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "{group_id}", ids: []string{groupID}, query: q}, &out); err != nil {
		return GroupInfo{}, err
	}
	info := GroupInfo{
		ID:                    cmp.Or(string(out.ID), groupID),
		Subject:               out.Subject,
		Description:           out.Description,
		JoinApprovalMode:      out.JoinApprovalMode,
		Suspended:             bool(out.Suspended),
		CreationTimestamp:     out.CreationTimestamp.Time(),
		TotalParticipantCount: int(out.TotalParticipantCount),
	}
	for _, p := range out.Participants {
		info.Participants = append(info.Participants, p.participant())
	}
	return info, nil
}

// UpdateSettingsRequest changes a group's subject and/or description; nil
// leaves a setting unchanged, a pointer to "" clears the description.
type UpdateSettingsRequest struct {
	Subject     *string
	Description *string
}

// wireAsync is the synchronous answer to an asynchronous operation.
type wireAsync struct {
	Success   *flexBool  `json:"success"`
	RequestID flexString `json:"request_id"`
}

// asyncResult turns a wireAsync into an AsyncResult. An explicit
// "success": false without an error object is a refusal.
func (c *Client) asyncResult(ep string, resp response, out wireAsync) (AsyncResult, error) {
	if out.Success != nil && !bool(*out.Success) {
		return AsyncResult{}, c.redact(&Error{Endpoint: ep, HTTPStatus: resp.status,
			Message: "graph answered success: false", Class: ClassPermanent})
	}
	return AsyncResult{RequestID: string(out.RequestID)}, nil
}

// UpdateGroupSettings changes a group's subject and/or description. The
// outcome of each setting arrives in a group_settings_update webhook.
func (c *Client) UpdateGroupSettings(ctx context.Context, groupID string, req UpdateSettingsRequest) (AsyncResult, error) {
	const ep = EndpointUpdateGroupSettings
	if err := requireIDs(ep, groupID); err != nil {
		return AsyncResult{}, err
	}
	if req.Subject == nil && req.Description == nil {
		return AsyncResult{}, invalid(ep, "nothing to update")
	}
	body := struct {
		MessagingProduct string  `json:"messaging_product"`
		Subject          *string `json:"subject,omitempty"`
		Description      *string `json:"description,omitempty"`
	}{messagingProduct, req.Subject, req.Description}
	var out wireAsync
	resp, err := c.call(ctx, request{endpoint: ep, method: "POST", path: "{group_id}", ids: []string{groupID}, json: body}, &out)
	if err != nil {
		return AsyncResult{}, err
	}
	return c.asyncResult(ep, resp, out)
}

// UpdateGroupPicture sets a group's picture: a square JPEG of at least
// 192×192 pixels and at most 5 MB (Graph checks; 131209, 131210). It is
// sent as multipart/form-data like a media upload.
func (c *Client) UpdateGroupPicture(ctx context.Context, groupID string, jpeg []byte) (AsyncResult, error) {
	const ep = EndpointUpdateGroupPicture
	if err := requireIDs(ep, groupID); err != nil {
		return AsyncResult{}, err
	}
	if len(jpeg) == 0 {
		return AsyncResult{}, invalid(ep, "empty picture")
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if err := mw.WriteField("messaging_product", messagingProduct); err != nil {
		return AsyncResult{}, err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="picture.jpg"`)
	h.Set("Content-Type", "image/jpeg")
	part, err := mw.CreatePart(h)
	if err != nil {
		return AsyncResult{}, err
	}
	if _, err := part.Write(jpeg); err != nil {
		return AsyncResult{}, err
	}
	if err := mw.Close(); err != nil {
		return AsyncResult{}, err
	}
	var out wireAsync
	resp, err := c.call(ctx, request{endpoint: ep, method: "POST", path: "{group_id}", ids: []string{groupID},
		body: buf.Bytes(), ctype: mw.FormDataContentType()}, &out)
	if err != nil {
		return AsyncResult{}, err
	}
	return c.asyncResult(ep, resp, out)
}

// DeleteGroup asks Graph to delete a group; the group_delete webhook
// confirms it.
func (c *Client) DeleteGroup(ctx context.Context, groupID string) (AsyncResult, error) {
	const ep = EndpointDeleteGroup
	if err := requireIDs(ep, groupID); err != nil {
		return AsyncResult{}, err
	}
	var out wireAsync
	resp, err := c.call(ctx, request{endpoint: ep, method: "DELETE", path: "{group_id}", ids: []string{groupID}}, &out)
	if err != nil {
		return AsyncResult{}, err
	}
	return c.asyncResult(ep, resp, out)
}
