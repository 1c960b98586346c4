package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

// metaExamples are Meta's documented webhook payloads (a copy of the
// shared reference/meta-examples), the bytes Meta would send.
const metaExamples = "../webhook/testdata/meta-examples"

// Ids the examples use.
const (
	exGroup       = "Y2FwaV9ncm91cDoxOTUwNTU1MDA3OToxMjAzNjMzOTQzMjAdOTY0MTUZD" // groups/webhooks, BSUID pages
	exFieldsGroup = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD" // fields__, messages__
	exRequest     = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
	exWamid       = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
	exJoinRequest = "MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw"
	exPablo       = `"wa_id":"16505551234","user_id":"US.13491208655302741918","parent_user_id":"US.ENT.11815799212886844830","username":"pablomorales"`
	exRateLimit   = `{"code":131208,"title":"Group Rate Limit Hit","message":"Group operation failed because there were too many group operations from this phone number in a short period.","details":"Group operation failed because there were too many group operations from this phone number in a short period."}`
	exNotInGroup  = `{"code":131212,"title":"Participant is not a part of the group.","message":"Participant is not a part of the group.","details":"Participant is not a part of the group."}`
	exPicture     = `"mime_type":"image/jpeg","sha256":"Y9vvGyeo3n76ptkXu3CwDBsnzbRFqpjHskQdMGSVqas="`
	exPricing     = `"pricing":{"billable":true,"pricing_model":"PMP","category":"group_marketing"}`
	// exConversation is the conversation of the groups/webhooks pages'
	// statuses, exAggregated the messages__ one's (Graph v23 and lower
	// send one).
	exConversation = `"conversation":{"id":"72b14d6bd5407799e66f64d1b338e567","origin_type":"group_marketing"}`
	exAggregated   = `"conversation":{"id":"b1946ac92492d2347c6235b4d2611184","origin_type":"group_marketing"}`
)

// wantEvent is a domain event a webhook example must become: its type, its
// time (the item's timestamp) and its data, as JSON.
type wantEvent struct {
	typ  string
	at   int64
	data string
}

