package events_test

import (
	"testing"

	"github.com/groupflow/groupflow/internal/events"
)

func TestAffects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ, cmdType string
		group, list  bool
	}{
		{events.EventGroupParticipantsJoined, "", true, false},
		{events.EventGroupJoinRequestCreated, "", true, false},
		{events.EventGroupParticipantLeft, "", true, false},
		{events.EventGroupCreated, "", true, true},
		{events.EventGroupDeleted, "", true, true},
		{events.EventGroupSettingsUpdated, "", true, true},
		{events.EventGroupSuspended, "", true, true},
		{events.EventCommandSucceeded, events.ResetInviteLink, true, false},
		{events.EventCommandPartiallySucceeded, events.ApproveJoinRequests, true, false},
		{events.EventCommandFailed, events.RemoveParticipants, true, false},
		{events.EventCommandSucceeded, events.CreateGroup, true, true},
		{events.EventCommandSucceeded, events.UpdateGroupSettings, true, true},
		{events.EventCommandRejected, events.DeleteGroup, false, false},
		{events.EventCommandSucceeded, events.GetInviteLink, false, false},
		{events.EventCommandSucceeded, events.SendGroupInvite, false, false},
		{events.EventCommandFailed, events.SendGroupInvite, false, false},
		{events.EventCommandSucceeded, events.StartInviteCampaign, false, false},
		{events.EventCommandSucceeded, "a_future_command", true, false},
		{events.EventMessageStatus, "", false, false},
		{events.EventCampaignProgress, "", false, false},
		{events.EventCampaignInviteeJoined, "", false, false},
	} {
		if g, l := events.Affects(tc.typ, tc.cmdType); g != tc.group || l != tc.list {
			t.Errorf("Affects(%s, %s) = group %v list %v, want %v %v", tc.typ, tc.cmdType, g, l, tc.group, tc.list)
		}
	}
}
