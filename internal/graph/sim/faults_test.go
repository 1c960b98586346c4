package sim_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// outcomes runs n sequential invite-link reads and returns "status/code/fault"
// for each.
func outcomes(t *testing.T, seed int64, f sim.Faults, n int) []string {
	t.Helper()
	b := setup(t, func(c *sim.Config) { c.Seed = seed })
	id, _ := b.createGroup(t, "Faults", "")
	if err := b.sim.SetFaults(f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for range n {
		a := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil)
		out = append(out, fmt.Sprintf("%d/%d", a.Status, a.code()))
	}
	return out
}

func TestFaultsAreReproducibleBySeed(t *testing.T) {
	t.Parallel()
	f := sim.Faults{Status5xx: 0.15, Code1: 0.1, Code2: 0.1, Code131000: 0.1, Throttle: 0.1}
	a := outcomes(t, 42, f, 60)
	b := outcomes(t, 42, f, 60)
	c := outcomes(t, 43, f, 60)
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	if slices.Equal(a, c) {
		t.Fatalf("different seeds gave the same 60 outcomes: %v", a)
	}
	kinds := map[string]bool{}
	for _, o := range a {
		kinds[o] = true
	}
	for _, want := range []string{"200/0", "500/0", "400/1", "503/2", "500/131000", "429/4"} {
		// A 502/0 or 503/0 outcome also counts as the 500/0 one.
		seen := kinds[want] || (want == "500/0" && (kinds["502/0"] || kinds["503/0"]))
		if !seen {
			t.Errorf("no %s among %v", want, a)
		}
	}
}

func TestInjectedAnswers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Inject", "")
	b.join(t, "16505550101", link)

	t.Run("5xx has no body", func(t *testing.T) {
		_ = b.sim.SetFaults(sim.Faults{Status5xx: 1, Limit: 1})
		a := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil)
		if a.Status < 500 || len(a.Raw) != 0 {
			t.Fatalf("got %d %q", a.Status, a.Raw)
		}
		expectOK(t, b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil), 200) // Limit 1 is spent
	})
	t.Run("Throttling carries usage headers and the endpoint's code", func(t *testing.T) {
		_ = b.sim.SetFaults(sim.Faults{Throttle: 1, ThrottleRetryAfter: 2 * time.Minute})
		a := b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "x"))
		expectError(t, a, 429, 130429)
		if a.Header.Get("Retry-After") != "120" || !strings.Contains(a.Header.Get("X-Business-Use-Case-Usage"), `"estimated_time_to_regain_access":2`) {
			t.Fatalf("headers = %v", a.Header)
		}
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/invite_link", map[string]any{"messaging_product": "whatsapp"}), 429, 131208)
		a = b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil)
		expectError(t, a, 429, 4)
		if a.Header.Get("X-App-Usage") == "" {
			t.Fatalf("code 4 without X-App-Usage: %v", a.Header)
		}
		_ = b.sim.SetFaults(sim.Faults{Throttle: 1, ThrottleCode: 80007})
		expectError(t, b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil), 429, 80007)
	})
	t.Run("Endpoints limits faults to the named ones", func(t *testing.T) {
		_ = b.sim.SetFaults(sim.Faults{Code2: 1, Endpoints: []string{sim.EndpointSendMessage}})
		expectOK(t, b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil), 200)
		expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/messages", groupText(id, "x")), 503, 2)
	})
	t.Run("Every call records its fault", func(t *testing.T) {
		calls := b.sim.Calls()
		last := calls[len(calls)-1]
		if last.Fault != "code_2" || last.Status != 503 || last.Code != 2 || last.Endpoint != sim.EndpointSendMessage {
			t.Fatalf("last call = %+v", last)
		}
	})
	_ = b.sim.SetFaults(sim.Faults{})
}

