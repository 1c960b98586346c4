package sim_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/testutil"
)

func groupText(groupID, body string) map[string]any {
	return map[string]any{"messaging_product": "whatsapp", "recipient_type": "group", "to": groupID,
		"type": "text", "text": map[string]any{"body": body}}
}

// statusesOf collects the statuses of one message by status value.
func statusesOf(hooks []hook, wamid string) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for _, h := range hooks {
		for _, st := range h.Value.Statuses {
			if st["id"] == wamid {
				out[st["status"].(string)] = append(out[st["status"].(string)], st)
			}
		}
	}
	return out
}

func hasStatus(wamid, status string) func(hook) bool {
	return func(h hook) bool {
		for _, st := range h.Value.Statuses {
			if st["id"] == wamid && st["status"] == status {
				return true
			}
		}
		return false
	}
}

func TestSendToGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) { c.Statuses = &sim.StatusBehavior{Read: 1, Aggregate: 1} })
	id, link := b.createGroup(t, "Chat", "")

	t.Run("A group with only the business is 131020", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "hi")), 400, 131020)
	})
	parts := []string{"16505554001", "16505554002", "16505554003"}
	for _, wa := range parts {
		b.join(t, wa, link)
	}
	a := b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "hello"))
	expectOK(t, a, 200)
	msg := a.Body["messages"].([]any)[0].(map[string]any)
	wamid := msg["id"].(string)
	c := a.Body["contacts"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(wamid, "wamid.") || c["input"] != id || c["wa_id"] != id {
		t.Fatalf("answer = %s", a.Raw)
	}
	b.hooks.waitFor(t, "read", hasStatus(wamid, "read"))
	b.hooks.waitFor(t, "delivered", hasStatus(wamid, "delivered"))
	st := statusesOf(b.hooks.all(), wamid)

	sent := st["sent"]
	if len(sent) != 1 || sent[0]["recipient_type"] != "group" || sent[0]["recipient_id"] != id ||
		sent[0]["recipient_participant_id"] != nil || sent[0]["pricing"] != nil {
		t.Fatalf("sent = %v, want one status naming the group only", sent)
	}
	for _, status := range []string{"delivered", "read"} {
		if len(st[status]) != len(parts) {
			t.Fatalf("%d %s statuses, want one per participant", len(st[status]), status)
		}
		for i, s := range st[status] {
			p := s["pricing"].(map[string]any)
			if s["recipient_participant_id"] != parts[i] || p["category"] != "group_service" || p["pricing_model"] != "PMP" ||
				p["type"] != "regular" || p["billable"] != true {
				t.Fatalf("%s = %v", status, s)
			}
			if s["conversation"] == nil {
				t.Fatalf("v23 statuses carry a conversation object: %v", s)
			}
		}
	}
	t.Run("Aggregated statuses share one webhook", func(t *testing.T) {
		for _, h := range b.hooks.all() {
			n := 0
			for _, s := range h.Value.Statuses {
				if s["id"] == wamid && s["status"] == "read" {
					n++
				}
			}
			if n != 0 && n != len(parts) {
				t.Fatalf("a webhook holds %d of %d read statuses; with Aggregate 1 all come together", n, len(parts))
			}
		}
	})
	t.Run("v24 statuses omit the conversation object", func(t *testing.T) {
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "v24"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		h := b.hooks.waitFor(t, "delivered v24", hasStatus(w, "delivered"))
		if h.Value.Statuses[0]["conversation"] != nil || h.Value.Statuses[0]["pricing"] == nil {
			t.Fatalf("status = %v", h.Value.Statuses[0])
		}
	})
	t.Run("Inside the service window messages are free", func(t *testing.T) {
		if _, err := b.sim.UserMessage(parts[0], id, "question?"); err != nil {
			t.Fatal(err)
		}
		in := b.hooks.waitFor(t, "inbound", func(h hook) bool { return len(h.Value.Messages) == 1 })
		if m := in.Value.Messages[0]; m["group_id"] != id || m["from"] != parts[0] || m["type"] != "text" {
			t.Fatalf("inbound = %s", in.Raw)
		}
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "answer"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		h := b.hooks.waitFor(t, "delivered free", hasStatus(w, "delivered"))
		p := h.Value.Statuses[0]["pricing"].(map[string]any)
		if p["type"] != "free_group_customer_service" || p["billable"] != false {
			t.Fatalf("pricing = %v", p)
		}
	})
	t.Run("A suspended group is 131207 and suspension is announced", func(t *testing.T) {
		if err := b.sim.Suspend(id); err != nil {
			t.Fatal(err)
		}
		b.hooks.waitFor(t, "suspend", groupEvent("group_suspend", "group_id", id))
		expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "x")), 403, 131207)
		if _, err := b.sim.Join("16505554009", link); !errors.Is(err, sim.ErrSuspended) {
			t.Fatalf("join while suspended: err = %v", err)
		}
		_ = b.sim.Unsuspend(id)
		b.hooks.waitFor(t, "cleared", groupEvent("group_suspend_cleared", "group_id", id))
		expectOK(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "x")), 200)
	})
	t.Run("Pins name a message of the group", func(t *testing.T) {
		pin := map[string]any{"messaging_product": "whatsapp", "recipient_type": "group", "to": id, "type": "pin",
			"pin": map[string]any{"type": "pin", "message_id": wamid, "expiration_days": 7}}
		expectOK(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", pin), 200)
		g, _ := b.sim.Group(id)
		if len(g.Pinned) != 1 || g.Pinned[0] != wamid {
			t.Fatalf("pinned = %v", g.Pinned)
		}
		pin["pin"] = map[string]any{"type": "pin", "message_id": wamid}
		expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", pin), 400, 131008)
		pin["pin"] = map[string]any{"type": "pin", "message_id": "wamid.unknown", "expiration_days": 1}
		expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", pin), 400, 131009)
	})
	for _, tc := range []struct {
		name string
		body map[string]any
		code int
	}{
		{"An unknown group is 131041", groupText(unknownGroupID, "x"), 131041},
		{"recipient_type group with a phone number is 131009", groupText("16505554001", "x"), 131009},
		{"A group id sent as individual is 131009", map[string]any{"messaging_product": "whatsapp", "to": id, "type": "text", "text": map[string]any{"body": "x"}}, 131009},
		{"Missing to is 131008", map[string]any{"messaging_product": "whatsapp", "type": "text", "text": map[string]any{"body": "x"}}, 131008},
		{"Missing text body is 131008", map[string]any{"messaging_product": "whatsapp", "recipient_type": "group", "to": id, "type": "text", "text": map[string]any{}}, 131008},
		{"Interactive messages are not for groups", map[string]any{"messaging_product": "whatsapp", "recipient_type": "group", "to": id, "type": "interactive", "interactive": map[string]any{}}, 131009},
		{"Unknown recipient_type is 131009", map[string]any{"messaging_product": "whatsapp", "recipient_type": "broadcast", "to": id, "type": "text", "text": map[string]any{"body": "x"}}, 131009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", tc.body), 400, tc.code)
		})
	}
}

