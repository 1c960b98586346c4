package events

import "time"

// Campaign states (CampaignCompleted.State).
const (
	CampaignStateCompleted = "completed"
	CampaignStateCancelled = "cancelled"
)

// CampaignCounts are an invite campaign's counters. Every invite is in
// exactly one of Pending, Sent, Failed, Cancelled, Unknown and Duplicates, so
// they add up to Total; Joined counts sent invites whose invitee has joined
// the group.
type CampaignCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Sent      int `json:"sent"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// Unknown invites may or may not have been sent (on_ambiguous "fail").
	Unknown int `json:"unknown"`
	// Duplicates are invites of a list in an object store that repeat an
	// earlier invite of the list (Invite.Key): they are not sent.
	Duplicates int `json:"duplicates,omitempty"`
	Joined     int `json:"joined"`
	// Queued invites were published as send_group_invite commands and are
	// not terminal yet (they are part of Pending).
	Queued int `json:"queued,omitempty"`
	// FailedByCode splits Failed by Meta's error code ("131026"), or by
	// reason when Meta gave no code ("retries_exhausted", "expired").
	FailedByCode map[string]int `json:"failed_by_code,omitempty"`
	// Delivered and Read count sent invites whose message Meta reported
	// delivered (or read) and read: with Joined, the campaign's funnel.
	Delivered int `json:"delivered,omitempty"`
	Read      int `json:"read,omitempty"`
	// Undelivered counts sent invites whose message Meta later reported
	// failed (a failed status, e.g. 131026 undeliverable); they stay in
	// Sent, since Meta accepted the send. UndeliveredByCode splits them by
	// the status's error code ("unknown" when it gave none).
	Undelivered       int            `json:"undelivered,omitempty"`
	UndeliveredByCode map[string]int `json:"undelivered_by_code,omitempty"`
}

// Campaign states while a campaign runs (CampaignProgress.State).
const (
	CampaignStateRunning    = "running"
	CampaignStatePaused     = "paused"
	CampaignStateCancelling = "cancelling"
)

// CampaignStarted is the data of campaign.started.
type CampaignStarted struct {
	CampaignID string      `json:"campaign_id"`
	CommandID  string      `json:"command_id"`
	Template   TemplateRef `json:"template"`
	Total      int         `json:"total"`
}

// CampaignProgress is the data of campaign.progress, published at most every
// few seconds while a campaign runs.
type CampaignProgress struct {
	CampaignID string         `json:"campaign_id"`
	Counts     CampaignCounts `json:"counts"`
	// State is CampaignStateRunning, CampaignStatePaused or
	// CampaignStateCancelling; empty in events of older workers.
	State string `json:"state,omitempty"`
	// PausedUntil and Reason say, while State is paused, until when no
	// invite of the campaign is sent and why (Meta's spam rate limit).
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	Reason      string     `json:"reason,omitempty"`
}

// CampaignCompleted is the data of campaign.completed: every invite is
// terminal, or the campaign was cancelled.
type CampaignCompleted struct {
	CampaignID string `json:"campaign_id"`
	CommandID  string `json:"command_id,omitempty"`
	// State is CampaignStateCompleted or CampaignStateCancelled.
	State  string         `json:"state"`
	Counts CampaignCounts `json:"counts"`
}

// CampaignInviteeJoined is the data of campaign.invitee_joined: a campaign
// recipient joined the group they were invited to.
type CampaignInviteeJoined struct {
	CampaignID  string         `json:"campaign_id"`
	GroupID     string         `json:"group_id"`
	To          string         `json:"to"`
	Participant ParticipantRef `json:"participant"`
	MessageID   string         `json:"message_id,omitempty"`
}
