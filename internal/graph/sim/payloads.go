package sim

import (
	"strconv"
	"time"
)

// groupEvent is one item of value.groups[] in the four group webhook fields.
// Which properties are set depends on Type; see fact sheet §3 and the
// examples under testdata/meta-examples.
type groupEvent struct {
	// Timestamp is a string of unix seconds, except in the participants
	// add after an approval, where Meta's sample has a number.
	Timestamp           any              `json:"timestamp"`
	GroupID             string           `json:"group_id,omitempty"`
	Type                string           `json:"type"`
	RequestID           string           `json:"request_id,omitempty"`
	Subject             string           `json:"subject,omitempty"`
	Description         string           `json:"description,omitempty"`
	InviteLink          string           `json:"invite_link,omitempty"`
	JoinApprovalMode    string           `json:"join_approval_mode,omitempty"`
	Reason              string           `json:"reason,omitempty"`
	JoinRequestID       string           `json:"join_request_id,omitempty"`
	WAID                string           `json:"wa_id,omitempty"`
	UserID              string           `json:"user_id,omitempty"`
	ParentUserID        string           `json:"parent_user_id,omitempty"`
	Username            string           `json:"username,omitempty"`
	AddedParticipants   []participantRef `json:"added_participants,omitempty"`
	RemovedParticipants []participantRef `json:"removed_participants,omitempty"`
	FailedParticipants  []participantRef `json:"failed_participants,omitempty"`
	InitiatedBy         string           `json:"initiated_by,omitempty"`
	ProfilePicture      *settingResult   `json:"profile_picture,omitempty"`
	GroupSubject        *settingResult   `json:"group_subject,omitempty"`
	GroupDescription    *settingResult   `json:"group_description,omitempty"`
	Errors              []itemError      `json:"errors,omitempty"`
}

type participantRef struct {
	Input        string      `json:"input,omitempty"`
	WAID         string      `json:"wa_id,omitempty"`
	UserID       string      `json:"user_id,omitempty"`
	ParentUserID string      `json:"parent_user_id,omitempty"`
	Username     string      `json:"username,omitempty"`
	Errors       []itemError `json:"errors,omitempty"`
}

type settingResult struct {
	Text             *string     `json:"text,omitempty"`
	MimeType         string      `json:"mime_type,omitempty"`
	SHA256           string      `json:"sha256,omitempty"`
	UpdateSuccessful bool        `json:"update_successful"`
	Errors           []itemError `json:"errors,omitempty"`
}

// statusObject is one item of value.statuses[] in the messages field.
type statusObject struct {
	ID                               string        `json:"id"`
	Status                           string        `json:"status"`
	Timestamp                        string        `json:"timestamp"`
	RecipientID                      string        `json:"recipient_id"`
	RecipientType                    string        `json:"recipient_type,omitempty"`
	RecipientParticipantID           string        `json:"recipient_participant_id,omitempty"`
	RecipientParticipantUserID       string        `json:"recipient_participant_user_id,omitempty"`
	RecipientParticipantParentUserID string        `json:"recipient_participant_parent_user_id,omitempty"`
	Conversation                     *conversation `json:"conversation,omitempty"`
	Pricing                          *pricing      `json:"pricing,omitempty"`
	Errors                           []itemError   `json:"errors,omitempty"`
}

type conversation struct {
	ID                  string             `json:"id"`
	ExpirationTimestamp string             `json:"expiration_timestamp,omitempty"`
	Origin              conversationOrigin `json:"origin"`
}

type conversationOrigin struct {
	Type string `json:"type"`
}

type pricing struct {
	Billable     bool   `json:"billable"`
	PricingModel string `json:"pricing_model"`
	Type         string `json:"type"`
	Category     string `json:"category"`
}

type contact struct {
	Profile      profile `json:"profile"`
	WAID         string  `json:"wa_id"`
	UserID       string  `json:"user_id,omitempty"`
	ParentUserID string  `json:"parent_user_id,omitempty"`
}

type profile struct {
	Name     string `json:"name"`
	Username string `json:"username,omitempty"`
}

// inboundMsg is an incoming group message (messages[] with group_id).
type inboundMsg struct {
	From      string    `json:"from"`
	GroupID   string    `json:"group_id,omitempty"`
	ID        string    `json:"id"`
	Timestamp string    `json:"timestamp"`
	Text      *textBody `json:"text,omitempty"`
	Type      string    `json:"type"`
}

type textBody struct {
	Body string `json:"body"`
}

func unixString(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func (s *Server) meta(n *number) metadata {
	return metadata{DisplayPhoneNumber: n.display, PhoneNumberID: n.id}
}

// emitGroup sends one group event in its field's envelope.
func (s *Server) emitGroup(field string, n *number, ev groupEvent) {
	s.hooks.emit(n.id, field, groupsValue{MessagingProduct: "whatsapp", Metadata: s.meta(n), Groups: []any{ev}}, 0)
}

// participantOf describes a user as webhook participant items do: wa_id,
// plus the BSUID fields when Config.BSUID is on.
func (s *Server) participantOf(waID string) participantRef {
	p := participantRef{WAID: waID}
	if s.cfg.BSUID {
		u := s.user(waID)
		p.UserID, p.ParentUserID, p.Username = u.userID, u.parentUserID, u.username
	}
	return p
}
