package sim_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

var linkRE = regexp.MustCompile(`^https://chat\.whatsapp\.com/[A-Za-z0-9]{22}$`)

// unknownGroupID is shaped like a group id (Meta's sample) but names no group.
const unknownGroupID = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	path := "/v23.0/" + phone + "/groups"
	t.Run("Missing token is 190 with 401", func(t *testing.T) {
		expectError(t, b.callAs(t, "", "GET", path, nil), 401, 190)
	})
	t.Run("Wrong token is 190 with 401", func(t *testing.T) {
		expectError(t, b.callAs(t, "nope", "GET", path, nil), 401, 190)
	})
	t.Run("Token in the query is accepted", func(t *testing.T) {
		expectOK(t, b.callAs(t, "", "GET", path+"?access_token="+token, nil), 200)
	})
	t.Run("Any version prefix or none is accepted", func(t *testing.T) {
		for _, p := range []string{"/v23.0/", "/v24.0/", "/v26.0/", "/"} {
			expectOK(t, b.call(t, "GET", p+phone+"/groups", nil), 200)
		}
	})
	t.Run("Unknown paths are 100 with subcode 33", func(t *testing.T) {
		e := expectError(t, b.call(t, "GET", "/v23.0/"+phone+"/nothing", nil), 400, 100)
		if e["error_subcode"].(float64) != 33 {
			t.Fatalf("subcode = %v, want 33", e["error_subcode"])
		}
	})
	t.Run("The access token never appears in the call log", func(t *testing.T) {
		for _, c := range b.sim.Calls() {
			if strings.Contains(c.Query, token) || strings.Contains(c.Body, token) {
				t.Fatalf("token logged: %+v", c)
			}
		}
	})
}

func TestCreateGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	t.Run("Answers a request id and completes by webhook", func(t *testing.T) {
		a := b.call(t, "POST", "/v24.0/"+phone+"/groups", map[string]any{
			"messaging_product": "whatsapp", "subject": "  Watch Fans  ", "description": "d",
			"join_approval_mode": "approval_required",
		})
		expectOK(t, a, 200)
		if a.str("messaging_product") != "whatsapp" || a.str("request_id") == "" || len(a.Body) != 2 {
			t.Fatalf("answer = %s, want messaging_product and request_id only", a.Raw)
		}
		h := b.hooks.waitFor(t, "group_create", groupEvent("group_create", "request_id", a.str("request_id")))
		g := firstGroup(h)
		if h.Field != "group_lifecycle_update" || g["subject"] != "Watch Fans" || g["join_approval_mode"] != "approval_required" {
			t.Fatalf("webhook = %s", h.Raw)
		}
		if !linkRE.MatchString(g["invite_link"].(string)) {
			t.Fatalf("invite_link %q is not https://chat.whatsapp.com/<22 chars>", g["invite_link"])
		}
		id := g["group_id"].(string)
		if !strings.HasSuffix(id, "ZD") && strings.ContainsAny(id, "=+/") {
			t.Fatalf("group id %q is not escaped like Meta's", id)
		}
		if h.Value.Metadata["phone_number_id"] != phone {
			t.Fatalf("metadata = %v", h.Value.Metadata)
		}
		info := b.call(t, "GET", "/v24.0/"+id+"?fields=subject,description,join_approval_mode", nil)
		if info.str("subject") != "Watch Fans" || info.str("description") != "d" {
			t.Fatalf("info = %s", info.Raw)
		}
	})

	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   int
	}{
		{"Missing messaging_product is 100", map[string]any{"subject": "x"}, 400, 100},
		{"Wrong messaging_product is 100", map[string]any{"messaging_product": "sms", "subject": "x"}, 400, 100},
		{"Missing subject is 131008", map[string]any{"messaging_product": "whatsapp"}, 400, 131008},
		{"Blank subject is 131009", map[string]any{"messaging_product": "whatsapp", "subject": "   "}, 400, 131009},
		{"Subject over 128 is 131009", map[string]any{"messaging_product": "whatsapp", "subject": strings.Repeat("é", 129)}, 400, 131009},
		{"Subject that is not a string is 100", map[string]any{"messaging_product": "whatsapp", "subject": 5}, 400, 100},
		{"Description over 2048 is 131009", map[string]any{"messaging_product": "whatsapp", "subject": "x", "description": strings.Repeat("a", 2049)}, 400, 131009},
		{"Unknown approval mode is 131009", map[string]any{"messaging_product": "whatsapp", "subject": "x", "join_approval_mode": "open"}, 400, 131009},
		{"A body that is not JSON is 100", "{not json", 400, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/groups", tc.body), tc.status, tc.code)
		})
	}
	t.Run("Subject of exactly 128 characters is accepted", func(t *testing.T) {
		expectOK(t, b.call(t, "POST", "/v23.0/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": strings.Repeat("é", 128)}), 200)
	})
	t.Run("A phone id that is not numeric is 100/33", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/abc/groups", map[string]any{"messaging_product": "whatsapp", "subject": "x"}), 400, 100)
	})
	t.Run("Form-encoded bodies are accepted", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v23.0/"+phone+"/groups", strings.NewReader("messaging_product=whatsapp&subject=Form+group"))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		expectOK(t, b.do(t, req), 200)
	})
}

