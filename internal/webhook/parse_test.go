package webhook_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/webhook"
)

const (
	fixtureDir = "testdata/meta-examples"
	phoneID    = "106540352242922"
	wabaID     = "102290129340398"
	// gidPages is the group id of the groups/webhooks and BSUID samples,
	// gidFields the one of the composed fields__/messages__ samples.
	gidPages  = "Y2FwaV9ncm91cDoxOTUwNTU1MDA3OToxMjAzNjMzOTQzMjAdOTY0MTUZD"
	gidFields = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
	reqID     = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
	wamidAgg  = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI4QUFBQkJCQ0NDREREMTIzNDUA"
	wamidPage = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
)

var msgIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func fixtureFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	if err != nil || len(files) != 36 {
		t.Fatalf("want the 36 Meta examples in %s, found %d (err %v)", fixtureDir, len(files), err)
	}
	return files
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t testing.TB, body []byte) []webhook.Item {
	t.Helper()
	items, err := webhook.Parse(body)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return items
}

func mustDecode(t testing.TB, it webhook.Item) webhook.Payload {
	t.Helper()
	p, err := webhook.Decode(it)
	if err != nil {
		t.Fatalf("Decode(%s item %s): %v\ndata: %s", it.Kind, it.MsgID, err, it.Data)
	}
	return p
}

// fixtureItemCount is the README's "Items" column: groups[], statuses[] and
// messages[] entries.
func fixtureItemCount(t *testing.T, body []byte) int {
	t.Helper()
	var env struct {
		Entry []struct {
			Changes []struct {
				Value map[string]json.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range env.Entry {
		for _, c := range e.Changes {
			for _, k := range []string{"groups", "statuses", "messages"} {
				var list []json.RawMessage
				if raw, ok := c.Value[k]; ok {
					if err := json.Unmarshal(raw, &list); err != nil {
						t.Fatal(err)
					}
				}
				n += len(list)
			}
		}
	}
	return n
}

func TestParseEveryMetaExample(t *testing.T) {
	t.Parallel()
	known := map[string]bool{
		webhook.FieldGroupLifecycle: true, webhook.FieldGroupParticipants: true,
		webhook.FieldGroupSettings: true, webhook.FieldGroupStatus: true, webhook.FieldMessages: true,
	}
	for _, f := range fixtureFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			body := readFixture(t, filepath.Base(f))
			items := mustParse(t, body)
			if want := fixtureItemCount(t, body); len(items) != want || want == 0 {
				t.Fatalf("got %d items, want %d (one per groups/statuses/messages entry)", len(items), want)
			}
			seen := map[string]bool{}
			for i, it := range items {
				if it.PhoneNumberID != phoneID || it.WABAID != wabaID || it.DisplayPhoneNumber != "15550783881" {
					t.Errorf("item %d: phone %q waba %q display %q, want %s %s 15550783881", i, it.PhoneNumberID, it.WABAID, it.DisplayPhoneNumber, phoneID, wabaID)
				}
				if !known[it.Field] {
					t.Errorf("item %d: field %q is not a normalised groups field", i, it.Field)
				}
				if !msgIDPattern.MatchString(it.MsgID) {
					t.Errorf("item %d: MsgID %q is not 32 hex digits", i, it.MsgID)
				}
				if seen[it.MsgID] {
					t.Errorf("item %d: MsgID %s repeats within one delivery", i, it.MsgID)
				}
				seen[it.MsgID] = true
				if it.Kind == webhook.KindChange || it.Type == "" {
					t.Errorf("item %d: kind %q type %q, want a split item with a type", i, it.Kind, it.Type)
				}
				p := mustDecode(t, it)
				if p.Metadata.PhoneNumberID != phoneID || p.WABAID != wabaID || p.Field != it.Field {
					t.Errorf("item %d: payload context %+v / %q / %q does not match the item", i, p.Metadata, p.WABAID, p.Field)
				}
				var ts int64
				switch it.Kind {
				case webhook.KindGroup:
					if p.Group == nil || p.Group.Type != it.Type || p.Group.GroupID != it.GroupID {
						t.Fatalf("item %d: group payload %+v does not match item type %q group %q", i, p.Group, it.Type, it.GroupID)
					}
					ts = p.Group.Timestamp
				case webhook.KindStatus:
					if p.Status == nil || p.Status.Status != it.Type {
						t.Fatalf("item %d: status payload %+v does not match item type %q", i, p.Status, it.Type)
					}
					ts = p.Status.Timestamp
				case webhook.KindMessage:
					if p.Message == nil || p.Message.Type != it.Type {
						t.Fatalf("item %d: message payload %+v does not match item type %q", i, p.Message, it.Type)
					}
					ts = p.Message.Timestamp
				}
				if ts < 1_700_000_000 {
					t.Errorf("item %d: timestamp %d, want the sample's Unix time", i, ts)
				}
				if it.GroupID == "" {
					t.Errorf("item %d: no group id; every sample is about a group", i)
				}
			}
		})
	}
}

