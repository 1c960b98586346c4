package events

import "slices"

// Query endpoint names: the last token of groups.query.<phone_number_id>.<name>,
// served by the workers as a nats.go/micro service. Request and reply
// shapes are schemas/query.<name>.{request,reply}.json; errors use the micro
// headers Nats-Service-Error and Nats-Service-Error-Code with a
// schemas/query.error.json body.
const (
	QueryGroupInfo        = "group_info"
	QueryListGroups       = "list_groups"
	QueryListJoinRequests = "list_join_requests"
	QueryInviteLink       = "invite_link"
	QueryCommandStatus    = "command_status"
)

var queryNames = []string{QueryGroupInfo, QueryListGroups, QueryListJoinRequests, QueryInviteLink, QueryCommandStatus}

// QueryNames returns every query endpoint name.
func QueryNames() []string { return slices.Clone(queryNames) }
