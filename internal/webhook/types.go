package webhook

import (
	"encoding/json"
	"fmt"
	"time"
)

// Webhook fields, as normalised by Parse.
const (
	FieldGroupLifecycle    = "group_lifecycle_update"
	FieldGroupParticipants = "group_participants_update"
	FieldGroupSettings     = "group_settings_update"
	FieldGroupStatus       = "group_status_update"
	FieldMessages          = "messages"
)

// Item kinds.
const (
	// KindGroup is one value.groups[] entry (Data carries a GroupEvent).
	KindGroup = "group"
	// KindStatus is one value.statuses[] entry (Data carries a Status).
	KindStatus = "status"
	// KindMessage is one value.messages[] entry (Data carries an InboundMessage).
	KindMessage = "message"
	// KindChange is any other change value, carried whole (Payload.Value) so
	// that nothing Meta sends is dropped.
	KindChange = "change"
)

// Group event types, as normalised by Parse.
const (
	TypeGroupCreate         = "group_create"
	TypeGroupDelete         = "group_delete"
	TypeParticipantsAdd     = "group_participants_add"
	TypeParticipantsRemove  = "group_participants_remove"
	TypeJoinRequestCreated  = "group_join_request_created"
	TypeJoinRequestRevoked  = "group_join_request_revoked"
	TypeGroupSettingsUpdate = "group_settings_update"
	TypeGroupSuspend        = "group_suspend"
	TypeGroupSuspendCleared = "group_suspend_cleared"
)

// Values of GroupEvent.InitiatedBy.
const (
	InitiatedByBusiness    = "business"
	InitiatedByParticipant = "participant"
)

// RecipientTypeGroup is Status.RecipientType for a group send.
const RecipientTypeGroup = "group"

// Payload is the JSON shape of Item.Data: the normalised object plus the
// context the worker needs. Exactly one of Group, Status, Message and Value
// is set, according to the item's Kind.
type Payload struct {
	WABAID   string   `json:"waba_id"`
	Field    string   `json:"field"`
	Metadata Metadata `json:"metadata"`

	Group   *GroupEvent     `json:"group,omitempty"`
	Status  *Status         `json:"status,omitempty"`
	Message *InboundMessage `json:"message,omitempty"`
	// Contact is the value.contacts[] entry that belongs to this status or
	// message (matched by wa_id or user_id), when Meta sent one.
	Contact *Contact `json:"contact,omitempty"`
	// Value is the change value minus the entries split into other items.
	Value json.RawMessage `json:"value,omitempty"`
}

// Metadata identifies the business phone number a change is about.
type Metadata struct {
	DisplayPhoneNumber string `json:"display_phone_number,omitempty"`
	PhoneNumberID      string `json:"phone_number_id,omitempty"`
}

// Error is Meta's per-item error object. Codes arriving as strings are
// normalised to numbers by Parse.
type Error struct {
	Code      int       `json:"code"`
	Title     string    `json:"title,omitempty"`
	Message   string    `json:"message,omitempty"`
	ErrorData ErrorData `json:"error_data,omitzero"`
	Href      string    `json:"href,omitempty"`
}

// ErrorData holds an error's details.
type ErrorData struct {
	Details string `json:"details,omitempty"`
}

// Participant is one entry of added_participants, removed_participants or
// failed_participants. Business-initiated operations echo Input (what the
// business sent); user actions carry WAID and, with business-scoped user
// ids, UserID, ParentUserID and Username. Both may be present.
type Participant struct {
	Input        string  `json:"input,omitempty"`
	WAID         string  `json:"wa_id,omitempty"`
	UserID       string  `json:"user_id,omitempty"`
	ParentUserID string  `json:"parent_user_id,omitempty"`
	Username     string  `json:"username,omitempty"`
	CountryCode  string  `json:"country_code,omitempty"`
	Errors       []Error `json:"errors,omitempty"`
}

// ID is the participant's best identifier: Input, else WAID, else UserID.
func (p Participant) ID() string {
	switch {
	case p.Input != "":
		return p.Input
	case p.WAID != "":
		return p.WAID
	default:
		return p.UserID
	}
}

// PictureOutcome is the profile_picture part of a group_settings_update.
type PictureOutcome struct {
	MimeType         string  `json:"mime_type,omitempty"`
	SHA256           string  `json:"sha256,omitempty"`
	UpdateSuccessful bool    `json:"update_successful"`
	Errors           []Error `json:"errors,omitempty"`
}

// TextOutcome is the group_subject or group_description part of a
// group_settings_update.
type TextOutcome struct {
	Text             string  `json:"text"`
	UpdateSuccessful bool    `json:"update_successful"`
	Errors           []Error `json:"errors,omitempty"`
}