func apiErr(code int, title, message, details string) webhook.Error {
	return webhook.Error{Code: code, Title: title, Message: message, ErrorData: webhook.ErrorData{Details: details}}
}

func TestParseGroupEvents(t *testing.T) {
	t.Parallel()
	const rateLimit = "Group operation failed because there were too many group operations from this phone number in a short period."
	notInGroup := "Participant is not a part of the group."
	tests := []struct {
		file      string
		index     int
		wantField string
		want      webhook.GroupEvent
	}{
		{"groups.webhooks__group_create_succeed.json", 0, webhook.FieldGroupLifecycle, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeGroupCreate, RequestID: reqID,
			Subject: "test invite link", InviteLink: "https://chat.whatsapp.com/BjCg8D2zYrE7kS1uFp0xQa", JoinApprovalMode: "auto_approve",
		}},
		{"groups.webhooks__group_create_fail.json", 0, webhook.FieldGroupLifecycle, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeGroupCreate, RequestID: reqID,
			Subject: "test invite link", Description: "Test Description",
			Errors: []webhook.Error{apiErr(131211, "Group create limit reached",
				"Reached the limit for the maximum number of groups that can be created for this number.",
				"Reached the limit for the maximum number of groups that can be created for this number.")},
		}},
		{"groups.webhooks__delete_group_succeed.json", 0, webhook.FieldGroupLifecycle, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeGroupDelete, RequestID: reqID,
		}},
		{"fields__group_lifecycle_update.json", 2, webhook.FieldGroupLifecycle, webhook.GroupEvent{
			Timestamp: 1750100200, GroupID: gidFields, Type: webhook.TypeGroupDelete, RequestID: "8c3f4ebf7d9f6a2b",
		}},
		{"groups.webhooks__user_joined_group_using_invite_link_succeed.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeParticipantsAdd, Reason: "invite_link",
			AddedParticipants: []webhook.Participant{{WAID: "16505551234"}},
		}},
		{"groups.webhooks__join_request_approved.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeParticipantsAdd, Reason: "invite_link",
			AddedParticipants: []webhook.Participant{{Input: "16505551234", WAID: "16505551234"}},
		}},
		{"business-scoped-user-ids__group_participants_update_invite_link_join.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750030073, GroupID: gidPages, Type: webhook.TypeParticipantsAdd, Reason: "invite_link",
			AddedParticipants: []webhook.Participant{{WAID: "16505551234", UserID: "US.13491208655302741918",
				ParentUserID: "US.ENT.11815799212886844830", Username: "pablomorales"}},
		}},
		{"groups.webhooks__user_accepts_or_cancels_join_request.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeJoinRequestCreated, Reason: "invite_link",
			JoinRequestID: "MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw", WAID: "16505551234",
		}},
		{"business-scoped-user-ids__group_participants_update_join_request_revoked.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750030073, GroupID: gidPages, Type: webhook.TypeJoinRequestRevoked,
			JoinRequestID: "MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw", WAID: "16505551234",
			UserID: "US.13491208655302741918", ParentUserID: "US.ENT.11815799212886844830", Username: "pablomorales",
		}},
		{"groups.webhooks__group_participant_remove_partially_fails.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeParticipantsRemove, RequestID: reqID,
			InitiatedBy:         webhook.InitiatedByBusiness,
			RemovedParticipants: []webhook.Participant{{Input: "16505551234"}},
			FailedParticipants: []webhook.Participant{{Input: "16505551235", Errors: []webhook.Error{
				apiErr(131212, notInGroup, notInGroup, notInGroup)}}},
			Errors: []webhook.Error{apiErr(131201, "Not All Participants Remove Succeeded",
				"Failed to remove some participants from the group", "Not all participant-level operations in the request succeeded.")},
		}},
		{"groups.webhooks__group_participant_leaves.json", 0, webhook.FieldGroupParticipants, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeParticipantsRemove,
			InitiatedBy:         webhook.InitiatedByParticipant,
			RemovedParticipants: []webhook.Participant{{WAID: "16505551234"}},
		}},
		{"groups.webhooks__group_settings_update_partial_fail.json", 0, webhook.FieldGroupSettings, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeGroupSettingsUpdate, RequestID: reqID,
			ProfilePicture: &webhook.PictureOutcome{MimeType: "image/jpeg", SHA256: "Y9vvGyeo3n76ptkXu3CwDBsnzbRFqpjHskQdMGSVqas=", UpdateSuccessful: true},
			GroupSubject: &webhook.TextOutcome{Text: "Test Subject", Errors: []webhook.Error{
				apiErr(131208, "Group Rate Limit Hit", rateLimit, rateLimit)}},
			GroupDescription: &webhook.TextOutcome{Text: "Test Description", Errors: []webhook.Error{
				apiErr(131208, "Group Rate Limit Hit", rateLimit, rateLimit)}},
			Errors: []webhook.Error{apiErr(131201, "Request partially succeeded",
				"Not all participant-level operations in the request succeeded.", "Not all participant-level operations in the request succeeded.")},
		}},
		{"groups.webhooks__group_suspended.json", 0, webhook.FieldGroupStatus, webhook.GroupEvent{
			Timestamp: 1750101000, GroupID: gidPages, Type: webhook.TypeGroupSuspend,
		}},
		{"fields__group_status_update.json", 1, webhook.FieldGroupStatus, webhook.GroupEvent{
			Timestamp: 1750100900, GroupID: gidFields, Type: webhook.TypeGroupSuspendCleared,
		}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			t.Parallel()
			items := mustParse(t, readFixture(t, tt.file))
			it := items[tt.index]
			if it.Kind != webhook.KindGroup || it.Field != tt.wantField || it.Type != tt.want.Type || it.GroupID != tt.want.GroupID {
				t.Fatalf("item = kind %q field %q type %q group %q, want group %q %q %q",
					it.Kind, it.Field, it.Type, it.GroupID, tt.wantField, tt.want.Type, tt.want.GroupID)
			}
			got := mustDecode(t, it).Group
			if got == nil || !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("group event\n got: %+v\nwant: %+v", got, tt.want)
			}
		})
	}
}

