package events

import "strings"

// Affects tells whether an event of type eventType (for a terminal event,
// of a command of commandType) may change what Graph answers about its
// group (group info, join requests, invite link) and about its number's
// group list. The worker makes the cached reads it names stale before it
// publishes the event, so that whoever receives the event never reads an
// answer older than it.
//
// Every group event and every command that acts on the group may change
// it; only what changes existence or subject changes the list. Reads,
// messages and campaigns change nothing about the group (the joins an
// invite brings arrive as group events), and each of their results would
// otherwise cost a cache write: one per invite of a campaign. A rejected
// command sent nothing to Graph.
func Affects(eventType, commandType string) (group, list bool) {
	switch {
	case strings.HasPrefix(eventType, "group."):
		switch eventType {
		case EventGroupCreated, EventGroupDeleted, EventGroupSettingsUpdated,
			EventGroupSuspended, EventGroupSuspensionCleared:
			return true, true
		}
		return true, false
	case eventType == EventCommandRejected:
		return false, false
	case strings.HasPrefix(eventType, "command."):
		switch commandType {
		case CreateGroup, DeleteGroup, UpdateGroupSettings:
			return true, true
		case GetInviteLink, SendGroupInvite, EnsureInviteTemplate,
			StartInviteCampaign, CancelCampaign:
			return false, false
		}
		return true, false
	}
	return false, false
}
