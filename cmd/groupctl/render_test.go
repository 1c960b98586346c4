package main

import (
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

func TestRenderEventNamesWhatHappened(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local)
	ok := true
	for _, tc := range []struct {
		typ  string
		data any
		want string
	}{
		{events.EventCommandSucceeded, events.CommandResult{CommandID: "c1", CommandType: events.CreateGroup, Outcome: events.OutcomeSucceeded, Result: []byte(`{"group_id":"G1","invite_link":"https://chat.whatsapp.com/x"}`), Attempts: 1},
			"create_group c1: group G1 link https://chat.whatsapp.com/x"},
		{events.EventCommandPartiallySucceeded, events.CommandResult{CommandID: "c2", CommandType: events.ApproveJoinRequests, GroupID: "G1", Outcome: events.OutcomePartiallySucceeded, Attempts: 2,
			Items: []events.ItemOutcome{{ID: "r1", Outcome: "approved"}, {ID: "r2", Outcome: "failed", Code: 131213, Reason: "gone"}}},
			"approve_join_requests c2 on group G1: 1 approved, 1 failed (r2: 131213 gone), after 2 attempts"},
		{events.EventCommandPartiallySucceeded, events.CommandResult{CommandID: "c5", CommandType: events.RejectJoinRequests, GroupID: "G1", Outcome: events.OutcomePartiallySucceeded, Attempts: 1,
			Items:      []events.ItemOutcome{{ID: "r2", Outcome: "failed", Code: 131213, Reason: "gone"}, {ID: "r1", Outcome: "rejected"}},
			ItemCounts: &events.ItemCounts{Rejected: 44999, Failed: 1}, ItemsOmitted: 44998},
			"reject_join_requests c5 on group G1: 44999 rejected, 1 failed (r2: 131213 gone)"},
		{events.EventCommandFailed, events.CommandResult{CommandID: "c3", CommandType: events.SendGroupInvite, Outcome: events.OutcomeFailed, Error: &events.FailureInfo{Reason: events.ReasonOutcomeUnknown, Message: "lost answer"}},
			"send_group_invite c3: outcome unknown: lost answer"},
		{events.EventCommandRejected, events.CommandResult{CommandID: "c4", CommandType: "nope", Outcome: events.OutcomeRejected, ValidationErrors: []events.FieldError{{Field: "type", Message: "unknown"}}},
			"nope c4: invalid: type: unknown"},
		{events.EventGroupCreated, events.GroupCreated{GroupID: "G1", RequestID: "r", Subject: "Club", JoinApprovalMode: events.JoinApprovalRequired, CommandID: "c1"},
			`group G1 "Club" (join approval required) (command c1)`},
		{events.EventGroupCreateFailed, events.GroupCreateFailed{RequestID: "r", Subject: "Club", Errors: []events.GraphError{{Code: 131211, Message: "too many groups"}}},
			`"Club": 131211 too many groups`},
		{events.EventGroupDeleted, events.GroupDeleted{GroupID: "G1"}, "group G1"},
		{events.EventGroupSettingsUpdated, events.GroupSettingsUpdated{GroupID: "G1", Subject: &events.SettingUpdate{Text: "New", Updated: true},
			ProfilePicture: &events.PictureUpdate{Errors: []events.GraphError{{Code: 131009, Message: "bad image"}}}},
			`group G1: subject "New" updated, picture not updated: 131009 bad image`},
		{events.EventGroupParticipantsJoined, events.ParticipantsJoined{GroupID: "G1", Reason: "invite_link", Participants: []events.ParticipantRef{{WAID: "1555"}, {UserID: "US.1", Username: "ann"}}},
			"group G1: 1555, US.1 (@ann) joined via invite link"},
		{events.EventGroupParticipantsRemoved, events.ParticipantsRemoved{GroupID: "G1", InitiatedBy: "business", Removed: []events.ParticipantRef{{Input: "+1555", WAID: "1555"}},
			Failed: []events.ParticipantFailure{{Participant: events.ParticipantRef{Input: "1666"}, Errors: []events.GraphError{{Code: 131202}}}}},
			"group G1: 1555 removed; 1666 not removed: 131202"},
		{events.EventGroupParticipantLeft, events.ParticipantLeft{GroupID: "G1", Participant: events.ParticipantRef{WAID: "1555"}}, "group G1: 1555 left"},
		{events.EventGroupJoinRequestCreated, events.JoinRequestCreated{GroupID: "G1", JoinRequestID: "R1", Participant: events.ParticipantRef{WAID: "1555"}}, "group G1: 1555 asks to join (request R1)"},
		{events.EventGroupJoinRequestRevoked, events.JoinRequestRevoked{GroupID: "G1", JoinRequestID: "R1", Participant: events.ParticipantRef{WAID: "1555"}}, "group G1: 1555 withdrew request R1"},
		{events.EventGroupSuspended, events.GroupSuspended{GroupID: "G1"}, "group G1 suspended by Meta: sends fail with 131207"},
		{events.EventGroupSuspensionCleared, events.GroupSuspensionCleared{GroupID: "G1"}, "group G1 may send again"},
		{events.EventMessageStatus, events.MessageStatus{MessageID: "wamid.1", Status: "delivered", RecipientID: "1555", CampaignID: "k1"}, "delivered: message wamid.1 to 1555 (campaign k1)"},
		{events.EventMessageStatus, events.MessageStatus{MessageID: "wamid.2", Status: "read", RecipientUserID: "US.1"}, "read: message wamid.2 to US.1"},
		{events.EventCampaignStarted, events.CampaignStarted{CampaignID: "k1", CommandID: "c9", Template: events.TemplateRef{Name: "inv", Language: "en"}, Total: 5},
			"campaign k1: 5 invites with template inv/en (command c9)"},
		{events.EventCampaignProgress, events.CampaignProgress{CampaignID: "k1", Counts: events.CampaignCounts{Total: 4, Pending: 2, Sent: 1, Failed: 1, FailedByCode: map[string]int{"131026": 1}}, State: events.CampaignStatePaused},
			"campaign k1: [##########----------]  50% 2/4 done: 1 sent, 1 failed (131026×1), 0 joined — paused"},
		{events.EventCampaignCompleted, events.CampaignCompleted{CampaignID: "k1", State: events.CampaignStateCancelled, Counts: events.CampaignCounts{Total: 2, Sent: 1, Cancelled: 1}},
			"campaign k1 cancelled: [####################] 100% 2/2 done: 1 sent, 0 failed, 1 cancelled, 0 joined"},
		{events.EventCampaignCompleted, events.CampaignCompleted{CampaignID: "k1", State: events.CampaignStateCompleted, Counts: events.CampaignCounts{Total: 2, Sent: 2,
			Delivered: 1, Undelivered: 1, UndeliveredByCode: map[string]int{"131026": 1}}},
			"campaign k1 completed: [####################] 100% 2/2 done: 2 sent, 0 failed, 1 delivered, 0 read, 1 undelivered (131026×1), 0 joined"},
		{events.EventCampaignCompleted, events.CampaignCompleted{CampaignID: "k1", State: events.CampaignStateCompleted, Counts: events.CampaignCounts{Total: 3, Sent: 2, Duplicates: 1}},
			"campaign k1 completed: [####################] 100% 3/3 done: 2 sent, 0 failed, 1 duplicates, 0 joined"},
		{events.EventMessageStatus, events.MessageStatus{MessageID: "wamid.3", Status: "failed"}, "failed: message wamid.3 to an unnamed recipient"},
		{events.EventCampaignInviteeJoined, events.CampaignInviteeJoined{CampaignID: "k1", GroupID: "G1", To: "+1555"}, "campaign k1: +1555 joined group G1"},
	} {
		e, err := events.NewEvent(tc.typ, "id", events.SourceWorker, phone, tc.data, events.WithTime(at))
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		got := renderEvent(e)
		if !strings.HasPrefix(got, "05:06:07 "+tc.typ+" ") || !strings.HasSuffix(got, tc.want) {
			t.Errorf("%s renders as\n  %q\nwant it to end with\n  %q", tc.typ, got, tc.want)
			ok = false
		}
	}
	if !ok {
		t.Log("every event type must read as a sentence")
	}
}
