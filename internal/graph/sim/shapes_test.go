package sim_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// keyPaths lists every property path of a JSON document ("a.b[].c"),
// ignoring values, so two payloads of the same shape compare equal. The
// spelling participant_recipient_id, seen on some Meta pages, counts as the
// canonical recipient_participant_id.
func keyPaths(t *testing.T, raw []byte) map[string]bool {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	out := map[string]bool{}
	var walk func(v any, prefix string)
	walk = func(v any, prefix string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				if k == "participant_recipient_id" {
					k = "recipient_participant_id"
				}
				p := prefix + "." + k
				out[p] = true
				walk(c, p)
			}
		case []any:
			for _, c := range x {
				walk(c, prefix+"[]")
			}
		}
	}
	walk(v, "")
	return out
}

func example(t *testing.T, name string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "meta-examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return keyPaths(t, raw)
}

// sameShape checks that got has every property all samples share and none
// that no sample has; with one sample that is the exact shape.
func sameShape(t *testing.T, got []byte, samples ...string) {
	t.Helper()
	mine := keyPaths(t, got)
	union, inter := map[string]bool{}, map[string]bool{}
	for i, name := range samples {
		ex := example(t, name)
		maps.Copy(union, ex)
		if i == 0 {
			maps.Copy(inter, ex)
			continue
		}
		for k := range inter {
			if !ex[k] {
				delete(inter, k)
			}
		}
	}
	var extra, missing []string
	for k := range mine {
		if !union[k] {
			extra = append(extra, k)
		}
	}
	for k := range inter {
		if !mine[k] {
			missing = append(missing, k)
		}
	}
	slices.Sort(extra)
	slices.Sort(missing)
	if len(extra)+len(missing) > 0 {
		t.Fatalf("shape differs from %v\nextra:   %v\nmissing: %v\ngot: %s", samples, extra, missing, got)
	}
}

