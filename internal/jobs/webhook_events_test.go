package jobs_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/testutil"
)

// Webhooks the simulator does not send, delivered as Meta would, become
// events that match their published schemas.
func TestWebhookEventsMatchTheirSchemas(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	const group = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"

	t.Run("A 1:1 status for a user known only by user id names them", func(t *testing.T) {
		s.deliverWebhook(t, "messages", `{"contacts":[{"profile":{"name":"Pablo M."},"user_id":"US.13491208655302741918"}],`+
			`"statuses":[{"id":"wamid.bsuid-1","status":"read","timestamp":"1750030073","recipient_user_id":"US.13491208655302741918",`+
			`"recipient_parent_user_id":"US.ENT.11815799212886844830"}]}`)
		got := s.statusOf(t, "wamid.bsuid-1")
		if got.RecipientID != "" || got.RecipientUserID != "US.13491208655302741918" || got.RecipientParentUserID != "US.ENT.11815799212886844830" {
			t.Errorf("message.status = %+v, want the recipient by user id and parent user id", got)
		}
	})
	t.Run("A status value Meta adds later is passed on", func(t *testing.T) {
		s.deliverWebhook(t, "messages", `{"statuses":[{"id":"wamid.new-1","status":"deleted","timestamp":"1750030073","recipient_id":"16505551234"}]}`)
		if got := s.statusOf(t, "wamid.new-1"); got.Status != "deleted" || got.RecipientID != "16505551234" {
			t.Errorf("message.status = %+v, want status deleted for 16505551234", got)
		}
	})
	t.Run("A status naming no recipient is published without one", func(t *testing.T) {
		// Its message id and status still tell a send's fate.
		s.deliverWebhook(t, "messages", `{"statuses":[{"id":"wamid.nobody-1","status":"failed","timestamp":"1750030073",`+
			`"errors":[{"code":131026,"title":"Message undeliverable"}]}]}`)
		if got := s.statusOf(t, "wamid.nobody-1"); got.Status != "failed" || got.RecipientID != "" || got.RecipientUserID != "" {
			t.Errorf("message.status = %+v, want status failed with no recipient", got)
		}
	})
	t.Run("A status passes on its callback data and its conversation", func(t *testing.T) {
		// biz_opaque_callback_data is what the sender attached to the
		// message; Graph v23 and lower add the conversation it was
		// charged in.
		s.deliverWebhook(t, "messages", `{"statuses":[{"id":"wamid.opaque-1","status":"delivered","timestamp":"1750030073",`+
			`"recipient_id":"16505551234","biz_opaque_callback_data":"order-4711/line-2",`+
			`"conversation":{"id":"c0ffee72b14d6bd5","expiration_timestamp":"1750116473","origin":{"type":"utility"}},`+
			`"pricing":{"billable":true,"pricing_model":"PMP","category":"utility"}}]}`)
		got := s.statusOf(t, "wamid.opaque-1")
		expires := time.Unix(1750116473, 0).UTC()
		want := events.Conversation{ID: "c0ffee72b14d6bd5", OriginType: "utility", ExpirationTime: &expires}
		if got.BizOpaqueCallbackData != "order-4711/line-2" || got.Conversation == nil || got.Conversation.ID != want.ID ||
			got.Conversation.OriginType != want.OriginType || got.Conversation.ExpirationTime == nil || !got.Conversation.ExpirationTime.Equal(expires) {
			t.Errorf("message.status = %+v (conversation %+v), want callback data order-4711/line-2 and conversation %+v", got, got.Conversation, want)
		}
	})
	t.Run("A join request's revocation passes on Meta's reason", func(t *testing.T) {
		id := "MTY0NjcwNDM1OTU6cmVhc29u"
		s.deliverWebhook(t, "group_participants_update", `{"groups":[{"timestamp":"1750030073","group_id":"`+group+`",`+
			`"type":"group_join_request_revoked","reason":"invite_link","join_request_id":"`+id+`","wa_id":"16505551234"}]}`)
		var d events.JoinRequestRevoked
		s.events.WaitFor(t, "group.join_request_revoked of "+id, func() bool {
			for _, e := range s.events.OfType(events.EventGroupJoinRequestRevoked) {
				var one events.JoinRequestRevoked
				if json.Unmarshal(e.Data, &one) == nil && one.JoinRequestID == id {
					checkEventSchema(t, e)
					d = one
					return true
				}
			}
			return false
		})
		if d.Reason != "invite_link" || d.Participant.WAID != "16505551234" {
			t.Errorf("group.join_request_revoked = %+v, want reason invite_link for 16505551234", d)
		}
	})
	for _, tc := range []struct{ typ, event string }{
		{"group_join_request_created", events.EventGroupJoinRequestCreated},
		{"group_join_request_revoked", events.EventGroupJoinRequestRevoked},
	} {
		t.Run("A "+tc.typ+" naming nobody is published without a participant", func(t *testing.T) {
			// The request id is what approving or rejecting it needs.
			id := "MTY0NjcwNDM1OTU6bm9ib2R5" + tc.typ
			s.deliverWebhook(t, "group_participants_update", `{"groups":[{"timestamp":"1750030073","group_id":"`+group+`",`+
				`"type":"`+tc.typ+`","join_request_id":"`+id+`"}]}`)
			var found testutil.Event
			s.events.WaitFor(t, tc.event+" of "+id, func() bool {
				for _, e := range s.events.OfType(tc.event) {
					var d events.JoinRequestCreated
					if json.Unmarshal(e.Data, &d) == nil && d.JoinRequestID == id {
						found = e
						return true
					}
				}
				return false
			})
			checkEventSchema(t, found)
		})
	}
	t.Run("A leave naming nobody gives no event", func(t *testing.T) {
		// The nameless entry comes first: had it an event, that event
		// would be published before the named one's.
		s.deliverWebhook(t, "group_participants_update", `{"groups":[{"timestamp":"1750030073","group_id":"`+group+`",`+
			`"type":"group_participants_remove","initiated_by":"participant","removed_participants":[{},{"wa_id":"16505551299"}]}]}`)
		ofGroup := func(e testutil.Event) bool {
			var d events.ParticipantLeft
			return e.Type == events.EventGroupParticipantLeft && json.Unmarshal(e.Data, &d) == nil && d.GroupID == group
		}
		s.events.WaitFor(t, "group.participant_left", func() bool { return len(s.events.Filter(ofGroup)) > 0 })
		left := s.events.Filter(ofGroup)
		for _, e := range left {
			checkEventSchema(t, e)
		}
		var d events.ParticipantLeft
		_ = json.Unmarshal(left[0].Data, &d)
		if len(left) != 1 || d.Participant.WAID != "16505551299" {
			t.Errorf("%d group.participant_left events, the first for %+v; want one, for 16505551299", len(left), d.Participant)
		}
	})
}

