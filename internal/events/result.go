package events

import "encoding/json"

// Outcomes of a command; each names its terminal event, "command.<outcome>".
const (
	OutcomeSucceeded          = "succeeded"
	OutcomePartiallySucceeded = "partially_succeeded"
	OutcomeFailed             = "failed"
	OutcomeRejected           = "rejected"
)

// Outcomes of one item (a join request, a participant) of a bulk command.
const (
	ItemApproved = "approved"
	ItemRejected = "rejected"
	ItemRemoved  = "removed"
	ItemFailed   = "failed"
)

// Reasons a command failed (FailureInfo.Reason).
const (
	// ReasonPermanentError: Meta refused the call with a permanent error;
	// Code and Subcode say which.
	ReasonPermanentError = "permanent_error"
	// ReasonRetriesExhausted: transient errors until the last allowed
	// delivery; the command went to the dead-letter queue.
	ReasonRetriesExhausted = "retries_exhausted"
	// ReasonExpired: the command's deadline passed before it could be sent.
	ReasonExpired = "expired"
	// ReasonWebhookTimeout: Meta accepted the call but its completion
	// webhook never came.
	ReasonWebhookTimeout = "webhook_timeout"
	// ReasonOutcomeUnknown: a call that is not safe to repeat may or may not
	// have reached Meta, and the command asked not to guess (on_ambiguous
	// "fail").
	ReasonOutcomeUnknown = "outcome_unknown"
	// ReasonCancelled: the campaign the command belonged to was cancelled.
	ReasonCancelled = "cancelled"
	// ReasonGroupNotOwned: a group the command names is not one of its
	// phone number's groups (another number's, deleted before groupflow
	// learnt whose it was, or no group at all), so nothing was asked of
	// Graph about it: Graph's group operations name only the group, and
	// every number shares one access token.
	ReasonGroupNotOwned = "group_not_owned"
	// ReasonAccountNotOwned: the WhatsApp Business Account the command
	// names (ensure_invite_template's waba_id) is not its phone number's
	// account, so nothing was asked of Graph about that account's
	// templates: every number shares one access token.
	ReasonAccountNotOwned = "account_not_owned"
)

// CommandResult is the data of the terminal events command.succeeded,
// command.partially_succeeded, command.failed and command.rejected. Exactly
// one is published per execution of a command id (the first, and each
// replay from the dead-letter queue), with id TerminalEventID(CommandID,
// Replay).
type CommandResult struct {
	CommandID     string `json:"command_id"`
	CommandType   string `json:"command_type"`
	PhoneNumberID string `json:"phone_number_id"`
	GroupID       string `json:"group_id,omitempty"`
	// Outcome is one of the Outcome constants.
	Outcome string `json:"outcome"`
	// Result is the typed answer of a succeeded command: CreateGroupResult,
	// InviteLinkResult, EnsureInviteTemplateResult, SendGroupInviteResult or
	// CampaignResult, by command type; absent for the others.
	Result json.RawMessage `json:"result,omitempty"`
	// Items are the per-item outcomes of bulk commands (join requests,
	// participants): every one, up to MaxItems. Past that (an all_pending
	// approval or rejection of more requests), the failed ones come first
	// and ItemsOmitted says how many are left out. Set them with SetItems.
	Items []ItemOutcome `json:"items,omitempty"`
	// ItemCounts counts every item by outcome, listed in Items or not;
	// present whenever Items is.
	ItemCounts *ItemCounts `json:"item_counts,omitempty"`
	// ItemsOmitted is how many items Items leaves out.
	ItemsOmitted int `json:"items_omitted,omitempty"`
	// Error says why the command failed (outcome "failed").
	Error *FailureInfo `json:"error,omitempty"`
	// Attempts is how many times the command was delivered to a worker.
	Attempts int `json:"attempts"`
	// ValidationErrors say why the command was rejected (outcome "rejected").
	ValidationErrors []FieldError `json:"validation_errors,omitempty"`
	// Replay names the dead-letter replay this execution is (the value of
	// ReplayHeader), empty for the command's first execution.
	Replay string `json:"replay,omitempty"`
}

// EventType is the terminal event type for r's outcome, e.g.
// "command.succeeded".
func (r CommandResult) EventType() string { return "command." + r.Outcome }

