package events_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

func ExampleDecodeCommand() {
	subject := events.Names{}.Command("106540352242922", events.ApproveJoinRequests)
	body := []byte(`{"id": "order-4711-approve", "type": "approve_join_requests",
		"phone_number_id": "106540352242922", "group_id": "Y2FwaV9ncm91cDo",
		"params": {"join_request_ids": ["MTY0NjcwNDM1OTU6"]},
		"deadline": "2026-11-24T18:00:00Z"}`)

	cmd, err := events.DecodeCommand(subject, body)
	if err != nil {
		panic(err)
	}
	var p events.JoinRequestsParams
	if err := cmd.DecodeParams(&p); err != nil {
		panic(err)
	}
	fmt.Println(cmd.ID, cmd.Type, cmd.GroupID, p.JoinRequestIDs, cmd.Deadline.Format(time.RFC3339))

	// A bad command is refused with every reason at once.
	_, err = events.DecodeCommand(subject, []byte(`{"id": "order 4712", "type": "approve_join_requests",
		"phone_number_id": "106540352242922", "params": {"join_request_ids": [], "note": "hi"}}`))
	var invalid *events.ValidationError
	if errors.As(err, &invalid) {
		for _, fe := range invalid.Errors {
			fmt.Printf("%s: %s\n", fe.Field, fe.Message)
		}
	}
	// Output:
	// order-4711-approve approve_join_requests Y2FwaV9ncm91cDo [MTY0NjcwNDM1OTU6] 2026-11-24T18:00:00Z
	// id: may only hold the characters A-Z a-z 0-9 _ - . :
	// group_id: is required for approve_join_requests
	// params.note: unknown field
	// params.join_request_ids: must not be empty
}

func ExampleNewTerminalEvent() {
	result := events.CommandResult{
		CommandID:     "order-4711-approve",
		CommandType:   events.ApproveJoinRequests,
		PhoneNumberID: "106540352242922",
		GroupID:       "Y2FwaV9ncm91cDo",
		Outcome:       events.OutcomePartiallySucceeded,
		Items: []events.ItemOutcome{
			{ID: "MTY0NjcwNDM1OTU6", Outcome: events.ItemApproved},
			{ID: "MTY0NjcwNDM1OTY6", Outcome: events.ItemFailed, Code: 131203, Reason: "terms of service not accepted"},
		},
		Attempts: 1,
	}
	e, err := events.NewTerminalEvent(events.SourceWorker, result,
		events.WithTime(time.Date(2026, 11, 24, 17, 2, 3, 0, time.UTC)))
	if err != nil {
		panic(err)
	}
	data, err := events.Marshal(e)
	if err != nil {
		panic(err)
	}
	// Publish data to this subject with Nats-Msg-Id: e.ID().
	fmt.Println(events.Names{}.Event(result.PhoneNumberID, e.Type()))
	fmt.Println(e.ID())
	fmt.Println(string(data))
	// Output:
	// groups.event.106540352242922.command.partially_succeeded
	// order-4711-approve:terminal
	// {"specversion":"1.0","id":"order-4711-approve:terminal","source":"groupflow/worker","type":"command.partially_succeeded","subject":"order-4711-approve","datacontenttype":"application/json","time":"2026-11-24T17:02:03Z","data":{"command_id":"order-4711-approve","command_type":"approve_join_requests","phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDo","outcome":"partially_succeeded","items":[{"id":"MTY0NjcwNDM1OTU6","outcome":"approved"},{"id":"MTY0NjcwNDM1OTY6","outcome":"failed","code":131203,"reason":"terms of service not accepted"}],"attempts":1},"commandid":"order-4711-approve","groupid":"Y2FwaV9ncm91cDo","phonenumberid":"106540352242922"}
}