// GroupEvent is one value.groups[] entry of the four group fields, with
// Meta's spelling drift normalised (types, initiated_by placement).
type GroupEvent struct {
	// Timestamp is Unix seconds (Meta sends a number or a string).
	Timestamp int64  `json:"timestamp"`
	GroupID   string `json:"group_id,omitempty"`
	Type      string `json:"type"`
	// RequestID ties the event to the Graph call that caused it (create,
	// delete, settings, business-initiated removal).
	RequestID string `json:"request_id,omitempty"`

	// group_create
	Subject          string `json:"subject,omitempty"`
	Description      string `json:"description,omitempty"`
	InviteLink       string `json:"invite_link,omitempty"`
	JoinApprovalMode string `json:"join_approval_mode,omitempty"`

	// group_participants_add / _remove
	Reason              string        `json:"reason,omitempty"`
	InitiatedBy         string        `json:"initiated_by,omitempty"`
	AddedParticipants   []Participant `json:"added_participants,omitempty"`
	RemovedParticipants []Participant `json:"removed_participants,omitempty"`
	FailedParticipants  []Participant `json:"failed_participants,omitempty"`

	// group_join_request_created / _revoked
	JoinRequestID string `json:"join_request_id,omitempty"`
	WAID          string `json:"wa_id,omitempty"`
	UserID        string `json:"user_id,omitempty"`
	ParentUserID  string `json:"parent_user_id,omitempty"`
	Username      string `json:"username,omitempty"`

	// group_settings_update: one outcome per setting that was changed.
	ProfilePicture   *PictureOutcome `json:"profile_picture,omitempty"`
	GroupSubject     *TextOutcome    `json:"group_subject,omitempty"`
	GroupDescription *TextOutcome    `json:"group_description,omitempty"`

	// Errors is set when the operation failed in whole or in part.
	Errors []Error `json:"errors,omitempty"`
}

// Time returns Timestamp as a time.
func (e GroupEvent) Time() time.Time { return time.Unix(e.Timestamp, 0).UTC() }

// Conversation is the conversation object Graph v23 and lower add to
// statuses.
type Conversation struct {
	ID                  string              `json:"id,omitempty"`
	ExpirationTimestamp int64               `json:"expiration_timestamp,omitempty"`
	Origin              *ConversationOrigin `json:"origin,omitempty"`
}

// ConversationOrigin says what kind of conversation was opened.
type ConversationOrigin struct {
	Type string `json:"type,omitempty"`
}

// Pricing is a status's pricing object. Some doc samples nest it inside
// conversation; Parse hoists it to the status.
type Pricing struct {
	Billable     *bool  `json:"billable,omitempty"`
	PricingModel string `json:"pricing_model,omitempty"`
	Type         string `json:"type,omitempty"`
	Category     string `json:"category,omitempty"`
}

// Status is one value.statuses[] entry. For group sends, sent and failed
// name the group only; delivered and read name one participant each.
type Status struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Timestamp int64  `json:"timestamp"`
	// RecipientID is the group id when RecipientType is "group", else the
	// user's wa_id, which Meta leaves out for a user known only by
	// business-scoped user id.
	RecipientID string `json:"recipient_id,omitempty"`
	// RecipientUserID and RecipientParentUserID are the business-scoped
	// user ids of a 1:1 send's recipient.
	RecipientUserID       string `json:"recipient_user_id,omitempty"`
	RecipientParentUserID string `json:"recipient_parent_user_id,omitempty"`
	RecipientType         string `json:"recipient_type,omitempty"`
	// RecipientParticipantID is also accepted as participant_recipient_id.
	RecipientParticipantID           string        `json:"recipient_participant_id,omitempty"`
	RecipientParticipantUserID       string        `json:"recipient_participant_user_id,omitempty"`
	RecipientParticipantParentUserID string        `json:"recipient_participant_parent_user_id,omitempty"`
	Conversation                     *Conversation `json:"conversation,omitempty"`
	Pricing                          *Pricing      `json:"pricing,omitempty"`
	// BizOpaqueCallbackData is what the sender attached to the message.
	BizOpaqueCallbackData string  `json:"biz_opaque_callback_data,omitempty"`
	Errors                []Error `json:"errors,omitempty"`
}

// Time returns Timestamp as a time.
func (s Status) Time() time.Time { return time.Unix(s.Timestamp, 0).UTC() }

// Text is a text message's body.
type Text struct {
	Body string `json:"body"`
}

// InboundMessage is one value.messages[] entry. Only the fields groupflow
// uses are typed; the full object stays in Item.Data.
type InboundMessage struct {
	ID        string  `json:"id"`
	From      string  `json:"from,omitempty"`
	GroupID   string  `json:"group_id,omitempty"`
	Type      string  `json:"type,omitempty"`
	Timestamp int64   `json:"timestamp"`
	Text      *Text   `json:"text,omitempty"`
	Errors    []Error `json:"errors,omitempty"`
}

// Time returns Timestamp as a time.
func (m InboundMessage) Time() time.Time { return time.Unix(m.Timestamp, 0).UTC() }

// ContactProfile is a contact's public profile.
type ContactProfile struct {
	Name     string `json:"name,omitempty"`
	Username string `json:"username,omitempty"`
}

// Contact is a value.contacts[] entry.
type Contact struct {
	Profile      ContactProfile `json:"profile,omitzero"`
	WAID         string         `json:"wa_id,omitempty"`
	UserID       string         `json:"user_id,omitempty"`
	ParentUserID string         `json:"parent_user_id,omitempty"`
}

// Decode decodes it.Data into a Payload whose Group, Status or Message is
// set according to it.Kind. It fails only when a field has a type Meta never
// sends (say a group_id that is a number).
func Decode(it Item) (Payload, error) {
	var p Payload
	if err := json.Unmarshal(it.Data, &p); err != nil {
		return Payload{}, fmt.Errorf("webhook: decode %s item %s: %w", it.Kind, it.MsgID, err)
	}
	return p, nil
}
