package events

import "time"

// Domain events, normalised from Meta's group webhooks (DESIGN §4). Their
// CloudEvent time is the webhook's timestamp; their id is derived from what
// identifies the webhook item (EventID), so a webhook delivered twice yields
// one event. CommandID is set when the webhook completes a command of ours.

// GraphError is an error Meta reported inside a webhook or an answer.
type GraphError struct {
	Code    int    `json:"code"`
	Title   string `json:"title,omitempty"`
	Message string `json:"message,omitempty"`
	Details string `json:"details,omitempty"`
}

// ParticipantRef identifies a WhatsApp user as Meta gave it: by phone-based
// WhatsApp id, business-scoped user id, or both. Input is what we sent when
// the event answers a request of ours.
type ParticipantRef struct {
	Input        string `json:"input,omitempty"`
	WAID         string `json:"wa_id,omitempty"`
	UserID       string `json:"user_id,omitempty"`
	ParentUserID string `json:"parent_user_id,omitempty"`
	Username     string `json:"username,omitempty"`
}

// GroupCreated is the data of group.created.
type GroupCreated struct {
	GroupID          string `json:"group_id"`
	RequestID        string `json:"request_id"`
	CommandID        string `json:"command_id,omitempty"`
	Subject          string `json:"subject"`
	Description      string `json:"description,omitempty"`
	InviteLink       string `json:"invite_link,omitempty"`
	JoinApprovalMode string `json:"join_approval_mode,omitempty"`
}

// GroupCreateFailed is the data of group.create_failed.
type GroupCreateFailed struct {
	RequestID   string       `json:"request_id"`
	CommandID   string       `json:"command_id,omitempty"`
	GroupID     string       `json:"group_id,omitempty"`
	Subject     string       `json:"subject,omitempty"`
	Description string       `json:"description,omitempty"`
	Errors      []GraphError `json:"errors"`
}

// GroupDeleted is the data of group.deleted.
type GroupDeleted struct {
	GroupID   string `json:"group_id"`
	RequestID string `json:"request_id,omitempty"`
	CommandID string `json:"command_id,omitempty"`
}

// GroupSettingsUpdated is the data of group.settings_updated: the outcome of
// each setting the update touched, absent for those it did not.
type GroupSettingsUpdated struct {
	GroupID        string         `json:"group_id"`
	RequestID      string         `json:"request_id,omitempty"`
	CommandID      string         `json:"command_id,omitempty"`
	Subject        *SettingUpdate `json:"subject,omitempty"`
	Description    *SettingUpdate `json:"description,omitempty"`
	ProfilePicture *PictureUpdate `json:"profile_picture,omitempty"`
	Errors         []GraphError   `json:"errors,omitempty"`
}

// SettingUpdate is the outcome of changing a group's subject or description.
type SettingUpdate struct {
	Text    string       `json:"text"`
	Updated bool         `json:"updated"`
	Errors  []GraphError `json:"errors,omitempty"`
}

// PictureUpdate is the outcome of changing a group's profile picture.
type PictureUpdate struct {
	MimeType string       `json:"mime_type,omitempty"`
	SHA256   string       `json:"sha256,omitempty"`
	Updated  bool         `json:"updated"`
	Errors   []GraphError `json:"errors,omitempty"`
}

// ParticipantsJoined is the data of group.participants_joined.
type ParticipantsJoined struct {
	GroupID string `json:"group_id"`
	// Reason is Meta's: "invite_link" for a join through the link (also
	// after an approved join request).
	Reason string `json:"reason,omitempty"`
	// CommandID is the approve_join_requests command that let them in, if any.
	CommandID    string           `json:"command_id,omitempty"`
	Participants []ParticipantRef `json:"participants"`
}

// InitiatedByBusiness is ParticipantsRemoved.InitiatedBy when the business
// removed the participants.
const InitiatedByBusiness = "business"

// ParticipantsRemoved is the data of group.participants_removed: the
// business removed them. A user leaving is ParticipantLeft.
type ParticipantsRemoved struct {
	GroupID     string               `json:"group_id"`
	RequestID   string               `json:"request_id,omitempty"`
	CommandID   string               `json:"command_id,omitempty"`
	InitiatedBy string               `json:"initiated_by"`
	Removed     []ParticipantRef     `json:"removed"`
	Failed      []ParticipantFailure `json:"failed,omitempty"`
	Errors      []GraphError         `json:"errors,omitempty"`
}

// ParticipantFailure is a participant Meta could not act on, and why.
type ParticipantFailure struct {
	Participant ParticipantRef `json:"participant"`
	Errors      []GraphError   `json:"errors,omitempty"`
}