// metaExampleEvents are the events DESIGN §4 names for each example. Inbound
// group messages (messages[]) and a failed delete have none: §4 names no
// event for either (a delete_group command reports its failure in its
// command.failed).
var metaExampleEvents = map[string][]wantEvent{
	"business-scoped-user-ids__group_participants_update.json": {
		{events.EventGroupParticipantsRemoved, 1750030073, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `","initiated_by":"business","removed":[{"input":"16505551234"}]}`},
	},
	"business-scoped-user-ids__group_participants_update_invite_link_join.json": {
		{events.EventGroupParticipantsJoined, 1750030073, `{"group_id":"` + exGroup + `","reason":"invite_link","participants":[{` + exPablo + `}]}`},
	},
	"business-scoped-user-ids__group_participants_update_join_request_created.json": {
		{events.EventGroupJoinRequestCreated, 1750030073, `{"group_id":"` + exGroup + `","join_request_id":"` + exJoinRequest + `","participant":{` + exPablo + `}}`},
	},
	"business-scoped-user-ids__group_participants_update_join_request_revoked.json": {
		{events.EventGroupJoinRequestRevoked, 1750030073, `{"group_id":"` + exGroup + `","join_request_id":"` + exJoinRequest + `","participant":{` + exPablo + `}}`},
	},
	"business-scoped-user-ids__group_participants_update_participant_leaves.json": {
		{events.EventGroupParticipantLeft, 1750030073, `{"group_id":"` + exGroup + `","participant":{` + exPablo + `}}`},
	},
	"business-scoped-user-ids__status_messages_webhooks_for_groups.json": {
		{events.EventMessageStatus, 1750030073, `{"message_id":"` + exWamid + `","status":"delivered","recipient_id":"` + exGroup + `","recipient_type":"group",` +
			`"group_id":"` + exGroup + `","participant_id":"16505551234","participant_user_id":"US.13491208655302741918","participant_parent_user_id":"US.ENT.11815799212886844830",` +
			`"conversation":{"id":"72b14d6bd5407799e66f64d1b338e567","origin_type":"group_marketing","expiration_time":"2025-06-16T23:27:53Z"},` +
			`"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"marketing"}}`},
	},
	"fields__group_lifecycle_update.json": {
		{events.EventGroupCreated, 1750100000, `{"group_id":"` + exFieldsGroup + `","request_id":"6a1f2c9e5b7d4e0f","subject":"test invite link",` +
			`"invite_link":"https://chat.whatsapp.com/Ab12Cd34Ef56","join_approval_mode":"approval_required"}`},
		{events.EventGroupCreateFailed, 1750100100, `{"request_id":"7b2e3dae6c8e5f1a","group_id":"Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjEZD",` +
			`"subject":"Lucky Shrub VIPs","description":"Early access to new succulents",` +
			`"errors":[{"code":131000,"title":"Something went wrong","message":"Something went wrong","details":"Group could not be created"}]}`},
		{events.EventGroupDeleted, 1750100200, `{"group_id":"` + exFieldsGroup + `","request_id":"8c3f4ebf7d9f6a2b"}`},
	},
	"fields__group_participants_update.json": {
		{events.EventGroupParticipantsJoined, 1750100300, `{"group_id":"` + exFieldsGroup + `","reason":"invite_link","participants":[{` + exPablo + `}]}`},
		{events.EventGroupJoinRequestCreated, 1750100400, `{"group_id":"` + exFieldsGroup + `","join_request_id":"MTIzNDU2Nzg5MDEyMzQ1Ng",` +
			`"participant":{"wa_id":"16505551235","user_id":"US.13491208655302741919"}}`},
		{events.EventGroupParticipantsRemoved, 1750100500, `{"group_id":"` + exFieldsGroup + `","request_id":"9d4a5fc08eab7b3c","initiated_by":"business",` +
			`"removed":[{"input":"16505551234"}],` +
			`"failed":[{"participant":{"input":"US.13491208655302741919"},"errors":[{"code":131009,"title":"Parameter value is not valid","message":"Parameter value is not valid","details":"Participant is not in the group"}]}],` +
			`"errors":[{"code":131009,"title":"Not All Participants Remove Succeeded","message":"Failed to remove some participants from the group","details":"1 of 2 participants could not be removed"}]}`},
		{events.EventGroupParticipantLeft, 1750100600, `{"group_id":"` + exFieldsGroup + `","participant":{"wa_id":"16505551236","user_id":"US.13491208655302741920"}}`},
	},
	"fields__group_status_update.json": {
		{events.EventGroupSuspended, 1750100800, `{"group_id":"` + exFieldsGroup + `"}`},
		{events.EventGroupSuspensionCleared, 1750100900, `{"group_id":"` + exFieldsGroup + `"}`},
	},
	"groups.groups-messaging__group_message_failed.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"failed","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"errors":[{"code":131020,"title":"Bad Group","message":"Cannot send messages to single member groups.","details":"Cannot send messages to single member groups."}]}`},
	},
	"groups.groups-messaging__group_message_sent.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"sent","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `"}`},
	},
	"groups.groups-messaging__receive_group_message.json":             nil,
	"groups.groups-messaging__receive_unsupported_group_message.json": nil,
	"groups.webhooks__delete_group_fails.json":                        nil,
	"groups.webhooks__delete_group_succeed.json": {
		{events.EventGroupDeleted, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `"}`},
	},
	"groups.webhooks__group_create_fail.json": {
		{events.EventGroupCreateFailed, 1750101000, `{"request_id":"` + exRequest + `","group_id":"` + exGroup + `","subject":"test invite link","description":"Test Description",` +
			`"errors":[{"code":131211,"title":"Group create limit reached","message":"Reached the limit for the maximum number of groups that can be created for this number.",` +
			`"details":"Reached the limit for the maximum number of groups that can be created for this number."}]}`},
	},
	"groups.webhooks__group_create_succeed.json": {
		{events.EventGroupCreated, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `","subject":"test invite link",` +
			`"invite_link":"https://chat.whatsapp.com/BjCg8D2zYrE7kS1uFp0xQa","join_approval_mode":"auto_approve"}`},
	},
	"groups.webhooks__group_message_delivered.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"delivered","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551234",` + exConversation + `,` + exPricing + `}`},
	},
	"groups.webhooks__group_message_read_with_pricing.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"read","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551234",` + exConversation + `,` + exPricing + `}`},
	},
	"groups.webhooks__group_message_read_without_pricing.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"read","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551234"}`},
	},
	"groups.webhooks__group_participant_leaves.json": {
		{events.EventGroupParticipantLeft, 1750101000, `{"group_id":"` + exGroup + `","participant":{"wa_id":"16505551234"}}`},
	},
	"groups.webhooks__group_participant_remove_fails.json": {
		{events.EventGroupParticipantsRemoved, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `","initiated_by":"business","removed":[],` +
			`"failed":[{"participant":{"input":"16505551234"}},{"participant":{"input":"16505551235"}}],"errors":[` + exNotInGroup + `]}`},
	},
	"groups.webhooks__group_participant_remove_partially_fails.json": {
		{events.EventGroupParticipantsRemoved, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `","initiated_by":"business",` +
			`"removed":[{"input":"16505551234"}],"failed":[{"participant":{"input":"16505551235"},"errors":[` + exNotInGroup + `]}],` +
			`"errors":[{"code":131201,"title":"Not All Participants Remove Succeeded","message":"Failed to remove some participants from the group",` +
			`"details":"Not all participant-level operations in the request succeeded."}]}`},
	},
	"groups.webhooks__group_participant_remove_succeed.json": {
		{events.EventGroupParticipantsRemoved, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `","initiated_by":"business",` +
			`"removed":[{"input":"16505551234"},{"input":"16505551235"}]}`},
	},
	"groups.webhooks__group_settings_update_partial_fail.json": {
		{events.EventGroupSettingsUpdated, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `",` +
			`"subject":{"text":"Test Subject","updated":false,"errors":[` + exRateLimit + `]},` +
			`"description":{"text":"Test Description","updated":false,"errors":[` + exRateLimit + `]},` +
			`"profile_picture":{` + exPicture + `,"updated":true},` +
			`"errors":[{"code":131201,"title":"Request partially succeeded","message":"Not all participant-level operations in the request succeeded.",` +
			`"details":"Not all participant-level operations in the request succeeded."}]}`},
	},
	"groups.webhooks__group_settings_update_succeed.json": {
		{events.EventGroupSettingsUpdated, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `",` +
			`"subject":{"text":"Test Subject","updated":true},"description":{"text":"Test Description","updated":true},` +
			`"profile_picture":{` + exPicture + `,"updated":true}}`},
	},
	"groups.webhooks__group_settings_update_total_fail.json": {
		{events.EventGroupSettingsUpdated, 1750101000, `{"group_id":"` + exGroup + `","request_id":"` + exRequest + `",` +
			`"subject":{"text":"Test Subject","updated":false,"errors":[` + exRateLimit + `]},` +
			`"description":{"text":"Test Description","updated":false,"errors":[` + exRateLimit + `]},` +
			`"profile_picture":{` + exPicture + `,"updated":false,"errors":[{"code":131209,"title":"Invalid Group Profile Picture Aspect Ratio",` +
			`"message":"Width and height of the image must be equal.","details":"Width and height of the image must be equal."}]},` +
			`"errors":[` + exRateLimit + `]}`},
	},
	"groups.webhooks__group_suspended.json": {
		{events.EventGroupSuspended, 1750101000, `{"group_id":"` + exGroup + `"}`},
	},
	"groups.webhooks__group_suspension_cleared.json": {
		{events.EventGroupSuspensionCleared, 1750101000, `{"group_id":"` + exGroup + `"}`},
	},
	"groups.webhooks__join_request_approved.json": {
		{events.EventGroupParticipantsJoined, 1750101000, `{"group_id":"` + exGroup + `","reason":"invite_link","participants":[{"input":"16505551234","wa_id":"16505551234"}]}`},
	},
	"groups.webhooks__multiple_messages_single_participant.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"delivered","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551234",` + exConversation + `,` + exPricing + `}`},
		{events.EventMessageStatus, 1750101000, `{"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA","status":"delivered","recipient_id":"` + exGroup + `",` +
			`"recipient_type":"group","group_id":"` + exGroup + `","participant_id":"16505551234",` + exConversation + `,` + exPricing + `}`},
	},
	"groups.webhooks__multiple_participants_single_message.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"read","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551234",` + exConversation + `,` + exPricing + `}`},
		{events.EventMessageStatus, 1750101000, `{"message_id":"` + exWamid + `","status":"read","recipient_id":"` + exGroup + `","recipient_type":"group","group_id":"` + exGroup + `",` +
			`"participant_id":"16505551235",` + exConversation + `,` + exPricing + `}`},
	},
	"groups.webhooks__user_accepts_or_cancels_join_request.json": {
		{events.EventGroupJoinRequestCreated, 1750101000, `{"group_id":"` + exGroup + `","join_request_id":"` + exJoinRequest + `","reason":"invite_link",` +
			`"participant":{"wa_id":"16505551234"}}`},
	},
	"groups.webhooks__user_joined_group_using_invite_link_succeed.json": {
		{events.EventGroupParticipantsJoined, 1750101000, `{"group_id":"` + exGroup + `","reason":"invite_link","participants":[{"wa_id":"16505551234"}]}`},
	},
	"messages__group_statuses_aggregated.json": {
		{events.EventMessageStatus, 1750101000, `{"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIzNDUA","status":"read","recipient_id":"` + exFieldsGroup + `",` +
			`"recipient_type":"group","group_id":"` + exFieldsGroup + `","participant_id":"16505551234",` + exAggregated + `,` + exPricing + `}`},
		{events.EventMessageStatus, 1750101001, `{"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIzNDUA","status":"read","recipient_id":"` + exFieldsGroup + `",` +
			`"recipient_type":"group","group_id":"` + exFieldsGroup + `","participant_id":"16505551235","participant_user_id":"US.13491208655302741919",` +
			exAggregated + `,` + exPricing + `}`},
		{events.EventMessageStatus, 1750100990, `{"message_id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIzNDUA","status":"delivered","recipient_id":"` + exFieldsGroup + `",` +
			`"recipient_type":"group","group_id":"` + exFieldsGroup + `","participant_id":"16505551236",` +
			`"conversation":{"id":"b1946ac92492d2347c6235b4d2611184","origin_type":"group_service"},` +
			`"pricing":{"billable":false,"pricing_model":"PMP","category":"group_service"}}`},
	},
	"messages__group_text.json": nil,
}