func TestParseAggregatedStatuses(t *testing.T) {
	t.Parallel()
	items := mustParse(t, readFixture(t, "messages__group_statuses_aggregated.json"))
	yes, no := true, false
	marketing := &webhook.Pricing{Billable: &yes, PricingModel: "PMP", Category: "group_marketing"}
	conv := func(origin string) *webhook.Conversation {
		return &webhook.Conversation{ID: "b1946ac92492d2347c6235b4d2611184", Origin: &webhook.ConversationOrigin{Type: origin}}
	}
	want := []webhook.Status{
		{ID: wamidAgg, Status: "read", Timestamp: 1750101000, RecipientID: gidFields, RecipientType: "group",
			RecipientParticipantID: "16505551234", Conversation: conv("group_marketing"), Pricing: marketing},
		{ID: wamidAgg, Status: "read", Timestamp: 1750101001, RecipientID: gidFields, RecipientType: "group",
			RecipientParticipantID: "16505551235", RecipientParticipantUserID: "US.13491208655302741919",
			Conversation: conv("group_marketing"), Pricing: marketing},
		// participant_recipient_id (doc drift) becomes recipient_participant_id.
		{ID: wamidAgg, Status: "delivered", Timestamp: 1750100990, RecipientID: gidFields, RecipientType: "group",
			RecipientParticipantID: "16505551236", Conversation: conv("group_service"),
			Pricing: &webhook.Pricing{Billable: &no, PricingModel: "PMP", Category: "group_service"}},
	}
	if len(items) != len(want) {
		t.Fatalf("got %d items, want %d: one per participant", len(items), len(want))
	}
	for i, it := range items {
		if it.Kind != webhook.KindStatus || it.Field != webhook.FieldMessages || it.Type != want[i].Status || it.GroupID != gidFields {
			t.Errorf("item %d = kind %q field %q type %q group %q", i, it.Kind, it.Field, it.Type, it.GroupID)
		}
		got := mustDecode(t, it).Status
		if got == nil || !reflect.DeepEqual(*got, want[i]) {
			t.Errorf("status %d\n got: %+v\nwant: %+v", i, got, want[i])
		}
	}
}

func TestParseStatusCarriesItsContact(t *testing.T) {
	t.Parallel()
	items := mustParse(t, readFixture(t, "business-scoped-user-ids__status_messages_webhooks_for_groups.json"))
	p := mustDecode(t, items[0])
	want := webhook.Contact{Profile: webhook.ContactProfile{Name: "Pablo M.", Username: "pablomorales"},
		WAID: "16505551234", UserID: "US.13491208655302741918", ParentUserID: "US.ENT.11815799212886844830"}
	if p.Contact == nil || *p.Contact != want {
		t.Fatalf("contact = %+v, want %+v", p.Contact, want)
	}
	if s := p.Status; s.RecipientParticipantParentUserID != "US.ENT.11815799212886844830" || s.Pricing == nil || s.Pricing.Type != "regular" {
		t.Fatalf("status lost BSUID or pricing fields: %+v", s)
	}
}