func TestGroupLimitPerNumber(t *testing.T) {
	t.Parallel()
	if sim.MaxGroupsPerNumber != 10000 {
		t.Fatalf("default limit = %d, want Meta's 10000", sim.MaxGroupsPerNumber)
	}
	b := setup(t, func(c *sim.Config) { c.MaxGroupsPerNumber = 2 })
	id, _ := b.createGroup(t, "one", "")
	b.createGroup(t, "two", "")
	body := map[string]any{"messaging_product": "whatsapp", "subject": "three"}
	expectError(t, b.call(t, "POST", "/v23.0/"+phone+"/groups", body), 400, 131211)
	t.Run("Other numbers have their own limit", func(t *testing.T) {
		expectOK(t, b.call(t, "POST", "/v23.0/999000111/groups", body), 200)
	})
	t.Run("Deleting a group makes room", func(t *testing.T) {
		expectOK(t, b.call(t, "DELETE", "/v23.0/"+id, nil), 200)
		expectOK(t, b.call(t, "POST", "/v23.0/"+phone+"/groups", body), 200)
	})
}

func TestEligibility(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	body := map[string]any{"messaging_product": "whatsapp", "subject": "x"}
	if err := b.sim.SetNumber(phone, sim.NumberSettings{Ineligible: true}); err != nil {
		t.Fatal(err)
	}
	expectError(t, b.call(t, "POST", "/"+phone+"/groups", body), 400, 131215)
	_ = b.sim.SetNumber(phone, sim.NumberSettings{GroupCreationDisabled: true})
	expectError(t, b.call(t, "POST", "/"+phone+"/groups", body), 400, 131214)
	_ = b.sim.SetNumber(phone, sim.NumberSettings{})
	expectOK(t, b.call(t, "POST", "/"+phone+"/groups", body), 200)
}