// Every one of Meta's webhook examples, posted signed to the ingest as Meta
// would, is stored item by item and becomes, through a worker, exactly the
// domain events DESIGN §4 names for it, carrying what the example says.
// Each example has a stack of its own: several share items (one request's
// success and failure examples, one message's statuses) that the webhook
// stream would rightly take for redeliveries.
func TestEveryMetaExampleBecomesItsDomainEvents(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(metaExamples, "*.json"))
	if err != nil || len(files) != 36 {
		t.Fatalf("want the 36 Meta examples in %s, found %d (err %v)", metaExamples, len(files), err)
	}
	if len(metaExampleEvents) != len(files) {
		t.Fatalf("%d examples have their events listed, want all %d", len(metaExampleEvents), len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		want, ok := metaExampleEvents[name]
		if !ok {
			t.Fatalf("%s: no events listed for it", name)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body, err := os.ReadFile(f)
			must(t, err)
			s := setup(t)
			s.startWorker(t, workerOpts{})
			req, _ := http.NewRequest(http.MethodPost, s.ingestURL+"/webhook", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(webhook.SignatureHeader, webhook.Sign([]byte(s.opts.secrets.AppSecret), body))
			if code, answer := s.do(t, req); code != http.StatusOK {
				t.Fatalf("POST /webhook = %d %s, want 200", code, answer)
			}
			s.checkStoredItems(t, body)
			s.awaitSettled(t)
			got := s.allEvents(t)
			s.checkDomainEvents(t, got, want)
		})
	}
}