// A 1:1 status for a user known only by business-scoped user id names
// them by recipient_user_id; Meta leaves recipient_id out.
func TestParseOneToOneStatusByUserID(t *testing.T) {
	t.Parallel()
	items := mustParse(t, envelope("messages", `{`+metadata+`,"contacts":[{"profile":{"name":"Pablo M."},"user_id":"US.13491208655302741918",`+
		`"parent_user_id":"US.ENT.11815799212886844830"}],"statuses":[{"id":"`+wamidPage+`","status":"read","timestamp":"1750030073",`+
		`"recipient_user_id":"US.13491208655302741918","recipient_parent_user_id":"US.ENT.11815799212886844830"}]}`))
	if len(items) != 1 {
		t.Fatalf("%d items, want the status alone", len(items))
	}
	p := mustDecode(t, items[0])
	want := webhook.Status{ID: wamidPage, Status: "read", Timestamp: 1750030073,
		RecipientUserID: "US.13491208655302741918", RecipientParentUserID: "US.ENT.11815799212886844830"}
	if p.Status == nil || !reflect.DeepEqual(*p.Status, want) {
		t.Fatalf("status = %+v, want %+v", p.Status, want)
	}
	if p.Contact == nil || p.Contact.UserID != want.RecipientUserID || p.Contact.Profile.Name != "Pablo M." {
		t.Fatalf("contact = %+v, want Pablo M.'s", p.Contact)
	}
}

func TestParseFailedStatusAndMessages(t *testing.T) {
	t.Parallel()
	failed := mustDecode(t, mustParse(t, readFixture(t, "groups.groups-messaging__group_message_failed.json"))[0]).Status
	wantErr := webhook.Error{Code: 131020, Title: "Bad Group", Message: "Cannot send messages to single member groups.",
		ErrorData: webhook.ErrorData{Details: "Cannot send messages to single member groups."},
		Href:      "/documentation/business-messaging/whatsapp/support/error-codes"}
	if failed.Status != "failed" || failed.RecipientParticipantID != "" || len(failed.Errors) != 1 || failed.Errors[0] != wantErr {
		t.Fatalf("failed status = %+v, want group-level failure with %+v", failed, wantErr)
	}

	it := mustParse(t, readFixture(t, "groups.groups-messaging__receive_group_message.json"))[0]
	msg := mustDecode(t, it)
	wantMsg := webhook.InboundMessage{ID: wamidPage, From: "16505551234", GroupID: gidPages, Type: "text",
		Timestamp: 1750101000, Text: &webhook.Text{Body: "Hello group"}}
	if it.Kind != webhook.KindMessage || msg.Message == nil || !reflect.DeepEqual(*msg.Message, wantMsg) {
		t.Fatalf("message = %s %+v, want %+v", it.Kind, msg.Message, wantMsg)
	}
	if msg.Contact == nil || msg.Contact.Profile.Name != "Pablo Morales" {
		t.Fatalf("message contact = %+v, want Pablo Morales", msg.Contact)
	}

	unsupported := mustDecode(t, mustParse(t, readFixture(t, "groups.groups-messaging__receive_unsupported_group_message.json"))[0]).Message
	if unsupported.Type != "unsupported" || len(unsupported.Errors) != 1 || unsupported.Errors[0].Code != 130501 {
		t.Fatalf("unsupported message = %+v, want error 130501", unsupported)
	}
}

