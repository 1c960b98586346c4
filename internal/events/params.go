package events

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
)

// Limits on list params. They keep one command within MaxCommandSize and one
// ledger entry small; larger jobs are split by the caller (or, for invites,
// passed by object reference).
const (
	// MaxJoinRequestIDs is the most join request ids one approve or reject
	// command may name.
	MaxJoinRequestIDs = 1024
	// MaxRemoveParticipants is the most participants one remove_participants
	// command may name; the worker sends them to Meta in chunks of 8.
	MaxRemoveParticipants = 256
	// MaxInlineInvites is the most invites start_invite_campaign may carry
	// inline; longer lists go in an object store (InvitesObject).
	MaxInlineInvites = 10000
)

// Join approval modes of create_group.
const (
	JoinApprovalRequired = "approval_required"
	JoinAutoApprove      = "auto_approve"
)

// What send_group_invite does when a previous attempt may or may not have
// reached Meta (crash or lost response).
const (
	// OnAmbiguousFail gives at-most-once delivery: the command fails with
	// reason outcome_unknown. The default.
	OnAmbiguousFail = "fail"
	// OnAmbiguousResend gives at-least-once delivery: the invite is sent again.
	OnAmbiguousResend = "resend"
)

type paramsValidator interface {
	validate(path string, errs *errorList)
}

// CreateGroupParams are the params of create_group.
type CreateGroupParams struct {
	// Subject is required: 1–128 characters after trimming.
	Subject string `json:"subject"`
	// Description is optional, at most 2048 characters.
	Description string `json:"description,omitempty"`
	// JoinApprovalMode is JoinApprovalRequired or JoinAutoApprove (Meta's
	// default when empty). It cannot be changed after creation.
	JoinApprovalMode string `json:"join_approval_mode,omitempty"`
}

func (p *CreateGroupParams) validate(path string, errs *errorList) {
	checkSubjectText(join(path, "subject"), p.Subject, errs)
	checkDescription(join(path, "description"), p.Description, errs)
	switch p.JoinApprovalMode {
	case "", JoinApprovalRequired, JoinAutoApprove:
	default:
		errs.add(join(path, "join_approval_mode"), "must be %q or %q", JoinApprovalRequired, JoinAutoApprove)
	}
}

// UpdateGroupSettingsParams are the params of update_group_settings. At least
// one setting must be given; settings left out are not changed.
type UpdateGroupSettingsParams struct {
	// Subject, if given: 1–128 characters after trimming.
	Subject *string `json:"subject,omitempty"`
	// Description, if given: at most 2048 characters ("" clears it).
	Description *string `json:"description,omitempty"`
	// ProfilePicture, if given, is a JPEG by URL or inline.
	ProfilePicture *Picture `json:"profile_picture,omitempty"`
}

// Picture is a group profile picture: a square JPEG of at least 192×192
// pixels and at most 5 MB, given either by URL (fetched by the worker) or
// inline as standard base64. Exactly one of the two.
type Picture struct {
	// URL is fetched by the worker; its host (and a redirect's) must
	// resolve to a public address (jobs.Config.HTTPClient).
	URL         string `json:"url,omitempty"`
	MediaBase64 string `json:"media_base64,omitempty"`
}

// base64RE is the schema's pattern: standard alphabet, no line breaks.
var base64RE = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)

func (p *UpdateGroupSettingsParams) validate(path string, errs *errorList) {
	if p.Subject == nil && p.Description == nil && p.ProfilePicture == nil {
		errs.add(path, "must change at least one of subject, description, profile_picture")
	}
	if p.Subject != nil {
		checkSubjectText(join(path, "subject"), *p.Subject, errs)
	}
	if p.Description != nil {
		checkDescription(join(path, "description"), *p.Description, errs)
	}
	if pic := p.ProfilePicture; pic != nil {
		path := join(path, "profile_picture")
		switch {
		case pic.URL == "" && pic.MediaBase64 == "":
			errs.add(path, "must have url or media_base64")
		case pic.URL != "" && pic.MediaBase64 != "":
			errs.add(path, "must have url or media_base64, not both")
		case pic.URL != "":
			checkHTTPURL(join(path, "url"), pic.URL, errs)
		default:
			checkJPEGBase64(join(path, "media_base64"), pic.MediaBase64, errs)
		}
	}
}