// deliverWebhook posts one change of field with value (metadata added) to
// the webhook handler, signed as Meta signs it.
func (s *stack) deliverWebhook(t testing.TB, field, value string) {
	t.Helper()
	value = `{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"` + phone + `"},` +
		strings.TrimPrefix(value, "{")
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"` + field +
		`","value":` + value + `}]}]}`)
	req, err := http.NewRequest(http.MethodPost, s.hooksURL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", sim.Sign(sim.DefaultAppSecret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook answered %s, want 200", resp.Status)
	}
}

// statusOf waits for the message.status event of message id, checks it
// against its schema and returns its data.
func (s *stack) statusOf(t testing.TB, id string) events.MessageStatus {
	t.Helper()
	var found testutil.Event
	var d events.MessageStatus
	s.events.WaitFor(t, "message.status of "+id, func() bool {
		for _, e := range s.events.OfType(events.EventMessageStatus) {
			var one events.MessageStatus
			if json.Unmarshal(e.Data, &one) == nil && one.MessageID == id {
				found, d = e, one
				return true
			}
		}
		return false
	})
	checkEventSchema(t, found)
	return d
}

// checkEventSchema fails the test unless e matches its type's schema, as
// internal/events ships it.
func checkEventSchema(t testing.TB, e testutil.Event) {
	t.Helper()
	schema := events.EventSchema(e.Type)
	if err := testutil.ValidateSchema(t, schema, e.Raw); err != nil {
		t.Errorf("%s event does not match %s:\n%s\n%v", e.Type, schema, e.Raw, err)
	}
}