// ParticipantLeft is the data of group.participant_left: a user left.
type ParticipantLeft struct {
	GroupID     string         `json:"group_id"`
	Participant ParticipantRef `json:"participant"`
}

// JoinRequestCreated is the data of group.join_request_created.
type JoinRequestCreated struct {
	GroupID       string `json:"group_id"`
	JoinRequestID string `json:"join_request_id"`
	// Reason is Meta's, when it gives one: "invite_link" for a request
	// made through the invite link.
	Reason string `json:"reason,omitempty"`
	// Participant is absent when Meta named nobody.
	Participant ParticipantRef `json:"participant,omitzero"`
}

// JoinRequestRevoked is the data of group.join_request_revoked: the user
// withdrew the request.
type JoinRequestRevoked struct {
	GroupID       string `json:"group_id"`
	JoinRequestID string `json:"join_request_id"`
	// Reason is Meta's, when it gives one, as in JoinRequestCreated.
	Reason string `json:"reason,omitempty"`
	// Participant is absent when Meta named nobody.
	Participant ParticipantRef `json:"participant,omitzero"`
}

// GroupSuspended is the data of group.suspended: Meta suspended the group;
// sends to it fail with 131207 until it is cleared.
type GroupSuspended struct {
	GroupID string `json:"group_id"`
}

// GroupSuspensionCleared is the data of group.suspension_cleared.
type GroupSuspensionCleared struct {
	GroupID string `json:"group_id"`
}

// Message statuses (MessageStatus.Status) known today. Meta may add others;
// they are passed on as they come.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusPlayed    = "played"
	StatusFailed    = "failed"
)

// MessageStatus is the data of message.status: the status of one message for
// one recipient. Meta's aggregated group statuses are split so each event is
// about one participant; "sent" and "failed" for a group name no participant.
// A 1:1 message's recipient is named by RecipientID, RecipientUserID or both;
// neither when Meta named no recipient (the status is published all the same).
type MessageStatus struct {
	MessageID string `json:"message_id"`
	Status    string `json:"status"`
	// RecipientID is the group id for group messages, else the user's
	// wa_id; empty for a user Meta names only by business-scoped user id.
	RecipientID string `json:"recipient_id,omitempty"`
	// RecipientUserID and RecipientParentUserID are a 1:1 message's
	// recipient by business-scoped user id, when Meta gives it.
	RecipientUserID       string `json:"recipient_user_id,omitempty"`
	RecipientParentUserID string `json:"recipient_parent_user_id,omitempty"`
	RecipientType         string `json:"recipient_type,omitempty"`
	// GroupID is set for messages sent to a group.
	GroupID                 string `json:"group_id,omitempty"`
	ParticipantID           string `json:"participant_id,omitempty"`
	ParticipantUserID       string `json:"participant_user_id,omitempty"`
	ParticipantParentUserID string `json:"participant_parent_user_id,omitempty"`
	// Conversation is the conversation the message was charged in, which
	// Graph v23 and lower report (later versions leave it out).
	Conversation *Conversation `json:"conversation,omitempty"`
	Pricing      *Pricing      `json:"pricing,omitempty"`
	// BizOpaqueCallbackData is what the sender attached to the message
	// (the send's biz_opaque_callback_data), passed back as Meta gives it.
	BizOpaqueCallbackData string       `json:"biz_opaque_callback_data,omitempty"`
	Errors                []GraphError `json:"errors,omitempty"`
	// CommandID and CampaignID are set when the message was sent by a
	// command of ours (send_group_invite, a campaign).
	CommandID  string `json:"command_id,omitempty"`
	CampaignID string `json:"campaign_id,omitempty"`
}

// Conversation is the conversation of a status, as Graph v23 and lower
// report it.
type Conversation struct {
	ID string `json:"id,omitempty"`
	// OriginType is what opened it (Meta's origin.type): "group_marketing",
	// "marketing", "utility", "service", ….
	OriginType string `json:"origin_type,omitempty"`
	// ExpirationTime is when it ends (Meta's expiration_timestamp), when
	// Meta says.
	ExpirationTime *time.Time `json:"expiration_time,omitempty"`
}

// Pricing is Meta's pricing of one delivery: each delivery to each
// participant of a billable message is charged.
type Pricing struct {
	// Billable is slated for deprecation by Meta; nil when absent.
	Billable     *bool  `json:"billable,omitempty"`
	PricingModel string `json:"pricing_model,omitempty"`
	// Type is "regular" or "free_group_customer_service".
	Type string `json:"type,omitempty"`
	// Category is "group_marketing", "group_utility", "group_service", ….
	Category string `json:"category,omitempty"`
}