func TestTimeoutHangsWithoutEffect(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) {
		c.Faults = sim.Faults{Timeout: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.srv.URL+"/"+phone+"/groups",
		strings.NewReader(`{"messaging_product":"whatsapp","subject":"never"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %d, want the client to give up", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if n := len(b.sim.State().Numbers); n != 0 {
		t.Fatalf("a group was created: %+v", b.sim.State().Numbers)
	}
	if c := b.sim.Calls(); len(c) != 1 || c[0].Fault != "timeout" || c[0].Status != 0 {
		t.Fatalf("calls = %+v", c)
	}
}

func TestLostResponsePerformsTheOperation(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) {
		c.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}}
	})
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/"+phone+"/groups", strings.NewReader(`{"messaging_product":"whatsapp","subject":"ghost"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %d, want the connection dropped", resp.StatusCode)
	}
	h := b.hooks.waitFor(t, "create of the lost call", groupEvent("group_create", "subject", "ghost"))
	st := b.sim.State()
	if len(st.Numbers) != 1 || len(st.Numbers[0].Groups) != 1 || st.Numbers[0].Groups[0].ID != firstGroup(h)["group_id"] {
		t.Fatalf("state = %+v, want the group created", st.Numbers)
	}
	if c := b.sim.Calls(); c[0].Fault != "lost_response" || c[0].Status != 0 {
		t.Fatalf("call = %+v", c[0])
	}
}

func TestAsyncFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Survivor", "")
	b.join(t, "16505550201", link)
	_ = b.sim.SetFaults(sim.Faults{AsyncFailure: 1})

	t.Run("Create fails in its webhook", func(t *testing.T) {
		a := b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "Doomed", "description": "D"})
		expectOK(t, a, 200)
		g := firstGroup(b.hooks.waitFor(t, "create fail", groupEvent("group_create", "request_id", a.str("request_id"))))
		if g["errors"] == nil || g["invite_link"] != nil || g["description"] != "D" {
			t.Fatalf("webhook = %v", g)
		}
		expectError(t, b.call(t, "GET", "/"+g["group_id"].(string), nil), 400, 131041)
	})
	t.Run("Delete fails in its webhook and the group stays", func(t *testing.T) {
		a := b.call(t, "DELETE", "/"+id, nil)
		g := firstGroup(b.hooks.waitFor(t, "delete fail", groupEvent("group_delete", "request_id", a.str("request_id"))))
		if g["errors"] == nil {
			t.Fatalf("webhook = %v", g)
		}
		expectOK(t, b.call(t, "GET", "/"+id, nil), 200)
	})
	t.Run("Settings fail per field", func(t *testing.T) {
		a := b.call(t, "POST", "/"+id, map[string]any{"messaging_product": "whatsapp", "subject": "New"})
		g := firstGroup(b.hooks.waitFor(t, "settings fail", groupEvent("group_settings_update", "request_id", a.str("request_id"))))
		if g["group_subject"].(map[string]any)["update_successful"] != false || g["errors"] == nil {
			t.Fatalf("webhook = %v", g)
		}
	})
	t.Run("Remove fails for every participant", func(t *testing.T) {
		a := b.call(t, "DELETE", "/"+id+"/participants", map[string]any{"messaging_product": "whatsapp", "participants": []any{map[string]any{"user": "16505550201"}}})
		g := firstGroup(b.hooks.waitFor(t, "remove fail", groupEvent("group_participants_remove", "request_id", a.str("request_id"))))
		if g["removed_participants"] != nil || g["errors"] == nil {
			t.Fatalf("webhook = %v", g)
		}
	})
	_ = b.sim.SetFaults(sim.Faults{})
}

func TestFaultValidation(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Config{})
	defer s.Close()
	if err := s.SetFaults(sim.Faults{Code1: 1.5}); err == nil {
		t.Fatal("probability 1.5 accepted")
	}
	if err := (sim.Config{Faults: sim.Faults{Latency: -1}}).Validate(); err == nil {
		t.Fatal("negative latency accepted")
	}
}