// envelope wraps one change value in Meta's envelope.
func envelope(field, value string) []byte {
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"` + wabaID + `","changes":[{"field":"` + field +
		`","value":` + value + `}]}]}`)
}

const metadata = `"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"` + phoneID + `"}`

func TestParseSpellingDrift(t *testing.T) {
	t.Parallel()
	type variant struct {
		name      string
		canonical []byte
		drifted   []byte
		wantField string
		wantType  string
	}
	remove := `{"timestamp":"1750101000","group_id":"G1","type":"%s","request_id":"R1","initiated_by":"business","removed_participants":[{"input":"16505551234"}]}`
	add := `{"timestamp":1750101000,"group_id":"G1","type":"%s","reason":"invite_link","added_participants":[{"wa_id":"16505551234"}]}`
	status := `{"id":"wamid.X","status":"read","timestamp":"1750101000","recipient_id":"G1","recipient_type":"group","%s":"16505551234"}`
	variants := []variant{
		{
			name:      "Old field and remove type spelling",
			canonical: envelope("group_participants_update", `{`+metadata+`,"groups":[`+sprintf(remove, "group_participants_remove")+`]}`),
			drifted:   envelope("group_participant_update", `{`+metadata+`,"groups":[`+sprintf(remove, "group_remove_participants")+`]}`),
			wantField: webhook.FieldGroupParticipants, wantType: webhook.TypeParticipantsRemove,
		},
		{
			name:      "Old add type spelling and string timestamp",
			canonical: envelope("group_participants_update", `{`+metadata+`,"groups":[`+sprintf(add, "group_participants_add")+`]}`),
			drifted: envelope("group_participant_update", `{`+metadata+`,"groups":[`+
				strings.Replace(sprintf(add, "group_add_participants"), `1750101000`, `"1750101000"`, 1)+`]}`),
			wantField: webhook.FieldGroupParticipants, wantType: webhook.TypeParticipantsAdd,
		},
		{
			name:      "participant_recipient_id",
			canonical: envelope("messages", `{`+metadata+`,"statuses":[`+sprintf(status, "recipient_participant_id")+`]}`),
			drifted:   envelope("messages", `{`+metadata+`,"statuses":[`+sprintf(status, "participant_recipient_id")+`]}`),
			wantField: webhook.FieldMessages, wantType: "read",
		},
		{
			name: "initiated_by beside the groups list",
			canonical: envelope("group_participants_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000","group_id":"G1",`+
				`"type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}],"initiated_by":"participant"}]}`),
			drifted: envelope("group_participants_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000","group_id":"G1",`+
				`"type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}]}],"initiated_by":"participant"}`),
			wantField: webhook.FieldGroupParticipants, wantType: webhook.TypeParticipantsRemove,
		},
		{
			// The doc sample's invalid JSON, repaired the other plausible way.
			name: "initiated_by as its own element after the group object",
			canonical: envelope("group_participants_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000","group_id":"G1",`+
				`"type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}],"initiated_by":"participant"}]}`),
			drifted: envelope("group_participants_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000","group_id":"G1",`+
				`"type":"group_participants_remove","removed_participants":[{"wa_id":"16505551234"}]},{"initiated_by":"participant"}]}`),
			wantField: webhook.FieldGroupParticipants, wantType: webhook.TypeParticipantsRemove,
		},
		{
			name: "Error codes and timestamps as strings",
			canonical: envelope("group_lifecycle_update", `{`+metadata+`,"groups":[{"timestamp":1750101000,"group_id":"G1","type":"group_delete",`+
				`"request_id":"R1","errors":[{"code":131041,"title":"Group unknown"}]}]}`),
			drifted: envelope("group_lifecycle_update", `{`+metadata+`,"groups":[{"timestamp":"1750101000","group_id":"G1","type":"group_delete",`+
				`"request_id":"R1","errors":[{"code":"131041","title":"Group unknown"}]}]}`),
			wantField: webhook.FieldGroupLifecycle, wantType: webhook.TypeGroupDelete,
		},
		{
			name: "Pricing nested in conversation",
			canonical: envelope("messages", `{`+metadata+`,"statuses":[{"id":"wamid.X","status":"read","timestamp":"1750101000",`+
				`"recipient_id":"G1","recipient_type":"group","recipient_participant_id":"1","conversation":{"id":"c"},`+
				`"pricing":{"billable":true,"pricing_model":"PMP","category":"group_marketing"}}]}`),
			drifted: envelope("messages", `{`+metadata+`,"statuses":[{"id":"wamid.X","status":"read","timestamp":"1750101000",`+
				`"recipient_id":"G1","recipient_type":"group","recipient_participant_id":"1","conversation":{"id":"c",`+
				`"pricing":{"billable":true,"pricing_model":"PMP","category":"group_marketing"}}}]}`),
			wantField: webhook.FieldMessages, wantType: "read",
		},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			want := mustParse(t, v.canonical)
			got := mustParse(t, v.drifted)
			if len(got) != 1 || len(want) != 1 {
				t.Fatalf("got %d items from the drifted and %d from the canonical spelling, want 1 each", len(got), len(want))
			}
			if got[0].Field != v.wantField || got[0].Type != v.wantType {
				t.Fatalf("drifted item field %q type %q, want %q %q", got[0].Field, got[0].Type, v.wantField, v.wantType)
			}
			// Same fact, same normalised item: same id, same data.
			if !reflect.DeepEqual(got[0], want[0]) {
				t.Fatalf("drifted spelling normalises to\n%+v\n%s\nwant\n%+v\n%s", got[0], got[0].Data, want[0], want[0].Data)
			}
		})
	}
}

func sprintf(format, s string) string { return strings.Replace(format, "%s", s, 1) }

func TestParseKeepsWhatItDoesNotSplit(t *testing.T) {
	t.Parallel()
	t.Run("Another field is one change item", func(t *testing.T) {
		t.Parallel()
		body := envelope("account_update", `{"phone_number":"15550783881","event":"VERIFIED_ACCOUNT"}`)
		items := mustParse(t, body)
		if len(items) != 1 || items[0].Kind != webhook.KindChange || items[0].Field != "account_update" || items[0].PhoneNumberID != "" {
			t.Fatalf("items = %+v, want one account_update change item without a phone", items)
		}
		p := mustDecode(t, items[0])
		if string(p.Value) != `{"event":"VERIFIED_ACCOUNT","phone_number":"15550783881"}` {
			t.Fatalf("value = %s, want the change value", p.Value)
		}
	})
	t.Run("Value-level errors beside statuses", func(t *testing.T) {
		t.Parallel()
		body := envelope("messages", `{`+metadata+`,"statuses":[{"id":"wamid.X","status":"sent","timestamp":"1","recipient_id":"G1","recipient_type":"group"}],`+
			`"errors":[{"code":131000,"title":"Something went wrong"}]}`)
		items := mustParse(t, body)
		if len(items) != 2 || items[0].Kind != webhook.KindStatus || items[1].Kind != webhook.KindChange {
			t.Fatalf("items = %+v, want a status and a change", items)
		}
		p := mustDecode(t, items[1])
		var v map[string]json.RawMessage
		if err := json.Unmarshal(p.Value, &v); err != nil {
			t.Fatal(err)
		}
		if _, ok := v["errors"]; !ok {
			t.Fatalf("change value %s lost the errors", p.Value)
		}
		if _, ok := v["statuses"]; ok {
			t.Fatalf("change value %s repeats the split statuses", p.Value)
		}
	})
	t.Run("Non-object list entries", func(t *testing.T) {
		t.Parallel()
		body := envelope("group_status_update", `{`+metadata+`,"groups":[{"timestamp":"1","group_id":"G1","type":"group_suspend"},42]}`)
		items := mustParse(t, body)
		if len(items) != 2 || items[0].Type != webhook.TypeGroupSuspend || items[1].Kind != webhook.KindChange {
			t.Fatalf("items = %+v, want the group event and a change holding the odd entry", items)
		}
		if p := mustDecode(t, items[1]); !strings.Contains(string(p.Value), `"groups":[42]`) {
			t.Fatalf("change value %s, want the leftover entry", p.Value)
		}
	})
	t.Run("Empty lists yield nothing", func(t *testing.T) {
		t.Parallel()
		if items := mustParse(t, envelope("messages", `{`+metadata+`,"statuses":[]}`)); len(items) != 0 {
			t.Fatalf("items = %+v, want none", items)
		}
	})
	t.Run("Unsafe field and phone stay out of the subject", func(t *testing.T) {
		t.Parallel()
		body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"a.b>*",` +
			`"value":{"metadata":{"phone_number_id":"1.2"},"statuses":[{"id":"w","status":"sent"}]}}]}]}`)
		items := mustParse(t, body)
		if len(items) != 1 || items[0].Field != "a_b__" {
			t.Fatalf("items = %+v, want field a_b__", items)
		}
	})
}

func TestParseRejectsWhatIsNotAWebhook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, wantMsg string
	}{
		{"Empty body", ``, "not JSON"},
		{"Not JSON", `<xml/>`, "not JSON"},
		{"Truncated JSON", `{"object":"whatsapp_business_account","entry":[`, "not JSON"},
		{"Two JSON values", `{} {}`, "not JSON"},
		{"Array at the top", `[]`, "not a webhook envelope"},
		{"Other object", `{"object":"page","entry":[{"id":"1","changes":[]}]}`, `object is "page"`},
		{"No object", `{"entry":[{"id":"1","changes":[]}]}`, "object is"},
		{"No entry", `{"object":"whatsapp_business_account"}`, "no entry"},
		{"Empty entry", `{"object":"whatsapp_business_account","entry":[]}`, "no entry"},
		{"Entry not a list", `{"object":"whatsapp_business_account","entry":{}}`, "no entry"},
		{"Entry item not an object", `{"object":"whatsapp_business_account","entry":[1]}`, "entry[0]"},
		{"No changes", `{"object":"whatsapp_business_account","entry":[{"id":"1"}]}`, "no changes"},
		{"Change not an object", `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":["x"]}]}`, "changes[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			items, err := webhook.Parse([]byte(tt.body))
			if !errors.Is(err, webhook.ErrMalformed) {
				t.Fatalf("Parse() = %d items, %v; want ErrMalformed", len(items), err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

// reserialise rewrites a JSON document with every object's keys in reverse
// order and different whitespace, as another encoder might.
func reserialise(t testing.TB, body []byte) []byte {
	t.Helper()
	var sb strings.Builder
	var walk func(json.RawMessage)
	walk = func(raw json.RawMessage) {
		raw = json.RawMessage(strings.TrimSpace(string(raw)))
		switch raw[0] {
		case '{':
			var keys []string
			vals := map[string]json.RawMessage{}
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			if _, err := dec.Token(); err != nil {
				t.Fatal(err)
			}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					t.Fatal(err)
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k.(string))
				vals[k.(string)] = v
			}
			sb.WriteString("{\n\t")
			for i := len(keys) - 1; i >= 0; i-- {
				kb, _ := json.Marshal(keys[i])
				sb.Write(kb)
				sb.WriteString(" :  ")
				walk(vals[keys[i]])
				if i > 0 {
					sb.WriteString(",\r\n  ")
				}
			}
			sb.WriteString("\n}")
		case '[':
			var list []json.RawMessage
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatal(err)
			}
			sb.WriteString("[ ")
			for i, v := range list {
				if i > 0 {
					sb.WriteString(" , ")
				}
				walk(v)
			}
			sb.WriteString(" ]")
		default:
			sb.Write(raw)
		}
	}
	walk(body)
	return []byte(sb.String())
}

func TestMsgIDSurvivesRedelivery(t *testing.T) {
	t.Parallel()
	for _, f := range fixtureFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			body := readFixture(t, filepath.Base(f))
			again := reserialise(t, body)
			if string(again) == string(body) {
				t.Fatal("reserialise did not change the bytes")
			}
			first, second := mustParse(t, body), mustParse(t, again)
			if len(first) != len(second) {
				t.Fatalf("redelivery gives %d items, first delivery %d", len(second), len(first))
			}
			for i := range first {
				if first[i].MsgID != second[i].MsgID {
					t.Errorf("item %d: MsgID %s on redelivery, %s first", i, second[i].MsgID, first[i].MsgID)
				}
				if string(first[i].Data) != string(second[i].Data) {
					t.Errorf("item %d: data differs on redelivery:\n%s\n%s", i, second[i].Data, first[i].Data)
				}
			}
		})
	}
}

