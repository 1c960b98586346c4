package events

// Campaign states (CampaignCompleted.State).
const (
	CampaignStateCompleted = "completed"
	CampaignStateCancelled = "cancelled"
)

// CampaignCounts are an invite campaign's counters. Every invite is in
// exactly one of Pending, Sent, Failed, Cancelled and Unknown, so they add up
// to Total; Joined counts sent invites whose invitee has joined the group.
type CampaignCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Sent      int `json:"sent"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	// Unknown invites may or may not have been sent (on_ambiguous "fail").
	Unknown int `json:"unknown"`
	Joined  int `json:"joined"`
}

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
