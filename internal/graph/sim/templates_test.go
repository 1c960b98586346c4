package sim_test

import (
	"testing"
)

// createInviteTemplate copies the library's group invite template into the
// WABA and returns its name.
func createInviteTemplate(t *testing.T, b *bundle) string {
	t.Helper()
	lib := b.call(t, "GET", "/v23.0/message_template_library?category=utility&topic=group_invite_link&language=en", nil)
	expectOK(t, lib, 200)
	item := lib.Body["data"].([]any)[0].(map[string]any)
	a := b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
		"name": "my_group_invite", "category": "UTILITY", "language": "en",
		"library_template_name": item["name"],
	})
	if a.Status != 200 && a.code() != 100 { // 100: already created by an earlier subtest
		t.Fatalf("create template: %s", a.Raw)
	}
	return "my_group_invite"
}

func inviteBody(to, groupID, tpl string) map[string]any {
	return map[string]any{
		"messaging_product": "whatsapp", "to": to, "type": "template",
		"template": map[string]any{
			"name": tpl, "language": map[string]any{"code": "en"},
			"components": []any{map[string]any{"type": "body", "parameters": []any{
				map[string]any{"type": "group_id", "group_id": groupID},
			}}},
		},
	}
}

func TestTemplateLibrary(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	a := b.call(t, "GET", "/v24.0/message_template_library?category=utility&topic=group_invite_link&language=en", nil)
	expectOK(t, a, 200)
	data := a.Body["data"].([]any)
	if len(data) != 1 {
		t.Fatalf("library = %s, want one group invite template in en", a.Raw)
	}
	item := data[0].(map[string]any)
	for _, k := range []string{"name", "language", "category", "topic", "usecase", "industry", "body", "body_params", "id"} {
		if item[k] == nil {
			t.Fatalf("library item lacks %q: %v", k, item)
		}
	}
	if item["category"] != "UTILITY" || item["topic"] != "GROUP_INVITE_LINK" || item["language"] != "en" {
		t.Fatalf("item = %v", item)
	}
	t.Run("Filters narrow the list", func(t *testing.T) {
		all := b.call(t, "GET", "/v23.0/message_template_library", nil).Body["data"].([]any)
		orders := b.call(t, "GET", "/v23.0/message_template_library?topic=ORDER_MANAGEMENT", nil).Body["data"].([]any)
		search := b.call(t, "GET", "/v23.0/message_template_library?search=balance", nil).Body["data"].([]any)
		if len(all) <= len(orders) || len(orders) != 2 || len(search) != 1 {
			t.Fatalf("all=%d orders=%d search=%d", len(all), len(orders), len(search))
		}
	})
}

func TestAccountTemplates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	t.Run("A library template is copied and approved", func(t *testing.T) {
		a := b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
			"name": "invite_es", "category": "UTILITY", "language": "es", "library_template_name": "group_invite_upon_request",
		})
		expectOK(t, a, 200)
		if a.str("id") == "" || a.str("status") != "APPROVED" || a.str("category") != "UTILITY" {
			t.Fatalf("answer = %s", a.Raw)
		}
		l := b.call(t, "GET", "/v23.0/"+waba+"/message_templates?name=invite_es", nil)
		data := l.Body["data"].([]any)
		if len(data) != 1 || data[0].(map[string]any)["status"] != "APPROVED" || data[0].(map[string]any)["language"] != "es" {
			t.Fatalf("list = %s", l.Raw)
		}
	})
	t.Run("An unknown name lists nothing", func(t *testing.T) {
		l := b.call(t, "GET", "/v23.0/"+waba+"/message_templates?name=nope", nil)
		if len(l.Body["data"].([]any)) != 0 {
			t.Fatalf("list = %s", l.Raw)
		}
	})
	t.Run("The same name and language twice is 100 with subcode 2388024", func(t *testing.T) {
		e := expectError(t, b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
			"name": "invite_es", "category": "UTILITY", "language": "es", "library_template_name": "group_invite_upon_request",
		}), 400, 100)
		if e["error_subcode"].(float64) != 2388024 {
			t.Fatalf("error = %v", e)
		}
	})
	t.Run("Library templates with URL variables need button inputs", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
			"name": "orders", "category": "UTILITY", "language": "en_US", "library_template_name": "order_confirmation_1",
		}), 400, 100)
		expectOK(t, b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
			"name": "orders", "category": "UTILITY", "language": "en_US", "library_template_name": "order_confirmation_1",
			"library_template_button_inputs": []any{map[string]any{"type": "URL", "url": map[string]any{"base_url": "https://x/{{1}}"}}},
		}), 200)
	})
	t.Run("Templates from components", func(t *testing.T) {
		expectOK(t, b.call(t, "POST", "/v23.0/"+waba+"/message_templates", map[string]any{
			"name": "promo", "category": "MARKETING", "language": "en",
			"components": []any{map[string]any{"type": "BODY", "text": "Hi {{1}}, {{2}} off!"}},
		}), 200)
	})
	for _, tc := range []struct {
		name string
		body map[string]any
	}{
		{"Missing name", map[string]any{"category": "UTILITY", "language": "en", "library_template_name": "group_invite_upon_request"}},
		{"Bad name", map[string]any{"name": "Bad Name", "category": "UTILITY", "language": "en", "library_template_name": "group_invite_upon_request"}},
		{"Bad category", map[string]any{"name": "x", "category": "PROMO", "language": "en", "library_template_name": "group_invite_upon_request"}},
		{"Unknown library template", map[string]any{"name": "x", "category": "UTILITY", "language": "en", "library_template_name": "nope"}},
		{"No components", map[string]any{"name": "x", "category": "UTILITY", "language": "en"}},
	} {
		t.Run(tc.name+" is 100", func(t *testing.T) {
			expectError(t, b.call(t, "POST", "/v23.0/"+waba+"/message_templates", tc.body), 400, 100)
		})
	}
	t.Run("Another WABA is 100/33", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/999/message_templates", nil), 400, 100)
	})
}