func checkJPEGBase64(path, s string, errs *errorList) {
	if !base64RE.MatchString(s) {
		errs.add(path, "must be standard base64 without line breaks")
		return
	}
	img, err := base64.StdEncoding.Strict().DecodeString(s)
	switch {
	case err != nil:
		errs.add(path, "must be standard base64: %v", err)
	case !bytes.HasPrefix(img, []byte{0xFF, 0xD8, 0xFF}):
		// Meta accepts JPEG only; saying so now beats a 131009 later.
		errs.add(path, "must be a JPEG image")
	}
}

// JoinRequestsParams are the params of approve_join_requests and
// reject_join_requests: either the ids, or AllPending to act on every
// request pending when the command runs.
type JoinRequestsParams struct {
	JoinRequestIDs []string `json:"join_request_ids,omitempty"`
	AllPending     bool     `json:"all_pending,omitempty"`
}

func (p *JoinRequestsParams) validate(path string, errs *errorList) {
	idsPath := join(path, "join_request_ids")
	switch {
	case p.JoinRequestIDs == nil && !p.AllPending:
		errs.add(path, "must have join_request_ids or all_pending: true")
	case p.JoinRequestIDs != nil && p.AllPending:
		errs.add(path, "must have join_request_ids or all_pending: true, not both")
	case p.JoinRequestIDs != nil && len(p.JoinRequestIDs) == 0:
		errs.add(idsPath, "must not be empty")
	case len(p.JoinRequestIDs) > MaxJoinRequestIDs:
		errs.add(idsPath, "must have at most %d ids, got %d", MaxJoinRequestIDs, len(p.JoinRequestIDs))
	}
	seen := make(map[string]bool, len(p.JoinRequestIDs))
	for i, id := range p.JoinRequestIDs {
		checkOpaqueID(index(idsPath, i), id, errs)
		if seen[id] {
			errs.add(index(idsPath, i), "duplicate of an earlier id")
		}
		seen[id] = true
	}
}

// RemoveParticipantsParams are the params of remove_participants. Each
// participant is a phone number, a WhatsApp id or a business-scoped user id.
type RemoveParticipantsParams struct {
	Participants []string `json:"participants"`
}

func (p *RemoveParticipantsParams) validate(path string, errs *errorList) {
	path = join(path, "participants")
	switch n := len(p.Participants); {
	case p.Participants == nil:
		errs.add(path, "is required")
	case n == 0:
		errs.add(path, "must not be empty")
	case n > MaxRemoveParticipants:
		errs.add(path, "must have at most %d participants, got %d", MaxRemoveParticipants, n)
	}
	seen := make(map[string]bool, len(p.Participants))
	for i, v := range p.Participants {
		checkParticipant(index(path, i), v, errs)
		// "+1650…" and "1650…" are one person; Meta answers 131202 to both.
		key := strings.TrimPrefix(v, "+")
		if seen[key] {
			errs.add(index(path, i), "duplicate of an earlier participant")
		}
		seen[key] = true
	}
}

// EnsureInviteTemplateParams are the params of ensure_invite_template: make
// sure the WABA has a template called Name in Language copied from Meta's
// "group invite link" library template.
type EnsureInviteTemplateParams struct {
	WABAID   string `json:"waba_id"`
	Name     string `json:"name"`
	Language string `json:"language"`
}

func (p *EnsureInviteTemplateParams) validate(path string, errs *errorList) {
	checkNumericID(join(path, "waba_id"), p.WABAID, errs)
	checkTemplateRef(path, TemplateRef{Name: p.Name, Language: p.Language}, errs)
}

// TemplateRef names an approved message template.
type TemplateRef struct {
	Name     string `json:"name"`
	Language string `json:"language"`
}

