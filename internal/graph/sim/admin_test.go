package sim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// admin calls the /_sim/ API without a token and decodes the JSON answer.
func (b *bundle) admin(t *testing.T, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.srv.URL+path, rd)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: not JSON: %s", method, path, raw)
	}
	return resp.StatusCode, out
}

func adminReason(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	r, _ := e["reason"].(string)
	return r
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	auto, autoLink := b.createGroup(t, "Auto", "")
	appr, apprLink := b.createGroup(t, "Approval", "approval_required")

	t.Run("Health", func(t *testing.T) {
		if st, out := b.admin(t, "GET", "/_sim/health", nil); st != 200 || out["ok"] != true {
			t.Fatalf("%d %v", st, out)
		}
	})
	t.Run("Join, leave and rejoin", func(t *testing.T) {
		st, out := b.admin(t, "POST", "/_sim/users/16505550301/join", map[string]any{"invite_link": autoLink})
		if st != 200 || out["joined"] != true || out["group_id"] != auto {
			t.Fatalf("join: %d %v", st, out)
		}
		st, out = b.admin(t, "POST", "/_sim/users/16505550301/join", map[string]any{"invite_link": autoLink})
		if st != 409 || adminReason(out) != "already_member" {
			t.Fatalf("second join: %d %v", st, out)
		}
		if st, out := b.admin(t, "POST", "/_sim/users/16505550301/leave", map[string]any{"group_id": auto}); st != 200 {
			t.Fatalf("leave: %d %v", st, out)
		}
		if st, out := b.admin(t, "POST", "/_sim/users/16505550301/join", map[string]any{"invite_link": "https://chat.whatsapp.com/AAAAAAAAAAAAAAAAAAAAAA"}); st != 404 || adminReason(out) != "invalid_link" {
			t.Fatalf("bad link: %d %v", st, out)
		}
	})
	t.Run("Join requests and revocation", func(t *testing.T) {
		st, out := b.admin(t, "POST", "/_sim/users/16505550302/join", map[string]any{"invite_link": apprLink})
		id, _ := out["join_request_id"].(string)
		if st != 200 || out["joined"] != false || id == "" {
			t.Fatalf("join: %d %v", st, out)
		}
		if st, out := b.admin(t, "POST", "/_sim/join_requests/"+id+"/revoke", nil); st != 200 {
			t.Fatalf("revoke: %d %v", st, out)
		}
		if st, out := b.admin(t, "POST", "/_sim/join_requests/"+id+"/revoke", nil); st != 404 || adminReason(out) != "unknown_join_request" {
			t.Fatalf("second revoke: %d %v", st, out)
		}
	})
	t.Run("Terms of service", func(t *testing.T) {
		_, out := b.admin(t, "POST", "/_sim/users/16505550303/join", map[string]any{"invite_link": apprLink})
		if st, out := b.admin(t, "POST", "/_sim/users/16505550303/tos", map[string]any{"accepted": false}); st != 200 {
			t.Fatalf("tos: %d %v", st, out)
		}
		a := b.call(t, "POST", "/"+appr+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": []any{out["join_request_id"]}})
		expectError(t, a, 400, 131203)
		if st, _ := b.admin(t, "POST", "/_sim/users/16505550303/tos", map[string]any{}); st != 400 {
			t.Fatalf("tos without accepted: %d", st)
		}
	})
	t.Run("Undeliverable users", func(t *testing.T) {
		if st, out := b.admin(t, "POST", "/_sim/users/16505550304/undeliverable", map[string]any{}); st != 200 {
			t.Fatalf("%d %v", st, out)
		}
		if st, _ := b.admin(t, "POST", "/_sim/users/16505550304/undeliverable", map[string]any{"mode": "maybe"}); st != 400 {
			t.Fatalf("bad mode: %d", st)
		}
	})
	t.Run("Suspension", func(t *testing.T) {
		if st, out := b.admin(t, "POST", "/_sim/groups/"+auto+"/suspend", nil); st != 200 {
			t.Fatalf("%d %v", st, out)
		}
		st, out := b.admin(t, "GET", "/_sim/groups/"+auto, nil)
		if st != 200 || out["suspended"] != true || out["subject"] != "Auto" {
			t.Fatalf("group: %d %v", st, out)
		}
		b.admin(t, "POST", "/_sim/groups/"+auto+"/unsuspend", nil)
		b.hooks.waitFor(t, "cleared", groupEvent("group_suspend_cleared", "group_id", auto))
		if st, out := b.admin(t, "POST", "/_sim/groups/"+unknownGroupID+"/suspend", nil); st != 404 || adminReason(out) != "unknown_group" {
			t.Fatalf("unknown: %d %v", st, out)
		}
	})
	t.Run("Inbound messages", func(t *testing.T) {
		b.admin(t, "POST", "/_sim/users/16505550305/join", map[string]any{"invite_link": autoLink})
		st, out := b.admin(t, "POST", "/_sim/users/16505550305/messages", map[string]any{"group_id": auto, "text": "hi"})
		if st != 200 || out["id"] == "" {
			t.Fatalf("%d %v", st, out)
		}
	})
	t.Run("Number settings", func(t *testing.T) {
		b.admin(t, "POST", "/_sim/numbers/"+phone, map[string]any{"ineligible": true})
		expectError(t, b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "x"}), 400, 131215)
		b.admin(t, "POST", "/_sim/numbers/"+phone, map[string]any{})
	})
	t.Run("Faults at run time", func(t *testing.T) {
		st, out := b.admin(t, "POST", "/_sim/faults", map[string]any{"code_2": 1, "limit": 1, "latency": "1ms"})
		if st != 200 || out["code_2"].(float64) != 1 || out["latency"] != "1ms" {
			t.Fatalf("set: %d %v", st, out)
		}
		expectError(t, b.call(t, "GET", "/"+auto+"/invite_link", nil), 503, 2)
		if _, out := b.admin(t, "GET", "/_sim/faults", nil); out["limit"].(float64) != 1 {
			t.Fatalf("get: %v", out)
		}
		if st, _ := b.admin(t, "POST", "/_sim/faults", map[string]any{"code_2": 3}); st != 400 {
			t.Fatalf("invalid faults accepted: %d", st)
		}
		if st, _ := b.admin(t, "POST", "/_sim/faults", map[string]any{"latency": "soon"}); st != 400 {
			t.Fatalf("invalid duration accepted: %d", st)
		}
		b.admin(t, "DELETE", "/_sim/faults", nil)
		if f := b.sim.Faults(); f.Code2 != 0 {
			t.Fatalf("faults after DELETE = %+v", f)
		}
	})
	t.Run("Call log", func(t *testing.T) {
		_, out := b.admin(t, "GET", "/_sim/calls", nil)
		calls := out["calls"].([]any)
		if len(calls) == 0 {
			t.Fatal("no calls logged")
		}
		c := calls[0].(map[string]any)
		for _, k := range []string{"seq", "time", "endpoint", "method", "path", "status"} {
			if c[k] == nil {
				t.Fatalf("call lacks %q: %v", k, c)
			}
		}
		last := out["last_seq"].(float64)
		b.call(t, "GET", "/"+auto+"/invite_link", nil)
		_, out = b.admin(t, "GET", "/_sim/calls?since="+jsonInt(last), nil)
		if n := len(out["calls"].([]any)); n != 1 {
			t.Fatalf("calls since %v = %d, want 1", last, n)
		}
		b.admin(t, "DELETE", "/_sim/calls", nil)
		if _, out := b.admin(t, "GET", "/_sim/calls", nil); len(out["calls"].([]any)) != 0 {
			t.Fatalf("calls after DELETE: %v", out)
		}
	})
	t.Run("State and webhooks", func(t *testing.T) {
		_, out := b.admin(t, "GET", "/_sim/state", nil)
		nums := out["numbers"].([]any)
		if len(nums) != 1 || len(nums[0].(map[string]any)["groups"].([]any)) != 2 || len(out["users"].([]any)) == 0 {
			t.Fatalf("state = %v", out)
		}
		_, out = b.admin(t, "GET", "/_sim/webhooks", nil)
		if len(out["webhooks"].([]any)) == 0 {
			t.Fatalf("webhooks = %v", out)
		}
		b.admin(t, "DELETE", "/_sim/webhooks", nil)
	})
	t.Run("Webhook URL", func(t *testing.T) {
		if st, _ := b.admin(t, "POST", "/_sim/webhook_url", map[string]any{"url": b.hooks.srv.URL}); st != 200 {
			t.Fatal(st)
		}
	})
	t.Run("Unknown admin paths are 404", func(t *testing.T) {
		if st, out := b.admin(t, "GET", "/_sim/nothing", nil); st != 404 || adminReason(out) != "not_found" {
			t.Fatalf("%d %v", st, out)
		}
	})
	t.Run("Bad JSON is 400", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/_sim/users/1/join", bytes.NewReader([]byte("{")))
		resp, err := b.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	_ = sim.ErrRemoved
}

func jsonInt(f float64) string { b, _ := json.Marshal(int64(f)); return string(b) }