func TestSendGroupInvite(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, _ := b.createGroup(t, "Invites", "")
	tpl := createInviteTemplate(t, b)

	a := b.call(t, "POST", "/v23.0/"+phone+"/messages", inviteBody("+16505559001", id, tpl))
	expectOK(t, a, 200)
	m := a.Body["messages"].([]any)[0].(map[string]any)
	c := a.Body["contacts"].([]any)[0].(map[string]any)
	if m["message_status"] != "accepted" || c["input"] != "+16505559001" || c["wa_id"] != "16505559001" {
		t.Fatalf("answer = %s", a.Raw)
	}
	w := m["id"].(string)
	h := b.hooks.waitFor(t, "sent", hasStatus(w, "sent"))
	s := h.Value.Statuses[0]
	p := s["pricing"].(map[string]any)
	if s["recipient_id"] != "16505559001" || s["recipient_type"] != nil || p["category"] != "utility" || p["billable"] != true {
		t.Fatalf("sent = %v", s)
	}
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
		code   int
	}{
		{"A template that does not exist is 132001", inviteBody("16505559002", id, "nope"), 404, 132001},
		{"A missing group_id parameter is 131008", func() map[string]any {
			b := inviteBody("16505559002", id, tpl)
			b["template"].(map[string]any)["components"] = []any{map[string]any{"type": "body", "parameters": []any{map[string]any{"type": "text", "text": "x"}}}}
			return b
		}(), 400, 131008},
		{"Wrong parameter count is 132000", func() map[string]any {
			b := inviteBody("16505559002", id, tpl)
			b["template"].(map[string]any)["components"] = []any{}
			return b
		}(), 400, 132000},
		{"An unknown group is 131009", inviteBody("16505559002", unknownGroupID, tpl), 400, 131009},
		{"Missing language is 131008", func() map[string]any {
			b := inviteBody("16505559002", id, tpl)
			delete(b["template"].(map[string]any), "language")
			return b
		}(), 400, 131008},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", tc.body), tc.status, tc.code)
		})
	}
	t.Run("Free-form 1:1 text fails outside a service window", func(t *testing.T) {
		a := b.call(t, "POST", "/v23.0/"+phone+"/messages", map[string]any{"messaging_product": "whatsapp", "to": "16505559003", "type": "text", "text": map[string]any{"body": "hi"}})
		expectOK(t, a, 200)
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		h := b.hooks.waitFor(t, "failed", hasStatus(w, "failed"))
		if h.Value.Statuses[0]["errors"].([]any)[0].(map[string]any)["code"].(float64) != 131047 {
			t.Fatalf("status = %v", h.Value.Statuses[0])
		}
	})
}