func TestListGroups(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var ids []string
	for _, s := range []string{"g1", "g2", "g3", "g4", "g5"} {
		id, _ := b.createGroup(t, s, "")
		ids = append(ids, id)
	}
	expectOK(t, b.call(t, "DELETE", "/v23.0/"+ids[2], nil), 200) // g3 leaves the list

	subjects := func(a answer) []string {
		var out []string
		for _, g := range a.Body["data"].(map[string]any)["groups"].([]any) {
			m := g.(map[string]any)
			if m["id"] == "" || m["created_at"] == "" {
				t.Fatalf("group item lacks id/created_at: %v", m)
			}
			out = append(out, m["subject"].(string))
		}
		return out
	}
	cursors := func(a answer) (before, after, next, prev string) {
		p, _ := a.Body["paging"].(map[string]any)
		c := p["cursors"].(map[string]any)
		next, _ = p["next"].(string)
		prev, _ = p["previous"].(string)
		return c["before"].(string), c["after"].(string), next, prev
	}
	first := b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=2", nil)
	if got := strings.Join(subjects(first), ","); got != "g5,g4" {
		t.Fatalf("page 1 = %s, want g5,g4 (newest first)", got)
	}
	_, after, next, prev := cursors(first)
	if next == "" || prev != "" {
		t.Fatalf("page 1 next=%q previous=%q, want next only", next, prev)
	}
	if !strings.HasPrefix(next, b.srv.URL+"/v23.0/"+phone+"/groups?") {
		t.Fatalf("next link %q does not point at this server", next)
	}
	second := b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=2&after="+after, nil)
	if got := strings.Join(subjects(second), ","); got != "g2,g1" {
		t.Fatalf("page 2 = %s, want g2,g1 (deleted g3 skipped)", got)
	}
	before, _, next, prev := cursors(second)
	if next != "" || prev == "" {
		t.Fatalf("last page next=%q previous=%q, want previous only", next, prev)
	}
	back := b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=2&before="+before, nil)
	if got := strings.Join(subjects(back), ","); got != "g5,g4" {
		t.Fatalf("previous page = %s, want g5,g4", got)
	}
	t.Run("Following next links visits every group once", func(t *testing.T) {
		var seen []string
		url := b.srv.URL + "/v23.0/" + phone + "/groups?limit=1"
		for url != "" {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			a := b.do(t, req)
			seen = append(seen, subjects(a)...)
			_, _, url, _ = cursors(a)
		}
		if got := strings.Join(seen, ","); got != "g5,g4,g2,g1" {
			t.Fatalf("walk = %s", got)
		}
	})
	t.Run("A corrupt cursor is 131059", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/"+phone+"/groups?after=garbage", nil), 400, 131059)
	})
	t.Run("A cursor of another number is 131059", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/555000111/groups?after="+after, nil), 400, 131059)
	})
	t.Run("Limit out of range is 131009", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=0", nil), 400, 131009)
		expectError(t, b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=1025", nil), 400, 131009)
	})
	t.Run("A limit that is not a number is 100", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/"+phone+"/groups?limit=ten", nil), 400, 100)
	})
	t.Run("A number lists its own groups only, suspended ones included", func(t *testing.T) {
		// groupflow checks a group's number against this list before it
		// acts on the group: the list must not hold another number's.
		const other = "106540352242923"
		a := b.call(t, "POST", "/v23.0/"+other+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "theirs"})
		expectOK(t, a, 200)
		if err := b.sim.Suspend(ids[0]); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(subjects(b.call(t, "GET", "/v23.0/"+phone+"/groups", nil)), ","); got != "g5,g4,g2,g1" {
			t.Fatalf("the number's list = %s, want g5,g4,g2,g1 (g1 suspended, g3 deleted, not the other number's)", got)
		}
		if got := strings.Join(subjects(b.call(t, "GET", "/v23.0/"+other+"/groups", nil)), ","); got != "theirs" {
			t.Fatalf("the other number's list = %s, want theirs", got)
		}
		if err := b.sim.Unsuspend(ids[0]); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("A number without groups has an empty list", func(t *testing.T) {
		a := b.call(t, "GET", "/v23.0/777000111/groups", nil)
		if len(subjects(a)) != 0 {
			t.Fatalf("got %s", a.Raw)
		}
	})
}

func TestGroupInfo(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Info", "")
	b.join(t, "16505551234", link)
	b.join(t, "+1 650-555-1235", link)

	a := b.call(t, "GET", "/v23.0/"+id+"?fields=subject,description,participants,join_approval_mode,suspended,creation_timestamp,total_participant_count", nil)
	expectOK(t, a, 200)
	if a.str("id") != id || a.str("messaging_product") != "whatsapp" || a.str("subject") != "Info" ||
		a.str("join_approval_mode") != "auto_approve" || a.Body["suspended"] != false ||
		a.Body["total_participant_count"].(float64) != 2 || a.Body["creation_timestamp"].(float64) < 1 {
		t.Fatalf("info = %s", a.Raw)
	}
	ps := a.Body["participants"].([]any)
	if len(ps) != 2 || ps[0].(map[string]any)["wa_id"] != "16505551234" || ps[1].(map[string]any)["wa_id"] != "16505551235" {
		t.Fatalf("participants = %v", ps)
	}
	t.Run("Without fields only id and messaging_product come back", func(t *testing.T) {
		a := b.call(t, "GET", "/v23.0/"+id, nil)
		if len(a.Body) != 2 || a.str("id") != id {
			t.Fatalf("got %s", a.Raw)
		}
	})
	t.Run("An unknown field is 100", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/"+id+"?fields=owner", nil), 400, 100)
	})
	t.Run("An unknown group is 131041", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/"+unknownGroupID+"?fields=subject", nil), 400, 131041)
	})
	t.Run("Something that is not a group id is 100", func(t *testing.T) {
		expectError(t, b.call(t, "GET", "/v23.0/not-a-group?fields=subject", nil), 400, 100)
	})
	t.Run("BSUID fields appear when enabled", func(t *testing.T) {
		b := setup(t, func(c *sim.Config) { c.BSUID = true })
		id, link := b.createGroup(t, "BSUID", "")
		b.join(t, "16505551234", link)
		a := b.call(t, "GET", "/v23.0/"+id+"?fields=participants", nil)
		p := a.Body["participants"].([]any)[0].(map[string]any)
		if !strings.HasPrefix(p["user_id"].(string), "US.") || p["username"] == "" || p["parent_user_id"] == "" {
			t.Fatalf("participant = %v", p)
		}
	})
}

func jpegOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (b *bundle) postPicture(t *testing.T, groupID string, data []byte) answer {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("messaging_product", "whatsapp")
	fw, _ := mw.CreateFormFile("file", "pic.jpg")
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/v23.0/"+groupID, &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(t, req)
}

func TestUpdateSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, _ := b.createGroup(t, "Before", "")

	t.Run("Subject and description update by webhook", func(t *testing.T) {
		a := b.call(t, "POST", "/v23.0/"+id, map[string]any{"messaging_product": "whatsapp", "subject": " After ", "description": "New"})
		expectOK(t, a, 200)
		if a.Body["success"] != true || a.str("request_id") == "" || a.str("messaging_product") != "whatsapp" {
			t.Fatalf("answer = %s", a.Raw)
		}
		h := b.hooks.waitFor(t, "settings", groupEvent("group_settings_update", "request_id", a.str("request_id")))
		g := firstGroup(h)
		subj := g["group_subject"].(map[string]any)
		desc := g["group_description"].(map[string]any)
		if h.Field != "group_settings_update" || subj["text"] != "After" || subj["update_successful"] != true ||
			desc["text"] != "New" || desc["update_successful"] != true || g["profile_picture"] != nil || g["errors"] != nil {
			t.Fatalf("webhook = %s", h.Raw)
		}
		info := b.call(t, "GET", "/v23.0/"+id+"?fields=subject,description", nil)
		if info.str("subject") != "After" || info.str("description") != "New" {
			t.Fatalf("info = %s", info.Raw)
		}
	})
	t.Run("A square JPEG of 192px or more becomes the picture", func(t *testing.T) {
		pic := jpegOf(t, 200, 200)
		a := b.postPicture(t, id, pic)
		expectOK(t, a, 200)
		g := firstGroup(b.hooks.waitFor(t, "picture", groupEvent("group_settings_update", "request_id", a.str("request_id"))))
		pp := g["profile_picture"].(map[string]any)
		if pp["update_successful"] != true || pp["mime_type"] != "image/jpeg" {
			t.Fatalf("profile_picture = %v", pp)
		}
		if _, err := base64.StdEncoding.DecodeString(pp["sha256"].(string)); err != nil {
			t.Fatalf("sha256 %q is not base64", pp["sha256"])
		}
	})
	for _, tc := range []struct {
		name string
		w, h int
		code float64
	}{{"A picture that is not square fails with 131209", 300, 200, 131209}, {"A picture under 192px fails with 131210", 100, 100, 131210}} {
		t.Run(tc.name, func(t *testing.T) {
			a := b.postPicture(t, id, jpegOf(t, tc.w, tc.h))
			expectOK(t, a, 200)
			g := firstGroup(b.hooks.waitFor(t, "picture", groupEvent("group_settings_update", "request_id", a.str("request_id"))))
			pp := g["profile_picture"].(map[string]any)
			errs := pp["errors"].([]any)
			if pp["update_successful"] != false || errs[0].(map[string]any)["code"] != tc.code {
				t.Fatalf("profile_picture = %v", pp)
			}
			if top := g["errors"].([]any); top[0].(map[string]any)["code"] != tc.code {
				t.Fatalf("top-level errors = %v", top)
			}
		})
	}
	t.Run("A picture that is not a JPEG is 131009", func(t *testing.T) {
		expectError(t, b.postPicture(t, id, []byte("\x89PNG not a jpeg")), 400, 131009)
	})
	t.Run("Nothing to update is 131008", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+id, map[string]any{"messaging_product": "whatsapp"}), 400, 131008)
	})
	t.Run("An empty subject is 131009", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+id, map[string]any{"messaging_product": "whatsapp", "subject": ""}), 400, 131009)
	})
	t.Run("A suspended group is 131207", func(t *testing.T) {
		id, _ := b.createGroup(t, "Suspended", "")
		if err := b.sim.Suspend(id); err != nil {
			t.Fatal(err)
		}
		expectError(t, b.call(t, "POST", "/v23.0/"+id, map[string]any{"messaging_product": "whatsapp", "subject": "x"}), 403, 131207)
	})
}

func TestDeleteGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, link := b.createGroup(t, "Doomed", "")
	a := b.call(t, "DELETE", "/v23.0/"+id, nil)
	expectOK(t, a, 200)
	if a.Body["success"] != true || a.str("request_id") == "" {
		t.Fatalf("answer = %s", a.Raw)
	}
	h := b.hooks.waitFor(t, "group_delete", groupEvent("group_delete", "request_id", a.str("request_id")))
	if firstGroup(h)["group_id"] != id || firstGroup(h)["errors"] != nil {
		t.Fatalf("webhook = %s", h.Raw)
	}
	expectError(t, b.call(t, "GET", "/v23.0/"+id+"?fields=subject", nil), 400, 131041)
	expectError(t, b.call(t, "DELETE", "/v23.0/"+id, nil), 400, 131041)
	if _, err := b.sim.Join("16505551234", link); !errors.Is(err, sim.ErrInvalidLink) {
		t.Fatalf("joining a deleted group: err = %v, want ErrInvalidLink", err)
	}
	if g, ok := b.sim.Group(id); !ok || !g.Deleted {
		t.Fatalf("state = %+v, want deleted", g)
	}
}

func TestInviteLink(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, created := b.createGroup(t, "Links", "")

	a := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil)
	expectOK(t, a, 200)
	if a.str("invite_link") != created || a.str("messaging_product") != "whatsapp" {
		t.Fatalf("get = %s, want the link from group_create %s", a.Raw, created)
	}
	t.Run("Reset invalidates the old link", func(t *testing.T) {
		r := b.call(t, "POST", "/v23.0/"+id+"/invite_link", map[string]any{"messaging_product": "whatsapp"})
		expectOK(t, r, 200)
		fresh := r.str("invite_link")
		if !linkRE.MatchString(fresh) || fresh == created {
			t.Fatalf("reset = %s", r.Raw)
		}
		if _, err := b.sim.Join("16505550001", created); !errors.Is(err, sim.ErrInvalidLink) {
			t.Fatalf("join by old link: err = %v, want ErrInvalidLink", err)
		}
		if res := b.join(t, "16505550001", fresh); !res.Joined || res.GroupID != id {
			t.Fatalf("join by new link = %+v", res)
		}
		if got := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil).str("invite_link"); got != fresh {
			t.Fatalf("get after reset = %s, want %s", got, fresh)
		}
	})
	t.Run("Reset without messaging_product is 100", func(t *testing.T) {
		expectError(t, b.call(t, "POST", "/v23.0/"+id+"/invite_link", nil), 400, 100)
	})
	t.Run("Delete disables the link and a later get makes a new one", func(t *testing.T) {
		old := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil).str("invite_link")
		d := b.call(t, "DELETE", "/v23.0/"+id+"/invite_link", map[string]any{"messaging_product": "whatsapp"})
		expectOK(t, d, 200)
		if d.Body["success"] != "true" {
			t.Fatalf("delete = %s, want success \"true\"", d.Raw)
		}
		if _, err := b.sim.Join("16505550002", old); !errors.Is(err, sim.ErrInvalidLink) {
			t.Fatalf("join by deleted link: err = %v", err)
		}
		if n := b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil).str("invite_link"); n == old || !linkRE.MatchString(n) {
			t.Fatalf("link after delete = %q", n)
		}
	})
	t.Run("A suspended group has no link", func(t *testing.T) {
		_ = b.sim.Suspend(id)
		defer func() {
			if err := b.sim.Unsuspend(id); err != nil {
				t.Error(err)
			}
		}()
		expectError(t, b.call(t, "GET", "/v23.0/"+id+"/invite_link", nil), 403, 131207)
	})
}

func TestAddParticipantsIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, _ := b.createGroup(t, "x", "")
	expectError(t, b.call(t, "POST", "/v23.0/"+id+"/participants", map[string]any{"messaging_product": "whatsapp"}), 400, 100)
}