// SendGroupInviteParams are the params of send_group_invite: send To a
// template message whose group_id parameter Meta turns into GroupID's invite
// link.
type SendGroupInviteParams struct {
	To       string      `json:"to"`
	GroupID  string      `json:"group_id"`
	Template TemplateRef `json:"template"`
	// OnAmbiguous is OnAmbiguousFail (the default when empty) or
	// OnAmbiguousResend.
	OnAmbiguous string `json:"on_ambiguous,omitempty"`
}

func (p *SendGroupInviteParams) validate(path string, errs *errorList) {
	checkPhone(join(path, "to"), p.To, errs)
	checkOpaqueID(join(path, "group_id"), p.GroupID, errs)
	checkTemplateRef(join(path, "template"), p.Template, errs)
	switch p.OnAmbiguous {
	case "", OnAmbiguousFail, OnAmbiguousResend:
	default:
		errs.add(join(path, "on_ambiguous"), "must be %q or %q", OnAmbiguousFail, OnAmbiguousResend)
	}
}

// StartInviteCampaignParams are the params of start_invite_campaign: send
// Template to every invitee, inline in Invites or listed in an object store
// (InvitesObject: NDJSON, one Invite per line, or a JSON array of Invite) —
// exactly one of the two.
type StartInviteCampaignParams struct {
	CampaignID    string      `json:"campaign_id"`
	Template      TemplateRef `json:"template"`
	Invites       []Invite    `json:"invites,omitempty"`
	InvitesObject *ObjectRef  `json:"invites_object,omitempty"`
}

// Invite is one invitee of a campaign and the group they are invited to.
type Invite struct {
	To      string `json:"to"`
	GroupID string `json:"group_id"`
}

// Key is the same for two invites of one person to one group: "+1650…"
// and "1650…" are one number for Meta.
func (inv Invite) Key() string { return strings.TrimPrefix(inv.To, "+") + "\x00" + inv.GroupID }

// ObjectRef names an object in a NATS object store bucket.
type ObjectRef struct {
	Bucket string `json:"bucket"`
	Name   string `json:"name"`
}

func (p *StartInviteCampaignParams) validate(path string, errs *errorList) {
	checkCommandID(join(path, "campaign_id"), p.CampaignID, errs)
	checkTemplateRef(join(path, "template"), p.Template, errs)
	invPath := join(path, "invites")
	switch {
	case p.Invites == nil && p.InvitesObject == nil:
		errs.add(path, "must have invites or invites_object")
	case p.Invites != nil && p.InvitesObject != nil:
		errs.add(path, "must have invites or invites_object, not both")
	case p.Invites != nil && len(p.Invites) == 0:
		errs.add(invPath, "must not be empty")
	case len(p.Invites) > MaxInlineInvites:
		errs.add(invPath, "must have at most %d invites, got %d; pass longer lists as invites_object", MaxInlineInvites, len(p.Invites))
	}
	seen := make(map[string]bool, len(p.Invites))
	for i, inv := range p.Invites {
		checkPhone(join(index(invPath, i), "to"), inv.To, errs)
		checkOpaqueID(join(index(invPath, i), "group_id"), inv.GroupID, errs)
		k := inv.Key()
		if seen[k] {
			errs.add(index(invPath, i), "duplicate of an earlier invite")
		}
		seen[k] = true
	}
	if o := p.InvitesObject; o != nil {
		objPath := join(path, "invites_object")
		if !bucketRE.MatchString(o.Bucket) {
			errs.add(join(objPath, "bucket"), "must be an object store bucket name: 1–255 of A-Z a-z 0-9 _ -")
		}
		if o.Name == "" || len(o.Name) > 1024 {
			errs.add(join(objPath, "name"), "must be 1–1024 characters")
		}
	}
}

// CancelCampaignParams are the params of cancel_campaign.
type CancelCampaignParams struct {
	CampaignID string `json:"campaign_id"`
}

func (p *CancelCampaignParams) validate(path string, errs *errorList) {
	checkCommandID(join(path, "campaign_id"), p.CampaignID, errs)
}