func TestMsgIDTellsDifferentFactsApart(t *testing.T) {
	t.Parallel()
	group := func(fields string) []byte {
		return envelope("group_participants_update", `{`+metadata+`,"groups":[{"group_id":"G1",`+fields+`}]}`)
	}
	status := func(fields string) []byte {
		return envelope("messages", `{`+metadata+`,"statuses":[{"recipient_id":"G1","recipient_type":"group",`+fields+`}]}`)
	}
	join := `"type":"group_participants_add","timestamp":"100","added_participants":[{"wa_id":"1"}]`
	remove := `"type":"group_participants_remove","timestamp":"100","request_id":"R1","removed_participants":[{"input":"1"},{"input":"2"}]`
	read := `"id":"wamid.A","status":"read","timestamp":"100","recipient_participant_id":"1"`
	tests := []struct {
		name      string
		a, b      []byte
		wantEqual bool
	}{
		{"Another participant joins at the same second", group(join), group(strings.Replace(join, `"wa_id":"1"`, `"wa_id":"2"`, 1)), false},
		{"The same participant rejoins later", group(join), group(strings.Replace(join, `"100"`, `"200"`, 1)), false},
		{"Another group", group(join), envelope("group_participants_update", `{`+metadata+`,"groups":[{"group_id":"G2",`+join+`}]}`), false},
		{"Another removal request", group(remove), group(strings.Replace(remove, "R1", "R2", 1)), false},
		{"Removal lists in another order", group(remove), group(strings.Replace(remove, `{"input":"1"},{"input":"2"}`, `{"input":"2"},{"input":"1"}`, 1)), true},
		{"Another join request", group(`"type":"group_join_request_created","timestamp":"1","join_request_id":"J1","wa_id":"1"`),
			group(`"type":"group_join_request_created","timestamp":"1","join_request_id":"J2","wa_id":"1"`), false},
		{"Join request created then revoked", group(`"type":"group_join_request_created","timestamp":"1","join_request_id":"J1"`),
			group(`"type":"group_join_request_revoked","timestamp":"1","join_request_id":"J1"`), false},
		{"Suspended then cleared", group(`"type":"group_suspend","timestamp":"1"`), group(`"type":"group_suspend_cleared","timestamp":"1"`), false},
		{"Suspended twice", group(`"type":"group_suspend","timestamp":"1"`), group(`"type":"group_suspend","timestamp":"2"`), false},
		{"Read by another participant", status(read), status(strings.Replace(read, `"recipient_participant_id":"1"`, `"recipient_participant_id":"2"`, 1)), false},
		{"Read by a participant known only by BSUID", status(`"id":"wamid.A","status":"read","recipient_participant_user_id":"US.1"`),
			status(`"id":"wamid.A","status":"read","recipient_participant_user_id":"US.2"`), false},
		{"Delivered then read", status(read), status(strings.Replace(read, "read", "delivered", 1)), false},
		{"Another message", status(read), status(strings.Replace(read, "wamid.A", "wamid.B", 1)), false},
		{"Same status resent with another timestamp", status(read), status(strings.Replace(read, `"100"`, `"101"`, 1)), true},
		{"Same status with and without pricing", status(read), status(read + `,"pricing":{"billable":true}`), true},
		{"Status of another phone number", status(read), []byte(strings.Replace(string(status(read)), phoneID, "999", 1)), false},
		{"Unidentifiable items differ by content", status(`"status":"read","x":1`), status(`"status":"read","x":2`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, b := mustParse(t, tt.a), mustParse(t, tt.b)
			if len(a) != 1 || len(b) != 1 {
				t.Fatalf("got %d and %d items, want 1 each", len(a), len(b))
			}
			if equal := a[0].MsgID == b[0].MsgID; equal != tt.wantEqual {
				t.Fatalf("MsgIDs %s and %s: equal = %v, want %v", a[0].MsgID, b[0].MsgID, equal, tt.wantEqual)
			}
		})
	}
}

