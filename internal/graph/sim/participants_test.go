package sim_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestJoinByLink(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Eight", "")

	for i := range sim.MaxParticipants {
		wa := fmt.Sprintf("1650555%04d", i)
		if res := b.join(t, wa, link); !res.Joined || res.JoinRequestID != "" {
			t.Fatalf("join %d = %+v", i, res)
		}
		h := b.hooks.waitFor(t, "add "+wa, func(h hook) bool {
			g := h.Value.Groups
			return len(g) == 1 && g[0]["type"] == "group_participants_add" &&
				g[0]["added_participants"].([]any)[0].(map[string]any)["wa_id"] == wa
		})
		g := firstGroup(h)
		if h.Field != "group_participants_update" || g["reason"] != "invite_link" || g["group_id"] != id {
			t.Fatalf("webhook = %s", h.Raw)
		}
	}
	t.Run("The ninth participant is refused", func(t *testing.T) {
		if _, err := b.sim.Join("16505559999", link); !errors.Is(err, sim.ErrGroupFull) {
			t.Fatalf("err = %v, want ErrGroupFull", err)
		}
	})
	t.Run("A participant cannot join twice", func(t *testing.T) {
		if _, err := b.sim.Join("16505550000", link); !errors.Is(err, sim.ErrAlreadyMember) {
			t.Fatalf("err = %v, want ErrAlreadyMember", err)
		}
	})
	t.Run("A user who left may rejoin", func(t *testing.T) {
		if err := b.sim.Leave("16505550003", id); err != nil {
			t.Fatal(err)
		}
		h := b.hooks.waitFor(t, "leave", groupEvent("group_participants_remove", "initiated_by", "participant"))
		g := firstGroup(h)
		if g["request_id"] != nil || g["removed_participants"].([]any)[0].(map[string]any)["wa_id"] != "16505550003" {
			t.Fatalf("leave webhook = %s", h.Raw)
		}
		b.join(t, "16505550003", link)
	})
	t.Run("Leaving a group one is not in fails", func(t *testing.T) {
		if err := b.sim.Leave("16505551111", id); !errors.Is(err, sim.ErrNotMember) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("A malformed wa_id is refused", func(t *testing.T) {
		if _, err := b.sim.Join("abc", link); !errors.Is(err, sim.ErrInvalidWAID) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestJoinRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Approval", "approval_required")

	var reqs []string
	for i := range 4 {
		wa := fmt.Sprintf("1650555100%d", i)
		res := b.join(t, wa, link)
		if res.Joined || res.JoinRequestID == "" {
			t.Fatalf("join = %+v, want a join request", res)
		}
		reqs = append(reqs, res.JoinRequestID)
		h := b.hooks.waitFor(t, "join request created", groupEvent("group_join_request_created", "join_request_id", res.JoinRequestID))
		if g := firstGroup(h); g["wa_id"] != wa || g["group_id"] != id {
			t.Fatalf("webhook = %s", h.Raw)
		}
	}
	if again := b.join(t, "16505551000", link); again.JoinRequestID != reqs[0] {
		t.Fatalf("second join by the same user = %+v, want the pending request %s", again, reqs[0])
	}

	t.Run("List pages oldest first", func(t *testing.T) {
		a := b.call(t, "GET", "/v23.0/"+id+"/join_requests?limit=3", nil)
		expectOK(t, a, 200)
		data := a.Body["data"].([]any)
		if len(data) != 3 {
			t.Fatalf("page = %s", a.Raw)
		}
		for i, d := range data {
			m := d.(map[string]any)
			if m["join_request_id"] != reqs[i] || m["wa_id"] != fmt.Sprintf("1650555100%d", i) || m["creation_timestamp"] == "" {
				t.Fatalf("item %d = %v", i, m)
			}
		}
		paging := a.Body["paging"].(map[string]any)
		after := paging["cursors"].(map[string]any)["after"].(string)
		if paging["next"] == nil {
			t.Fatalf("paging = %v, want next", paging)
		}
		rest := b.call(t, "GET", "/v23.0/"+id+"/join_requests?limit=3&after="+after, nil)
		if d := rest.Body["data"].([]any); len(d) != 1 || d[0].(map[string]any)["join_request_id"] != reqs[3] {
			t.Fatalf("page 2 = %s", rest.Raw)
		}
	})

	if err := b.sim.SetTOS("16505551001", false); err != nil {
		t.Fatal(err)
	}
	t.Run("Approval is per item: partial is 206", func(t *testing.T) {
		a := b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{
			"messaging_product": "whatsapp", "join_requests": []string{reqs[0], reqs[1], "bm9uZTo="},
		})
		expectOK(t, a, 206)
		if got := a.Body["approved_join_requests"].([]any); len(got) != 1 || got[0] != reqs[0] {
			t.Fatalf("approved = %v", got)
		}
		failed := a.Body["failed_join_requests"].([]any)
		codes := map[string]float64{}
		for _, f := range failed {
			m := f.(map[string]any)
			e := m["errors"].([]any)[0].(map[string]any)
			if e["title"] == "" || e["message"] == "" || e["error_data"].(map[string]any)["details"] == "" {
				t.Fatalf("item error = %v", e)
			}
			codes[m["join_request_id"].(string)] = e["code"].(float64)
		}
		if codes[reqs[1]] != 131203 || codes["bm9uZTo="] != 131213 {
			t.Fatalf("failure codes = %v, want 131203 (no ToS) and 131213 (unknown)", codes)
		}
		h := b.hooks.waitFor(t, "approval add", func(h hook) bool {
			return groupEvent("group_participants_add", "group_id", id)(h)
		})
		g := firstGroup(h)
		if _, numeric := g["timestamp"].(float64); !numeric || g["reason"] != "invite_link" {
			t.Fatalf("approval webhook = %s (Meta's sample has a numeric timestamp)", h.Raw)
		}
		p := g["added_participants"].([]any)[0].(map[string]any)
		if p["input"] != "16505551000" || p["wa_id"] != "16505551000" {
			t.Fatalf("added = %v, want input and wa_id", p)
		}
	})
	t.Run("All items failing is an error answer with the items", func(t *testing.T) {
		a := b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{
			"messaging_product": "whatsapp", "join_requests": []string{reqs[0]},
		})
		expectError(t, a, 400, 131213)
		if len(a.Body["failed_join_requests"].([]any)) != 1 {
			t.Fatalf("answer = %s", a.Raw)
		}
	})
	t.Run("Reject answers rejected_join_requests and sends no webhook", func(t *testing.T) {
		before := len(b.hooks.all())
		a := b.call(t, "DELETE", "/v23.0/"+id+"/join_requests", map[string]any{
			"messaging_product": "whatsapp", "join_requests": []string{reqs[2]},
		})
		expectOK(t, a, 200)
		if got := a.Body["rejected_join_requests"].([]any); len(got) != 1 || got[0] != reqs[2] {
			t.Fatalf("answer = %s", a.Raw)
		}
		// The rejected user may ask again.
		b.join(t, "16505551002", link)
		b.hooks.waitCount(t, "after reject", before+1, func(hook) bool { return true })
		for _, h := range b.hooks.all()[before:] {
			if groupEvent("group_participants_add", "", "")(h) {
				t.Fatalf("reject produced %s", h.Raw)
			}
		}
	})
	t.Run("A revoked request can no longer be approved", func(t *testing.T) {
		if err := b.sim.RevokeJoinRequest(reqs[3]); err != nil {
			t.Fatal(err)
		}
		h := b.hooks.waitFor(t, "revoked", groupEvent("group_join_request_revoked", "join_request_id", reqs[3]))
		if firstGroup(h)["wa_id"] != "16505551003" {
			t.Fatalf("webhook = %s", h.Raw)
		}
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{
			"messaging_product": "whatsapp", "join_requests": []string{reqs[3]},
		}), 400, 131213)
		if err := b.sim.RevokeJoinRequest(reqs[3]); !errors.Is(err, sim.ErrUnknownJoinRequest) {
			t.Fatalf("second revoke: err = %v", err)
		}
	})
	t.Run("Request validation", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{"messaging_product": "whatsapp"}), 400, 131008)
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": []string{}}), 400, 131009)
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": "x"}), 400, 100)
		expectError(t, b.call(t, "POST", "/v23.0/"+unknownGroupID+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": []string{"x"}}), 400, 131041)
	})
}

func TestApprovalRespectsParticipantLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		limit int // Config.MaxParticipants
		want  int
	}{
		{"Meta's limit by default", 0, sim.MaxParticipants},
		{"a configured limit", 12, 12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *sim.Config) { c.MaxParticipants = tc.limit })
			id, link := b.createGroup(t, "Full", "approval_required")
			var ids []string
			for i := range tc.want + 1 {
				ids = append(ids, b.join(t, fmt.Sprintf("165055520%02d", i), link).JoinRequestID)
			}
			a := b.call(t, "POST", "/v23.0/"+id+"/join_requests", map[string]any{"messaging_product": "whatsapp", "join_requests": ids})
			expectOK(t, a, 206)
			if n := len(a.Body["approved_join_requests"].([]any)); n != tc.want {
				t.Fatalf("approved %d, want %d", n, tc.want)
			}
			f := a.Body["failed_join_requests"].([]any)[0].(map[string]any)
			if f["join_request_id"] != ids[tc.want] || f["errors"].([]any)[0].(map[string]any)["code"].(float64) != 131204 {
				t.Fatalf("failed = %v, want the last with 131204", f)
			}
		})
	}
}

func TestRemoveParticipants(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) { c.BSUID = true })
	id, link := b.createGroup(t, "Remove", "")
	for _, wa := range []string{"16505553001", "16505553002", "16505553003", "16505553004"} {
		b.join(t, wa, link)
	}
	remove := func(entries ...map[string]string) answer {
		return b.call(t, "DELETE", "/v23.0/"+id+"/participants", map[string]any{"messaging_product": "whatsapp", "participants": entries})
	}
	waitRemove := func(a answer) map[string]any {
		expectOK(t, a, 200)
		if a.Body["success"] != true || a.str("request_id") == "" {
			t.Fatalf("answer = %s", a.Raw)
		}
		return firstGroup(b.hooks.waitFor(t, "remove", groupEvent("group_participants_remove", "request_id", a.str("request_id"))))
	}

	t.Run("Removed participants come back as inputs", func(t *testing.T) {
		g := waitRemove(remove(map[string]string{"user": "+1 650-555-3001"}))
		if g["initiated_by"] != "business" || g["failed_participants"] != nil || g["errors"] != nil {
			t.Fatalf("webhook = %v", g)
		}
		if r := g["removed_participants"].([]any)[0].(map[string]any); r["input"] != "+1 650-555-3001" {
			t.Fatalf("removed = %v", r)
		}
	})
	t.Run("A removed user cannot rejoin by link", func(t *testing.T) {
		if _, err := b.sim.Join("16505553001", link); !errors.Is(err, sim.ErrRemoved) {
			t.Fatalf("err = %v, want ErrRemoved", err)
		}
		fresh := b.call(t, "POST", "/v23.0/"+id+"/invite_link", map[string]any{"messaging_product": "whatsapp"}).str("invite_link")
		if _, err := b.sim.Join("16505553001", fresh); !errors.Is(err, sim.ErrRemoved) {
			t.Fatalf("after reset: err = %v, want ErrRemoved", err)
		}
		link = fresh
	})
	t.Run("Partial failure lists failed inputs with 131212 and 131201 overall", func(t *testing.T) {
		st := b.sim.State()
		var userID string
		for _, u := range st.Users {
			if u.WAID == "16505553002" {
				userID = u.UserID
			}
		}
		g := waitRemove(remove(map[string]string{"user_id": userID}, map[string]string{"user": "16505559999"}))
		if r := g["removed_participants"].([]any); len(r) != 1 || r[0].(map[string]any)["input"] != userID {
			t.Fatalf("removed = %v", r)
		}
		f := g["failed_participants"].([]any)[0].(map[string]any)
		if f["input"] != "16505559999" || f["errors"].([]any)[0].(map[string]any)["code"].(float64) != 131212 {
			t.Fatalf("failed = %v", f)
		}
		if e := g["errors"].([]any)[0].(map[string]any); e["code"].(float64) != 131201 || e["title"] != "Not All Participants Remove Succeeded" {
			t.Fatalf("errors = %v", e)
		}
	})
	t.Run("Total failure gives the reason once", func(t *testing.T) {
		g := waitRemove(remove(map[string]string{"user": "16505559998"}, map[string]string{"user": "16505559997"}))
		if g["removed_participants"] != nil || len(g["failed_participants"].([]any)) != 2 {
			t.Fatalf("webhook = %v", g)
		}
		if g["failed_participants"].([]any)[0].(map[string]any)["errors"] != nil {
			t.Fatalf("total failure items carry errors: %v", g)
		}
		if e := g["errors"].([]any)[0].(map[string]any); e["code"].(float64) != 131212 {
			t.Fatalf("errors = %v", e)
		}
	})
	for _, tc := range []struct {
		name    string
		entries []map[string]string
		code    int
	}{
		{"Duplicates are 131202", []map[string]string{{"user": "16505553003"}, {"user": "+16505553003"}}, 131202},
		{"An empty list is 131009", []map[string]string{}, 131009},
		{"More than 8 is 131009", slices.Repeat([]map[string]string{{"user": "16505553003"}}, 9), 131009},
		{"An entry with both user and user_id is 131009", []map[string]string{{"user": "16505553003", "user_id": "US.1"}}, 131009},
		{"A user that is not a phone number is 131009", []map[string]string{{"user": "bob"}}, 131009},
	} {
		t.Run(tc.name, func(t *testing.T) { expectError(t, remove(tc.entries...), 400, tc.code) })
	}
	t.Run("Missing participants is 131008", func(t *testing.T) {
		expectError(t, b.call(t, "DELETE", "/v23.0/"+id+"/participants", map[string]any{"messaging_product": "whatsapp"}), 400, 131008)
	})
	g, _ := b.sim.Group(id)
	if strings.Join(g.Participants, ",") != "16505553003,16505553004" || strings.Join(g.Removed, ",") != "16505553001,16505553002" {
		t.Fatalf("state participants=%v removed=%v", g.Participants, g.Removed)
	}
}