// checkStoredItems checks that the webhook stream holds each item of body
// once, on its subject groups.webhook.<phone_number_id>.<field>.
func (s *stack) checkStoredItems(t *testing.T, body []byte) {
	t.Helper()
	items, err := webhook.Parse(body)
	must(t, err)
	ctx := context.Background()
	str, err := s.js.Stream(ctx, s.names.WebhookStream())
	must(t, err)
	info, err := str.Info(ctx)
	must(t, err)
	want := map[string]int{}
	for _, it := range items {
		want[s.names.Webhook(it.PhoneNumberID, it.Field)+" "+it.MsgID]++
	}
	got := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := str.GetMsg(ctx, seq)
		must(t, err)
		got[m.Subject+" "+m.Header.Get(jetstream.MsgIDHeader)]++
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("webhook stream holds %v, want %v (subject and Nats-Msg-Id of each item, once)", got, want)
	}
}

// allEvents returns every event the worker published so far: it waits
// until the watcher has seen as many as the stream holds.
func (s *stack) allEvents(t *testing.T) []testutil.Event {
	t.Helper()
	ctx := context.Background()
	str, err := s.js.Stream(ctx, s.names.EventStream())
	must(t, err)
	info, err := str.Info(ctx)
	must(t, err)
	n := int(info.State.Msgs)
	all := func() []testutil.Event { return s.events.Filter(func(testutil.Event) bool { return true }) }
	s.events.WaitFor(t, "every event in the stream seen", func() bool { return len(all()) >= n })
	return all()
}