func TestMsgIDIsHex(t *testing.T) {
	t.Parallel()
	it := mustParse(t, readFixture(t, "groups.webhooks__group_suspended.json"))[0]
	if b, err := hex.DecodeString(it.MsgID); err != nil || len(b) != 16 {
		t.Fatalf("MsgID %q: want 16 bytes of hex (err %v)", it.MsgID, err)
	}
}

// goldenCase is one line of testdata/parse-golden.jsonl: what Parse made of
// a body when MsgIDs were first fixed. Changing a MsgID breaks
// deduplication of Meta's redeliveries across an upgrade, so these must
// not change.
type goldenCase struct {
	Case  string         `json:"case"`
	Body  string         `json:"body,omitempty"` // empty for the fixture named Case
	Error string         `json:"error,omitempty"`
	Items []webhook.Item `json:"items"`
}

// goldenEdgeCases are bodies beyond Meta's examples whose items are in the
// golden file: drift, odd shapes, escapes and numbers.
var goldenEdgeCases = []struct{ name, body string }{
	{"orphans and value-level initiated_by", `{"object":"whatsapp_business_account","entry":[{"id":1,"changes":[{"field":"group_participant_update","value":{"groups":[{},{"initiated_by":"a"},{"initiated_by":"b"},{"type":"group_add_participants","timestamp":"1"}],"initiated_by":"z"}}]}]}`},
	{"string numbers and nested errors", `{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[1,{"errors":[{"code":"7","error_subcode":" 08 "}],"a":{"errors":[{"code":"-0"}]},"timestamp":"+12"}]}}]}]}`},
	{"drifted status with pricing in conversation", `{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"participant_recipient_id":"1","conversation":{"pricing":{"b":true},"expiration_timestamp":"0012"}}],"contacts":[{"wa_id":"1"}]}}]}]}`},
	{"escapes, duplicates and numbers", `{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"a":"\u2028\ud800x\u00e9\"\\\/\b\f\n\r\t\u0001<>&","b":[1.5e3,-0,true,false,null],"a":"dup","\u0063":"é"}}]}]}`},
	{"null, false and missing values", `{"object":"whatsapp_business_account","entry":[{"changes":[{"value":null},{"value":false},{}]}]}`},
	{"unsafe field, messages and contacts", `{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"a.b>*","value":{"metadata":{"phone_number_id":"1.2"},"messages":[{"id":"w","from":"5"},{}],"contacts":[{"wa_id":"5"}]}}]}]}`},
	{"group without ids", `{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"group_lifecycle_update","value":{"messaging_product":"whatsapp","groups":[{"group_id":"G","type":"group_create","subject":"x","added_participants":[{"input":"2"},{"wa_id":"1"},7],"profile_picture":null}]}}]}]}`},
	{"leftovers become a change", `{"object":"whatsapp_business_account","entry":[{"id":"W","changes":[{"field":"messages","value":{"metadata":{"display_phone_number":"1"},"statuses":[{"id":"s","status":"read","recipient_id":"9","recipient_user_id":"U"},"x"],"messages":[],"contacts":[{"user_id":"U","profile":{"name":"N"}}],"errors":[{"code":"1"}]}}]}]}`},
	{"not JSON", `{"object":`},
	{"not an envelope", `{"object":"page","entry":[]}`},
}

func TestParseMatchesGolden(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/parse-golden.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	seen := 0
	for dec.More() {
		var c goldenCase
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("golden file: %v", err)
		}
		seen++
		body := []byte(c.Body)
		if c.Body == "" {
			body = readFixture(t, c.Case)
		}
		items, err := webhook.Parse(body)
		if got := fmt.Sprint(err); (err != nil || c.Error != "") && got != c.Error {
			t.Errorf("%s: error %q, want %q", c.Case, got, c.Error)
			continue
		}
		if len(items) != len(c.Items) {
			t.Errorf("%s: %d items, want %d", c.Case, len(items), len(c.Items))
			continue
		}
		for i, want := range c.Items {
			if got := items[i]; !reflect.DeepEqual(got, want) {
				t.Errorf("%s: item %d\n got %+v\n%s\nwant %+v\n%s", c.Case, i, got, got.Data, want, want.Data)
			}
		}
	}
	if want := 36 + len(goldenEdgeCases); seen != want {
		t.Fatalf("golden file has %d cases, want %d (regenerate it only if MsgIDs may change)", seen, want)
	}
}