// MaxItems is the most items a terminal event lists. It is
// MaxJoinRequestIDs, so a command that names its items always has every
// one listed; an all_pending approval or rejection of tens of thousands
// of requests listed whole made an event, and a ledger entry, larger than
// NATS takes. 1024 items of at most 256-byte ids and 200-byte reasons are
// about half a MiB.
const MaxItems = MaxJoinRequestIDs

// ItemCounts counts a bulk command's items by outcome (ItemOutcome.Outcome).
type ItemCounts struct {
	Approved int `json:"approved,omitempty"`
	Rejected int `json:"rejected,omitempty"`
	Removed  int `json:"removed,omitempty"`
	Failed   int `json:"failed,omitempty"`
}

// Total is how many items were counted.
func (c ItemCounts) Total() int { return c.Approved + c.Rejected + c.Removed + c.Failed }

func (c *ItemCounts) add(outcome string) {
	switch outcome {
	case ItemApproved:
		c.Approved++
	case ItemRejected:
		c.Rejected++
	case ItemRemoved:
		c.Removed++
	default:
		c.Failed++
	}
}

// SetItems sets r's per-item outcomes: Items (at most MaxItems of them,
// the failed ones first when some must be left out: they are what a
// consumer acts on), ItemCounts over all of them and ItemsOmitted.
func (r *CommandResult) SetItems(items []ItemOutcome) {
	r.Items, r.ItemCounts, r.ItemsOmitted = nil, nil, 0
	if len(items) == 0 {
		return
	}
	var c ItemCounts
	for _, it := range items {
		c.add(it.Outcome)
	}
	r.ItemCounts = &c
	if len(items) <= MaxItems {
		r.Items = items
		return
	}
	listed := make([]ItemOutcome, 0, MaxItems)
	for _, failed := range []bool{true, false} {
		for _, it := range items {
			if len(listed) == MaxItems {
				break
			}
			if (it.Outcome == ItemFailed) == failed {
				listed = append(listed, it)
			}
		}
	}
	r.Items, r.ItemsOmitted = listed, len(items)-MaxItems
}

// ItemOutcome is the outcome for one item of a bulk command.
type ItemOutcome struct {
	// ID is the join request id or participant the outcome is about.
	ID string `json:"id"`
	// Outcome is one of the Item constants.
	Outcome string `json:"outcome"`
	// Code is Meta's error code when Outcome is "failed".
	Code int `json:"code,omitempty"`
	// Reason is Meta's explanation when Outcome is "failed".
	Reason string `json:"reason,omitempty"`
}

// FailureInfo says why a command failed.
type FailureInfo struct {
	// Reason is one of the Reason constants.
	Reason string `json:"reason"`
	// Code and Subcode are Meta's, when Meta gave the error.
	Code    int `json:"code,omitempty"`
	Subcode int `json:"subcode,omitempty"`
	// Type is Graph's error type ("OAuthException", …), when a Graph
	// call's answer gave the error; webhooks' errors have none.
	Type string `json:"type,omitempty"`
	// Message is for people; branch on Reason and Code.
	Message string `json:"message,omitempty"`
}

// CreateGroupResult is the Result of a succeeded create_group.
type CreateGroupResult struct {
	GroupID    string `json:"group_id"`
	InviteLink string `json:"invite_link,omitempty"`
	// RequestID is Graph's request id; empty when the group was adopted
	// after a lost answer (found by reconciliation, not by its webhook).
	RequestID string `json:"request_id,omitempty"`
}

// InviteLinkResult is the Result of get_invite_link and reset_invite_link.
type InviteLinkResult struct {
	InviteLink string `json:"invite_link"`
}

// EnsureInviteTemplateResult is the Result of ensure_invite_template.
type EnsureInviteTemplateResult struct {
	TemplateID string `json:"template_id"`
	Name       string `json:"name"`
	Language   string `json:"language"`
	// Status is Meta's review status (APPROVED, PENDING, …); a new template
	// can take up to 24 hours to be approved.
	Status string `json:"status"`
	// Created is true when this command added the template, false when it
	// was already there.
	Created bool `json:"created"`
}

// SendGroupInviteResult is the Result of send_group_invite.
type SendGroupInviteResult struct {
	MessageID string `json:"message_id"`
	WAID      string `json:"wa_id,omitempty"`
}

// CampaignResult is the Result of start_invite_campaign (when every invite is
// terminal) and cancel_campaign.
type CampaignResult struct {
	CampaignID string         `json:"campaign_id"`
	Counts     CampaignCounts `json:"counts"`
}