func TestWebhookShapesMatchMetaExamples(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) { c.Statuses = &sim.StatusBehavior{Read: 1} })
	postForm := func(groupID string, fields map[string]string, pic []byte) answer {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		fw, _ := mw.CreateFormFile("file", "p.jpg")
		_, _ = fw.Write(pic)
		_ = mw.Close()
		req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v24.0/"+groupID, &body)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		return b.do(t, req)
	}
	byRequest := func(a answer, typ string) []byte {
		expectOK(t, a, 200)
		return b.hooks.waitFor(t, typ, groupEvent(typ, "request_id", a.str("request_id"))).Raw
	}
	settings := map[string]string{"messaging_product": "whatsapp", "subject": "Test Subject", "description": "Test Description"}

	id, link := b.createGroup(t, "Shapes", "")
	t.Run("group_create", func(t *testing.T) {
		sameShape(t, b.hooks.waitFor(t, "create", groupEvent("group_create", "group_id", id)).Raw, "groups.webhooks__group_create_succeed.json")
	})
	t.Run("group_participants_add by link", func(t *testing.T) {
		b.join(t, "16505551234", link)
		b.join(t, "16505551235", link)
		h := b.hooks.waitFor(t, "add", groupEvent("group_participants_add", "group_id", id))
		sameShape(t, h.Raw, "groups.webhooks__user_joined_group_using_invite_link_succeed.json")
	})
	t.Run("group_settings_update", func(t *testing.T) {
		sameShape(t, byRequest(postForm(id, settings, jpegOf(t, 192, 192)), "group_settings_update"), "groups.webhooks__group_settings_update_succeed.json")
	})
	t.Run("group_participants_remove", func(t *testing.T) {
		b.join(t, "16505551236", link)
		b.join(t, "16505551237", link)
		rm := func(users ...string) answer {
			var ps []any
			for _, u := range users {
				ps = append(ps, map[string]any{"user": u})
			}
			return b.call(t, "DELETE", "/v24.0/"+id+"/participants", map[string]any{"messaging_product": "whatsapp", "participants": ps})
		}
		sameShape(t, byRequest(rm("16505551236", "16505551237"), "group_participants_remove"), "groups.webhooks__group_participant_remove_succeed.json")
		sameShape(t, byRequest(rm("16505551235", "16505559999"), "group_participants_remove"), "groups.webhooks__group_participant_remove_partially_fails.json")
		sameShape(t, byRequest(rm("16505559998", "16505559999"), "group_participants_remove"), "groups.webhooks__group_participant_remove_fails.json")
	})
	t.Run("group_participants_remove by the participant", func(t *testing.T) {
		if err := b.sim.Leave("16505551234", id); err != nil {
			t.Fatal(err)
		}
		sameShape(t, b.hooks.waitFor(t, "leave", groupEvent("group_participants_remove", "initiated_by", "participant")).Raw,
			"groups.webhooks__group_participant_leaves.json")
	})
	t.Run("group_suspend and group_suspend_cleared", func(t *testing.T) {
		_ = b.sim.Suspend(id)
		sameShape(t, b.hooks.waitFor(t, "suspend", groupEvent("group_suspend", "group_id", id)).Raw, "groups.webhooks__group_suspended.json")
		_ = b.sim.Unsuspend(id)
		sameShape(t, b.hooks.waitFor(t, "cleared", groupEvent("group_suspend_cleared", "group_id", id)).Raw, "groups.webhooks__group_suspension_cleared.json")
	})
	t.Run("join requests and approval", func(t *testing.T) {
		appr, apprLink := b.createGroup(t, "Approval", "approval_required")
		res := b.join(t, "16505551240", apprLink)
		sameShape(t, b.hooks.waitFor(t, "created", groupEvent("group_join_request_created", "join_request_id", res.JoinRequestID)).Raw,
			"groups.webhooks__user_accepts_or_cancels_join_request.json")
		expectOK(t, b.call(t, "POST", "/v24.0/"+appr+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": []string{res.JoinRequestID}}), 200)
		sameShape(t, b.hooks.waitFor(t, "approved", groupEvent("group_participants_add", "group_id", appr)).Raw,
			"groups.webhooks__join_request_approved.json")
	})
	t.Run("group_delete", func(t *testing.T) {
		gone, _ := b.createGroup(t, "Gone", "")
		sameShape(t, byRequest(b.call(t, "DELETE", "/v24.0/"+gone, nil), "group_delete"), "groups.webhooks__delete_group_succeed.json")
	})
	t.Run("statuses sent and delivered without pricing", func(t *testing.T) {
		b.join(t, "16505551241", link) // the earlier subtests emptied the group
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "hi"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		sameShape(t, b.hooks.waitFor(t, "sent", hasStatus(w, "sent")).Raw, "groups.groups-messaging__group_message_sent.json")
		pin := map[string]any{"messaging_product": "whatsapp", "recipient_type": "group", "to": id, "type": "pin",
			"pin": map[string]any{"type": "pin", "message_id": w, "expiration_days": 1}}
		p := b.call(t, "POST", "/v24.0/"+phone+"/messages", pin)
		pw := p.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		sameShape(t, b.hooks.waitFor(t, "pin delivered", hasStatus(pw, "delivered")).Raw, "groups.webhooks__group_message_read_without_pricing.json")
	})
	t.Run("inbound group message", func(t *testing.T) {
		if _, err := b.sim.UserMessage("16505551235", id, "What does everyone think about this?"); err == nil {
			t.Fatal("a removed participant wrote to the group")
		}
		b.join(t, "16505551238", link)
		if _, err := b.sim.UserMessage("16505551238", id, "What does everyone think about this?"); err != nil {
			t.Fatal(err)
		}
		sameShape(t, b.hooks.waitFor(t, "inbound", func(h hook) bool { return len(h.Value.Messages) > 0 }).Raw, "messages__group_text.json")
	})

	t.Run("failures", func(t *testing.T) {
		b := setup(t, nil)
		id, _ := b.createGroup(t, "Fail", "")
		_ = b.sim.SetFaults(sim.Faults{AsyncFailure: 1})
		sameShape(t, byRequest2(t, b, b.call(t, "POST", "/v24.0/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "test invite link", "description": "Test Description"}), "group_create"),
			"groups.webhooks__group_create_fail.json")
		sameShape(t, byRequest2(t, b, b.call(t, "DELETE", "/v24.0/"+id, nil), "group_delete"), "groups.webhooks__delete_group_fails.json")
		postForm := func(pic []byte) answer {
			var body bytes.Buffer
			mw := multipart.NewWriter(&body)
			for k, v := range settings {
				_ = mw.WriteField(k, v)
			}
			fw, _ := mw.CreateFormFile("file", "p.jpg")
			_, _ = fw.Write(pic)
			_ = mw.Close()
			req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v24.0/"+id, &body)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			return b.do(t, req)
		}
		sameShape(t, byRequest2(t, b, postForm(jpegOf(t, 200, 200)), "group_settings_update"), "groups.webhooks__group_settings_update_partial_fail.json")
		sameShape(t, byRequest2(t, b, postForm(jpegOf(t, 300, 200)), "group_settings_update"), "groups.webhooks__group_settings_update_total_fail.json")
	})

	t.Run("with business-scoped user ids", func(t *testing.T) {
		b := setup(t, func(c *sim.Config) { c.BSUID = true; c.Statuses = &sim.StatusBehavior{Read: 0} })
		id, link := b.createGroup(t, "BSUID", "")
		b.join(t, "16505551234", link)
		sameShape(t, b.hooks.waitFor(t, "add", groupEvent("group_participants_add", "group_id", id)).Raw,
			"business-scoped-user-ids__group_participants_update_invite_link_join.json")
		a := b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "hi"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		sameShape(t, b.hooks.waitFor(t, "delivered", hasStatus(w, "delivered")).Raw, "business-scoped-user-ids__status_messages_webhooks_for_groups.json")
		if err := b.sim.Leave("16505551234", id); err != nil {
			t.Fatal(err)
		}
		sameShape(t, b.hooks.waitFor(t, "leave", groupEvent("group_participants_remove", "initiated_by", "participant")).Raw,
			"business-scoped-user-ids__group_participants_update_participant_leaves.json", "groups.webhooks__group_participant_leaves.json")
		b.join(t, "16505551234", link)
		rm := b.call(t, "DELETE", "/v24.0/"+id+"/participants", map[string]any{"messaging_product": "whatsapp", "participants": []any{map[string]any{"user": "16505551234"}}})
		sameShape(t, byRequest2(t, b, rm, "group_participants_remove"), "business-scoped-user-ids__group_participants_update.json")

		appr, apprLink := b.createGroup(t, "BSUID approval", "approval_required")
		res := b.join(t, "16505551239", apprLink)
		sameShape(t, b.hooks.waitFor(t, "created", groupEvent("group_join_request_created", "join_request_id", res.JoinRequestID)).Raw,
			"business-scoped-user-ids__group_participants_update_join_request_created.json", "groups.webhooks__user_accepts_or_cancels_join_request.json")
		_ = b.sim.RevokeJoinRequest(res.JoinRequestID)
		sameShape(t, b.hooks.waitFor(t, "revoked", groupEvent("group_join_request_revoked", "group_id", appr)).Raw,
			"business-scoped-user-ids__group_participants_update_join_request_revoked.json")
	})
}

func byRequest2(t *testing.T, b *bundle, a answer, typ string) []byte {
	t.Helper()
	expectOK(t, a, 200)
	return b.hooks.waitFor(t, typ, groupEvent(typ, "request_id", a.str("request_id"))).Raw
}

func TestMetaGroupIDSampleDecodes(t *testing.T) {
	t.Parallel()
	// Meta's sample group id is base64 of capi_group:<phone>:<group> with
	// "=" escaped as "ZD"; the simulator's ids follow the same scheme.
	b := setup(t, nil)
	id, _ := b.createGroup(t, "Decode", "")
	for _, gid := range []string{unknownGroupID, id} {
		plain := strings.ReplaceAll(strings.ReplaceAll(gid, "ZD", "="), "ZA", "Z")
		if !strings.HasPrefix(decodeStd(t, plain), "capi_group:") {
			t.Fatalf("%s does not decode to capi_group:…", gid)
		}
	}
}

func decodeStd(t *testing.T, s string) string {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("%q is not base64: %v", s, err)
	}
	return string(raw)
}