func TestStatusBehaviour(t *testing.T) {
	t.Parallel()
	t.Run("Separate webhooks per participant without aggregation", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *sim.Config) { c.Statuses = &sim.StatusBehavior{Read: 0, Aggregate: 0} })
		id, link := b.createGroup(t, "S", "")
		b.join(t, "16505555001", link)
		b.join(t, "16505555002", link)
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "x"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		hooks := b.hooks.waitCount(t, "delivered", 2, hasStatus(w, "delivered"))
		for _, h := range hooks {
			if len(h.Value.Statuses) != 1 {
				t.Fatalf("webhook holds %d statuses, want 1", len(h.Value.Statuses))
			}
		}
		if st := statusesOf(b.hooks.all(), w); len(st["read"]) != 0 {
			t.Fatalf("read statuses with Read 0: %v", st["read"])
		}
	})
	t.Run("Read without delivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *sim.Config) { c.Statuses = &sim.StatusBehavior{Read: 1, ReadWithoutDelivered: 1} })
		id, link := b.createGroup(t, "S", "")
		b.join(t, "16505555001", link)
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "x"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		b.hooks.waitFor(t, "read", hasStatus(w, "read"))
		if st := statusesOf(b.hooks.all(), w); len(st["delivered"]) != 0 {
			t.Fatalf("delivered sent although ReadWithoutDelivered is 1: %v", st["delivered"])
		}
	})
	t.Run("Undeliverable participants get no statuses", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *sim.Config) { c.Statuses = &sim.StatusBehavior{Read: 1, Aggregate: 1} })
		id, link := b.createGroup(t, "S", "")
		b.join(t, "16505555001", link)
		b.join(t, "16505555002", link)
		_ = b.sim.SetUndeliverable("16505555002", sim.UndeliverableSync)
		a := b.call(t, "POST", "/v24.0/"+phone+"/messages", groupText(id, "x"))
		w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
		h := b.hooks.waitFor(t, "read", hasStatus(w, "read"))
		if len(h.Value.Statuses) != 1 || h.Value.Statuses[0]["recipient_participant_id"] != "16505555001" {
			t.Fatalf("read = %v", h.Value.Statuses)
		}
	})
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	clock := testutil.NewClock(time.Unix(1750000000, 0))
	b := setup(t, func(c *sim.Config) {
		c.Clock = clock
		c.MPS = 2
		c.PairInterval = time.Minute
		c.GroupOpsPerSecond = 3
	})
	id, link := b.createGroup(t, "Rates", "")
	b.join(t, "16505556001", link)

	t.Run("Throughput over MPS is 130429 with usage headers", func(t *testing.T) {
		expectOK(t, b.call(t, "POST", "/"+phone+"/messages", groupText(id, "1")), 200)
		expectOK(t, b.call(t, "POST", "/"+phone+"/messages", groupText(id, "2")), 200)
		a := b.call(t, "POST", "/"+phone+"/messages", groupText(id, "3"))
		expectError(t, a, 429, 130429)
		if a.Header.Get("Retry-After") == "" || !strings.Contains(a.Header.Get("X-Business-Use-Case-Usage"), "estimated_time_to_regain_access") {
			t.Fatalf("headers = %v", a.Header)
		}
		clock.Advance(time.Second)
		expectOK(t, b.call(t, "POST", "/"+phone+"/messages", groupText(id, "4")), 200)
	})
	t.Run("Other numbers have their own throughput", func(t *testing.T) {
		// 131041: the group is not this number's, but the limit did not answer.
		expectError(t, b.call(t, "POST", "/555000222/messages", groupText(id, "x")), 400, 131041)
	})
	t.Run("Group operations over the rate are 131208", func(t *testing.T) {
		clock.Advance(time.Second)
		body := map[string]any{"messaging_product": "whatsapp"}
		var last answer
		for range 4 {
			last = b.call(t, "POST", "/"+id+"/invite_link", body)
		}
		expectError(t, last, 429, 131208)
		clock.Advance(time.Second)
		expectOK(t, b.call(t, "POST", "/"+id+"/invite_link", body), 200)
	})
	t.Run("The same recipient within PairInterval is 131056", func(t *testing.T) {
		clock.Advance(time.Second)
		tpl := createInviteTemplate(t, b)
		send := func(to string) answer {
			clock.Advance(time.Second) // keep clear of the MPS limit
			return b.call(t, "POST", "/"+phone+"/messages", inviteBody(to, id, tpl))
		}
		expectOK(t, send("16505557001"), 200)
		expectError(t, send("16505557001"), 429, 131056)
		expectOK(t, send("16505557002"), 200)
		clock.Advance(time.Minute)
		expectOK(t, send("16505557001"), 200)
	})
}

func TestUndeliverableUsers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, _ := b.createGroup(t, "U", "")
	tpl := createInviteTemplate(t, b)
	_ = b.sim.SetUndeliverable("16505558001", sim.UndeliverableSync)
	_ = b.sim.SetUndeliverable("16505558002", sim.UndeliverableAsync)
	expectError(t, b.call(t, "POST", "/"+phone+"/messages", inviteBody("16505558001", id, tpl)), 400, 131026)
	a := b.call(t, "POST", "/"+phone+"/messages", inviteBody("16505558002", id, tpl))
	expectOK(t, a, 200)
	w := a.Body["messages"].([]any)[0].(map[string]any)["id"].(string)
	h := b.hooks.waitFor(t, "failed", hasStatus(w, "failed"))
	e := h.Value.Statuses[0]["errors"].([]any)[0].(map[string]any)
	if e["code"].(float64) != 131026 {
		t.Fatalf("failed status = %v", h.Value.Statuses[0])
	}
	if err := b.sim.SetUndeliverable("16505558001", "sometimes"); err == nil {
		t.Fatal("an unknown mode was accepted")
	}
}