// checkDomainEvents compares the events published with those wanted, in
// any order: type, data, time, subject, message id and schema.
func (s *stack) checkDomainEvents(t *testing.T, got []testutil.Event, want []wantEvent) {
	t.Helper()
	var have, wanted []seenEvent
	for _, e := range got {
		var ce struct {
			Source, Subject, Time string
			Phone                 string `json:"phonenumberid"`
			Group                 string `json:"groupid"`
		}
		if err := json.Unmarshal(e.Raw, &ce); err != nil {
			t.Fatalf("%s event: %v", e.Type, err)
		}
		at, err := time.Parse(time.RFC3339Nano, ce.Time)
		if err != nil {
			t.Errorf("%s event time %q: %v", e.Type, ce.Time, err)
		}
		if e.Subject != s.names.Event(phone, e.Type) || ce.Phone != phone || ce.Source != events.SourceWorker {
			t.Errorf("%s event on %s from %q for number %q, want %s from %s for %s", e.Type, e.Subject, ce.Source, ce.Phone,
				s.names.Event(phone, e.Type), events.SourceWorker, phone)
		}
		if id := e.Header.Get(jetstream.MsgIDHeader); id != e.ID {
			t.Errorf("%s event %s published with Nats-Msg-Id %q, want its id", e.Type, e.ID, id)
		}
		var data map[string]any
		must(t, json.Unmarshal(e.Data, &data))
		if g, _ := data["group_id"].(string); g != ce.Group {
			t.Errorf("%s event: groupid extension %q, data's group_id %q", e.Type, ce.Group, g)
		}
		if err := testutil.ValidateSchema(t, events.EventSchema(e.Type), e.Raw); err != nil {
			t.Errorf("%s event does not match its schema:\n%s\n%v", e.Type, e.Raw, err)
		}
		have = append(have, seenEvent{e.Type, canonicalJSON(t, e.Data), at.Unix()})
	}
	for _, w := range want {
		wanted = append(wanted, seenEvent{w.typ, canonicalJSON(t, []byte(w.data)), w.at})
	}
	order := func(l []seenEvent) {
		sort.Slice(l, func(i, j int) bool {
			if l[i].typ != l[j].typ {
				return l[i].typ < l[j].typ
			}
			return l[i].data < l[j].data
		})
	}
	order(have)
	order(wanted)
	if !reflect.DeepEqual(have, wanted) {
		t.Errorf("events:\n%s\nwant:\n%s", dump(have), dump(wanted))
	}
}

func canonicalJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out, err := json.Marshal(v)
	must(t, err)
	return string(out)
}

// seenEvent is what checkDomainEvents compares of an event.
type seenEvent struct {
	typ, data string
	at        int64
}

func dump(l []seenEvent) string {
	var b strings.Builder
	for _, e := range l {
		fmt.Fprintf(&b, "  %s at %d: %s\n", e.typ, e.at, e.data)
	}
	return b.String()
}
