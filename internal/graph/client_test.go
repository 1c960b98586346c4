package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testToken is deliberately distinctive so that a leak into any error text
// is found by a plain substring search.
const testToken = "EAAGtest-SECRET-token-0123456789"

const phone = "106540352242922"

// Users of the simulator.
const (
	alice = "15550000001"
	bob   = "15550000002"
	carol = "15550000003"
)

type exchange struct {
	endpoint     string
	status, code int
}

// bundle is what setup returns: a client wired to a fresh simulator over
// real HTTP, and what it observed.
type bundle struct {
	client *graph.Client
	sim    *sim.Server
	url    string

	mu        sync.Mutex
	exchanges []exchange
}

func (b *bundle) observed() []exchange {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.exchanges)
}

// setup starts a simulator behind httptest and a client for it. Every
// request goes through checkHygiene, which fails the test if the token is
// anywhere but the Authorization header or a JSON body lacks
// messaging_product.
func setup(t *testing.T, cfg sim.Config, tweak ...func(*graph.Config)) *bundle {
	t.Helper()
	cfg.AccessToken = testToken
	cfg.WebhookDelay = cmpDur(cfg.WebhookDelay, time.Millisecond)
	s := sim.New(cfg)
	t.Cleanup(s.Close)
	b := &bundle{sim: s}
	srv := httptest.NewServer(checkHygiene(t, s))
	t.Cleanup(srv.Close)
	b.url = srv.URL

	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	gc := graph.Config{
		BaseURL:     srv.URL,
		AccessToken: testToken,
		HTTPClient:  &http.Client{Transport: tr},
		OnResponse: func(endpoint string, status, code int, _ time.Duration) {
			b.mu.Lock()
			b.exchanges = append(b.exchanges, exchange{endpoint, status, code})
			b.mu.Unlock()
		},
	}
	for _, f := range tweak {
		f(&gc)
	}
	c, err := graph.New(gc)
	if err != nil {
		t.Fatalf("graph.New: %v", err)
	}
	b.client = c
	return b
}

func cmpDur(d, def time.Duration) time.Duration {
	if d != 0 {
		return d
	}
	return def
}

func checkHygiene(t *testing.T, next http.Handler) http.Handler {
	var mu sync.Mutex
	var problems []string
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Error(p)
		}
	})
	report := func(format string, args ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		where := r.Method + " " + r.URL.Path
		if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
			report("%s: Authorization header = %q, want the bearer token", where, got)
		}
		if strings.Contains(r.URL.String(), testToken) || strings.Contains(r.URL.String(), "access_token") {
			report("%s: token in the URL %q", where, r.URL.String())
		}
		mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		switch {
		case len(body) == 0:
		case mt == "application/json":
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil || m["messaging_product"] != "whatsapp" {
				report("%s: JSON body without messaging_product whatsapp: %s", where, body)
			}
		case mt == "multipart/form-data":
			form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(10 << 20)
			if err != nil || len(form.Value["messaging_product"]) != 1 || form.Value["messaging_product"][0] != "whatsapp" || len(form.File["file"]) != 1 {
				report("%s: multipart body without messaging_product and file (%v)", where, err)
			}
		default:
			report("%s: unexpected content type %q", where, r.Header.Get("Content-Type"))
		}
		next.ServeHTTP(w, r)
	})
}

// createGroup creates a group and returns its id, read from the
// group_create webhook that carries the request id.
func (b *bundle) createGroup(t *testing.T, subject, mode string) string {
	t.Helper()
	res, err := b.client.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: subject, JoinApprovalMode: mode})
	if err != nil {
		t.Fatalf("CreateGroup: %v", err)
	}
	if res.RequestID == "" {
		t.Fatal("CreateGroup returned no request id")
	}
	return b.groupIDFor(t, res.RequestID)
}

type groupEvent struct {
	Type       string `json:"type"`
	GroupID    string `json:"group_id"`
	RequestID  string `json:"request_id"`
	InviteLink string `json:"invite_link"`
	Errors     []struct {
		Code int `json:"code"`
	} `json:"errors"`
	ProfilePicture *struct {
		UpdateSuccessful bool `json:"update_successful"`
		Errors           []struct {
			Code int `json:"code"`
		} `json:"errors"`
	} `json:"profile_picture"`
}

// groupEvents returns the group events the simulator emitted for requestID.
func (b *bundle) groupEvents(t *testing.T, requestID string) []groupEvent {
	t.Helper()
	var out []groupEvent
	for _, rec := range b.sim.Webhooks() {
		var env struct {
			Entry []struct {
				Changes []struct {
					Value struct {
						Groups []groupEvent `json:"groups"`
					} `json:"value"`
				} `json:"changes"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(rec.Body, &env); err != nil {
			t.Fatalf("simulator webhook does not decode: %v", err)
		}
		for _, e := range env.Entry {
			for _, c := range e.Changes {
				for _, g := range c.Value.Groups {
					if g.RequestID == requestID && !rec.Duplicate {
						out = append(out, g)
					}
				}
			}
		}
	}
	return out
}

func (b *bundle) groupIDFor(t *testing.T, requestID string) string {
	t.Helper()
	for _, g := range b.groupEvents(t, requestID) {
		if g.Type == "group_create" && g.GroupID != "" && len(g.Errors) == 0 {
			return g.GroupID
		}
	}
	t.Fatalf("no successful group_create webhook for request %s", requestID)
	return ""
}

func (b *bundle) join(t *testing.T, waID, groupID string) sim.JoinResult {
	t.Helper()
	link, err := b.client.InviteLink(t.Context(), groupID)
	if err != nil {
		t.Fatalf("InviteLink: %v", err)
	}
	res, err := b.sim.Join(waID, link)
	if err != nil {
		t.Fatalf("sim.Join(%s): %v", waID, err)
	}
	return res
}

// wantGraphErr asserts that err is a *graph.Error with this code and class.
func wantGraphErr(t *testing.T, err error, code int, class graph.Class) {
	t.Helper()
	_ = graphErr(t, err, code, class) // only the assertions matter here
}

// graphErr asserts like wantGraphErr and returns the *graph.Error for
// further checks.
func graphErr(t *testing.T, err error, code int, class graph.Class) *graph.Error {
	t.Helper()
	var ge *graph.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error = %v (%T), want a *graph.Error with code %d", err, err, code)
	}
	if ge.Code != code || ge.Class != class {
		t.Fatalf("error code %d class %s, want code %d class %s (%v)", ge.Code, ge.Class, code, class, ge)
	}
	if graph.ClassOf(err) != class {
		t.Fatalf("ClassOf = %s, want %s", graph.ClassOf(err), class)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Fatalf("error text holds the token: %v", err)
	}
	return ge
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]graph.Config{
		"no token":          {},
		"relative base URL": {AccessToken: "x", BaseURL: "graph.facebook.com"},
		"token in base URL": {AccessToken: "x", BaseURL: "https://graph.facebook.com?access_token=x"},
		"bad version":       {AccessToken: "x", Version: "v1/../x"},
		"token with a CRLF": {AccessToken: "x\r\nX-Evil: 1"},
	} {
		if _, err := graph.New(cfg); !errors.Is(err, graph.ErrInvalidArgument) {
			t.Errorf("%s: New error = %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := graph.New(graph.Config{AccessToken: "x"}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestCreateGroupAndGroupInfo(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{BSUID: true})
	ctx := t.Context()
	res, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{
		Subject: "  Watch Enthusiasts ", Description: "Talk about watches", JoinApprovalMode: graph.JoinApprovalRequired,
	})
	if err != nil {
		t.Fatal(err)
	}
	gid := b.groupIDFor(t, res.RequestID)

	info, err := b.client.GroupInfo(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != gid || info.Subject != "Watch Enthusiasts" || info.Description != "Talk about watches" ||
		info.JoinApprovalMode != graph.JoinApprovalRequired || info.Suspended || info.TotalParticipantCount != 0 ||
		len(info.Participants) != 0 || info.CreationTimestamp.IsZero() {
		t.Fatalf("GroupInfo = %+v", info)
	}

	// Only the fields asked for come back.
	info, err = b.client.GroupInfo(ctx, gid, graph.FieldSubject)
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != "Watch Enthusiasts" || info.Description != "" || !info.CreationTimestamp.IsZero() {
		t.Errorf("GroupInfo(subject) = %+v, want only the subject", info)
	}

	// A member with business-scoped ids, and a suspension.
	jr := b.join(t, alice, gid)
	if _, err := b.client.ApproveJoinRequests(ctx, gid, []string{jr.JoinRequestID}); err != nil {
		t.Fatal(err)
	}
	if err := b.sim.Suspend(gid); err != nil {
		t.Fatal(err)
	}
	info, err = b.client.GroupInfo(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Participants) != 1 || info.Participants[0].WAID != alice || !strings.HasPrefix(info.Participants[0].UserID, "US.") ||
		info.TotalParticipantCount != 1 || !info.Suspended {
		t.Errorf("GroupInfo after a join and a suspension = %+v", info)
	}
}

func TestCreateGroupErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{MaxGroupsPerNumber: 1})
	ctx := t.Context()

	_, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "   "})
	wantGraphErr(t, err, graph.CodeParameterInvalid, graph.ClassPermanent)

	b.createGroup(t, "first", "")
	_, err = b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "second"})
	wantGraphErr(t, err, graph.CodeGroupCreateLimit, graph.ClassPermanent)

	other := "106540352242923"
	if err := b.sim.SetNumber(other, sim.NumberSettings{Ineligible: true}); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.CreateGroup(ctx, other, graph.CreateGroupRequest{Subject: "x"})
	wantGraphErr(t, err, graph.CodeNumberNotEligible, graph.ClassPermanent)

	if err := b.sim.SetNumber(other, sim.NumberSettings{GroupCreationDisabled: true}); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.CreateGroup(ctx, other, graph.CreateGroupRequest{Subject: "x"})
	wantGraphErr(t, err, graph.CodeGroupCreateDisabled, graph.ClassPermanent)

	_, err = b.client.CreateGroup(ctx, "", graph.CreateGroupRequest{Subject: "x"})
	if !errors.Is(err, graph.ErrInvalidArgument) || graph.IsAmbiguous(err) {
		t.Errorf("empty phone id: %v, want ErrInvalidArgument, not ambiguous", err)
	}
}

func TestListGroupsPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		ids = append(ids, b.createGroup(t, fmt.Sprintf("group %d", i), ""))
	}
	slices.Reverse(ids) // Graph lists the newest first

	page, err := b.client.ListGroups(ctx, phone, graph.PageOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Groups) != 2 || page.Groups[0].ID != ids[0] || !page.HasNext || page.After == "" {
		t.Fatalf("first page = %+v", page)
	}
	if page.Groups[0].Subject != "group 4" || page.Groups[0].CreatedAt.IsZero() {
		t.Errorf("first group = %+v", page.Groups[0])
	}

	var got []string
	for g, err := range b.client.Groups(ctx, phone, 2) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, g.ID)
	}
	if !slices.Equal(got, ids) {
		t.Errorf("Groups iterated %v, want %v", got, ids)
	}
	lists := 0
	for _, x := range b.observed() {
		if x.endpoint == graph.EndpointListGroups {
			lists++
		}
	}
	if lists != 4 { // one ListGroups above, three pages of the iterator
		t.Errorf("list_groups calls = %d, want 4 (the iterator must stop on the page without next)", lists)
	}

	// Stopping early makes no further call.
	for _, err := range b.client.Groups(ctx, phone, 2) {
		if err != nil {
			t.Fatal(err)
		}
		break
	}

	_, err = b.client.ListGroups(ctx, phone, graph.PageOptions{After: "bm90IGEgY3Vyc29y"})
	wantGraphErr(t, err, graph.CodeInvalidCursor, graph.ClassPermanent)

	var iterErr error
	n := 0
	for _, err := range b.client.Groups(ctx, phone, 5000) {
		n++
		iterErr = err
	}
	if n != 1 {
		t.Errorf("iterator yielded %d values on an error, want exactly the error", n)
	}
	wantGraphErr(t, iterErr, graph.CodeParameterInvalid, graph.ClassPermanent)
}

func TestGroupInfoErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	// A well-formed id of a group that does not exist (Meta's doc sample).
	_, err := b.client.GroupInfo(ctx, "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD")
	wantGraphErr(t, err, graph.CodeGroupUnknown, graph.ClassPermanent)

	gid := b.createGroup(t, "g", "")
	_, err = b.client.GroupInfo(ctx, gid, "owner")
	wantGraphErr(t, err, graph.CodeInvalidParameter, graph.ClassPermanent)
}

// TestDotSegmentsAreRefused: an id of "." or ".." is escaped as itself,
// and clients, proxies and servers remove such segments from a path
// (RFC 3986 §5.2.4): GET /v23.0/../invite_link reached the server as
// GET /invite_link, DELETE /v23.0/.. as DELETE /. No Graph id is a dot
// segment, so the call is refused before anything is sent.
func TestDotSegmentsAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	for _, id := range []string{".", ".."} {
		calls := map[string]error{}
		_, calls["InviteLink"] = b.client.InviteLink(ctx, id)
		_, calls["GroupInfo"] = b.client.GroupInfo(ctx, id)
		_, calls["DeleteGroup"] = b.client.DeleteGroup(ctx, id)
		_, calls["ListGroups"] = b.client.ListGroups(ctx, id, graph.PageOptions{})
		_, calls["ListJoinRequests"] = b.client.ListJoinRequests(ctx, id, graph.PageOptions{})
		for call, err := range calls {
			if !errors.Is(err, graph.ErrInvalidArgument) || graph.IsAmbiguous(err) {
				t.Errorf("%s(%q): %v, want ErrInvalidArgument, not ambiguous", call, id, err)
			}
		}
	}
	if got := b.observed(); len(got) > 0 {
		t.Errorf("requests were sent for dot-segment ids: %v", got)
	}
}

func TestUpdateGroupSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	gid := b.createGroup(t, "before", "")

	subject, desc := "after", "new description"
	res, err := b.client.UpdateGroupSettings(ctx, gid, graph.UpdateSettingsRequest{Subject: &subject, Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	if res.RequestID == "" || len(b.groupEvents(t, res.RequestID)) != 1 {
		t.Fatalf("request id %q does not match one settings webhook", res.RequestID)
	}
	info, err := b.client.GroupInfo(ctx, gid, graph.FieldSubject, graph.FieldDescription)
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != subject || info.Description != desc {
		t.Errorf("after update: %+v", info)
	}

	empty := ""
	_, err = b.client.UpdateGroupSettings(ctx, gid, graph.UpdateSettingsRequest{Subject: &empty})
	wantGraphErr(t, err, graph.CodeParameterInvalid, graph.ClassPermanent)

	_, err = b.client.UpdateGroupSettings(ctx, gid, graph.UpdateSettingsRequest{})
	if !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("empty update: %v, want ErrInvalidArgument", err)
	}

	if err := b.sim.Suspend(gid); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.UpdateGroupSettings(ctx, gid, graph.UpdateSettingsRequest{Description: &desc})
	wantGraphErr(t, err, graph.CodeGroupSuspended, graph.ClassPermanent)
}

func jpegOf(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestUpdateGroupPicture(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	gid := b.createGroup(t, "pictures", "")

	res, err := b.client.UpdateGroupPicture(ctx, gid, jpegOf(t, 192, 192))
	if err != nil {
		t.Fatal(err)
	}
	if gs, _ := b.sim.Group(gid); gs.PictureSHA256 == "" {
		t.Error("the simulator did not store the picture")
	}
	if ev := b.groupEvents(t, res.RequestID); len(ev) != 1 || ev[0].ProfilePicture == nil || !ev[0].ProfilePicture.UpdateSuccessful {
		t.Errorf("settings webhook for the picture = %+v", ev)
	}

	// Shape problems are reported in the webhook, per Meta's table.
	res, err = b.client.UpdateGroupPicture(ctx, gid, jpegOf(t, 300, 200))
	if err != nil {
		t.Fatal(err)
	}
	if ev := b.groupEvents(t, res.RequestID); len(ev) != 1 || ev[0].ProfilePicture == nil || ev[0].ProfilePicture.UpdateSuccessful ||
		ev[0].ProfilePicture.Errors[0].Code != graph.CodePictureNotSquare {
		t.Errorf("webhook for a non-square picture = %+v", ev)
	}

	_, err = b.client.UpdateGroupPicture(ctx, gid, []byte("GIF89a not a jpeg"))
	wantGraphErr(t, err, graph.CodeParameterInvalid, graph.ClassPermanent)

	_, err = b.client.UpdateGroupPicture(ctx, gid, nil)
	if !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("empty picture: %v, want ErrInvalidArgument", err)
	}
}

func TestDeleteGroup(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	gid := b.createGroup(t, "short-lived", "")
	res, err := b.client.DeleteGroup(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if ev := b.groupEvents(t, res.RequestID); len(ev) != 1 || ev[0].Type != "group_delete" {
		t.Errorf("delete webhook = %+v", ev)
	}
	_, err = b.client.DeleteGroup(ctx, gid)
	wantGraphErr(t, err, graph.CodeGroupUnknown, graph.ClassPermanent)
	_, err = b.client.InviteLink(ctx, gid)
	wantGraphErr(t, err, graph.CodeGroupUnknown, graph.ClassPermanent)
}

func TestInviteLink(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	gid := b.createGroup(t, "links", "")
	link, err := b.client.InviteLink(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "https://chat.whatsapp.com/") {
		t.Fatalf("link = %q", link)
	}
	again, err := b.client.InviteLink(ctx, gid)
	if err != nil || again != link {
		t.Fatalf("second InviteLink = %q, %v; want the same %q", again, err, link)
	}
	fresh, err := b.client.ResetInviteLink(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == link || !strings.HasPrefix(fresh, "https://chat.whatsapp.com/") {
		t.Fatalf("reset link = %q (old %q)", fresh, link)
	}
	if _, err := b.sim.Join(alice, link); !errors.Is(err, sim.ErrInvalidLink) {
		t.Errorf("joining by the old link: %v, want ErrInvalidLink", err)
	}
	if _, err := b.sim.Join(alice, fresh); err != nil {
		t.Errorf("joining by the new link: %v", err)
	}
	if err := b.sim.Suspend(gid); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.ResetInviteLink(ctx, gid)
	wantGraphErr(t, err, graph.CodeGroupSuspended, graph.ClassPermanent)
}

func TestJoinRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{BSUID: true})
	ctx := t.Context()
	gid := b.createGroup(t, "by approval", graph.JoinApprovalRequired)
	var reqIDs []string
	for _, u := range []string{alice, bob, carol} {
		reqIDs = append(reqIDs, b.join(t, u, gid).JoinRequestID)
	}

	page, err := b.client.ListJoinRequests(ctx, gid, graph.PageOptions{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Requests) != 2 || !page.HasNext || page.Requests[0].ID != reqIDs[0] || page.Requests[0].WAID != alice ||
		!strings.HasPrefix(page.Requests[0].UserID, "US.") || page.Requests[0].CreatedAt.IsZero() {
		t.Fatalf("first page = %+v", page)
	}
	next, err := b.client.ListJoinRequests(ctx, gid, graph.PageOptions{Limit: 2, After: page.After})
	if err != nil {
		t.Fatal(err)
	}
	if len(next.Requests) != 1 || next.Requests[0].ID != reqIDs[2] || next.HasNext {
		t.Fatalf("second page = %+v", next)
	}
	var all []string
	for r, err := range b.client.JoinRequests(ctx, gid) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r.ID)
	}
	if !slices.Equal(all, reqIDs) {
		t.Errorf("JoinRequests = %v, want %v", all, reqIDs)
	}

	// Bob has not accepted the terms; "bogus" does not exist: HTTP 206.
	if err := b.sim.SetTOS(bob, false); err != nil {
		t.Fatal(err)
	}
	res, err := b.client.ApproveJoinRequests(ctx, gid, []string{reqIDs[0], reqIDs[1], reqIDs[2], "bogus"})
	if err != nil {
		t.Fatalf("partial approval returned %v, want per-item outcomes", err)
	}
	if !slices.Equal(res.Succeeded, []string{reqIDs[0], reqIDs[2]}) {
		t.Errorf("approved = %v", res.Succeeded)
	}
	failed := map[string]int{}
	for _, f := range res.Failed {
		failed[f.ID] = f.Errors[0].Code
		if f.Errors[0].Class() != graph.ClassPermanent || f.Errors[0].Title == "" {
			t.Errorf("item error %+v", f.Errors[0])
		}
	}
	if failed[reqIDs[1]] != graph.CodeTermsNotAccepted || failed["bogus"] != graph.CodeJoinRequestUnknown || len(failed) != 2 {
		t.Errorf("failed = %v", failed)
	}
	if len(res.Errors) != 1 || res.Errors[0].Code != graph.CodePartialSuccess {
		t.Errorf("request-level errors = %+v, want 131201", res.Errors)
	}
	if exch := b.observed(); exch[len(exch)-1] != (exchange{graph.EndpointApproveJoinRequests, 206, 0}) {
		t.Errorf("last exchange = %+v", exch[len(exch)-1])
	}

	res, err = b.client.RejectJoinRequests(ctx, gid, []string{reqIDs[1]})
	if err != nil || !slices.Equal(res.Succeeded, []string{reqIDs[1]}) {
		t.Fatalf("reject = %+v, %v", res, err)
	}
	// Every item failed: an error, and the items still say why.
	res, err = b.client.RejectJoinRequests(ctx, gid, []string{reqIDs[1]})
	wantGraphErr(t, err, graph.CodeJoinRequestUnknown, graph.ClassPermanent)
	if len(res.Failed) != 1 || res.Failed[0].ID != reqIDs[1] || res.Failed[0].Errors[0].Code != graph.CodeJoinRequestUnknown {
		t.Errorf("all-failed result = %+v", res)
	}

	res, err = b.client.ApproveJoinRequests(ctx, gid, nil)
	if err != nil || len(res.Succeeded)+len(res.Failed) != 0 {
		t.Errorf("approving nothing = %+v, %v", res, err)
	}
	info, err := b.client.GroupInfo(ctx, gid, graph.FieldParticipants)
	if err != nil {
		t.Fatal(err)
	}
	var members []string
	for _, p := range info.Participants {
		members = append(members, p.ID())
	}
	if !slices.Equal(members, []string{alice, carol}) {
		t.Errorf("members = %v, want alice and carol", members)
	}
}

func TestRemoveParticipants(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{BSUID: true})
	ctx := t.Context()
	gid := b.createGroup(t, "open", graph.JoinAutoApprove)
	for _, u := range []string{alice, bob, carol} {
		b.join(t, u, gid)
	}
	var bobBSUID string
	for _, u := range b.sim.State().Users {
		if u.WAID == bob {
			bobBSUID = u.UserID
		}
	}
	if !strings.HasPrefix(bobBSUID, "US.") {
		t.Fatalf("bob's BSUID = %q", bobBSUID)
	}

	// 12 entries, 10 distinct users: two calls, of 8 and 2. The first
	// spelling of a phone number is the one sent.
	in := []string{"+" + alice, alice, bobBSUID, "+1 (555) 000-0001"}
	for i := range 8 {
		in = append(in, fmt.Sprintf("1555999%04d", i))
	}
	b.sim.ResetCalls()
	results, err := b.client.RemoveParticipants(ctx, gid, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || len(results[0].Participants) != 8 || len(results[1].Participants) != 2 {
		t.Fatalf("results = %+v, want chunks of 8 and 2", results)
	}
	if results[0].RequestID == "" || results[0].RequestID == results[1].RequestID {
		t.Errorf("request ids %q and %q, want two distinct ids", results[0].RequestID, results[1].RequestID)
	}
	var bodies []string
	for _, c := range b.sim.Calls() {
		if c.Endpoint == sim.EndpointRemoveParticipant {
			bodies = append(bodies, c.Body)
		}
	}
	if len(bodies) != 2 {
		t.Fatalf("remove calls = %d, want 2", len(bodies))
	}
	if !strings.Contains(bodies[0], `{"user_id":"`+bobBSUID+`"}`) || !strings.Contains(bodies[0], `{"user":"+`+alice+`"}`) {
		t.Errorf("first chunk body = %s", bodies[0])
	}
	gs, _ := b.sim.Group(gid)
	if !slices.Equal(gs.Participants, []string{carol}) {
		t.Errorf("participants after removal = %v, want carol only", gs.Participants)
	}
	if ev := b.groupEvents(t, results[1].RequestID); len(ev) != 1 || ev[0].Type != "group_participants_remove" {
		t.Errorf("webhook of the second chunk = %+v", ev)
	}

	// A failing call stops the run and reports the calls made before it.
	if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointRemoveParticipant}, Limit: 1, Code2: 1}); err != nil {
		t.Fatal(err)
	}
	results, err = b.client.RemoveParticipants(ctx, gid, []string{carol})
	wantGraphErr(t, err, graph.CodeServiceUnavailable, graph.ClassTransient)
	if len(results) != 0 {
		t.Errorf("results after a failed first call = %+v", results)
	}

	if _, err := b.client.RemoveParticipants(ctx, gid, []string{""}); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("empty participant: %v, want ErrInvalidArgument", err)
	}
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	lib, err := b.client.TemplateLibrary(ctx, graph.LibraryQuery{Category: "utility", Topic: "group_invite_link", Language: "en"})
	if err != nil {
		t.Fatal(err)
	}
	if len(lib) != 1 || lib[0].Name == "" || lib[0].ID == "" || !strings.EqualFold(lib[0].Topic, "group_invite_link") || lib[0].Body == "" {
		t.Fatalf("library = %+v", lib)
	}

	waba := sim.DefaultWABAID
	got, err := b.client.AccountTemplates(ctx, waba, "my_group_invite")
	if err != nil || len(got) != 0 {
		t.Fatalf("AccountTemplates before adding = %+v, %v", got, err)
	}
	req := graph.AddTemplateRequest{Name: "my_group_invite", Category: "UTILITY", Language: "en", LibraryTemplateName: lib[0].Name}
	added, err := b.client.AddLibraryTemplate(ctx, waba, req)
	if err != nil {
		t.Fatal(err)
	}
	if added.ID == "" || added.Status != "APPROVED" || added.Category != "UTILITY" || added.Name != req.Name || added.Language != "en" {
		t.Errorf("added = %+v", added)
	}
	got, err = b.client.AccountTemplates(ctx, waba, "my_group_invite")
	if err != nil || len(got) != 1 || got[0] != added {
		t.Fatalf("AccountTemplates after adding = %+v, %v; want [%+v]", got, err, added)
	}

	_, err = b.client.AddLibraryTemplate(ctx, waba, req)
	if ge := graphErr(t, err, graph.CodeInvalidParameter, graph.ClassPermanent); ge.Subcode != 2388024 || ge.UserTitle == "" {
		t.Errorf("duplicate template error = %+v", ge)
	}
	_, err = b.client.AccountTemplates(ctx, "999", "")
	wantGraphErr(t, err, graph.CodeInvalidParameter, graph.ClassPermanent)
}

func TestSendMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	ctx := t.Context()
	gid := b.createGroup(t, "chat", "")

	_, err := b.client.SendGroupText(ctx, phone, gid, "anyone?")
	wantGraphErr(t, err, graph.CodeGroupOnlyMember, graph.ClassPermanent)

	b.join(t, alice, gid)
	sent, err := b.client.SendGroupText(ctx, phone, gid, "hello group")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sent.MessageID, "wamid.") || sent.WAID != gid {
		t.Errorf("SendGroupText = %+v", sent)
	}

	if err := b.sim.Suspend(gid); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.SendGroupText(ctx, phone, gid, "still there?")
	wantGraphErr(t, err, graph.CodeGroupSuspended, graph.ClassPermanent)
	if err := b.sim.Unsuspend(gid); err != nil {
		t.Fatal(err)
	}

	tpl := graph.TemplateRef{Name: "my_group_invite", Language: "en"}
	_, err = b.client.SendGroupInvite(ctx, phone, bob, gid, tpl)
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.Class != graph.ClassPermanent || ge.HTTPStatus != http.StatusNotFound {
		t.Fatalf("invite with a missing template: %v, want a permanent 404", err)
	}
	if _, err := b.client.AddLibraryTemplate(ctx, sim.DefaultWABAID, graph.AddTemplateRequest{
		Name: tpl.Name, Category: "UTILITY", Language: "en", LibraryTemplateName: "group_invite_upon_request",
	}); err != nil {
		t.Fatal(err)
	}
	invite, err := b.client.SendGroupInvite(ctx, phone, bob, gid, tpl)
	if err != nil {
		t.Fatal(err)
	}
	if invite.MessageID == "" || invite.WAID != bob {
		t.Errorf("SendGroupInvite = %+v", invite)
	}

	// A second message to the same user at once hits the pair rate limit.
	_, err = b.client.SendGroupInvite(ctx, phone, bob, gid, tpl)
	ge = graphErr(t, err, graph.CodePairRateLimit, graph.ClassThrottled)
	if ge.Scope() != graph.ScopeRecipient || ge.RetryAfter <= 0 || ge.RetryAfter > sim.DefaultPairInterval {
		t.Errorf("pair rate limit: scope %q, RetryAfter %s", ge.Scope(), ge.RetryAfter)
	}
	if graph.IsAmbiguous(err) {
		t.Error("a throttled send is reported ambiguous")
	}
}

func TestInjectedFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		faults    sim.Faults
		code      int
		class     graph.Class
		scope     graph.Scope
		retry     time.Duration
		ambiguous bool
	}{
		{"5xx without a body", sim.Faults{Status5xx: 1}, 0, graph.ClassTransient, graph.ScopeNone, 0, true},
		{"code 1", sim.Faults{Code1: 1}, graph.CodeUnknown, graph.ClassTransient, graph.ScopeNone, 0, false},
		{"code 2", sim.Faults{Code2: 1}, graph.CodeServiceUnavailable, graph.ClassTransient, graph.ScopeNone, 0, true},
		{"code 131000", sim.Faults{Code131000: 1}, graph.CodeSendUnknown, graph.ClassTransient, graph.ScopeNone, 0, true},
		{"group rate limit", sim.Faults{Throttle: 1}, graph.CodeGroupRateLimit, graph.ClassThrottled, graph.ScopeNumber, time.Second, false},
		{
			"account rate limit with minutes to regain access",
			sim.Faults{Throttle: 1, ThrottleCode: graph.CodeAccountRateLimit, ThrottleRetryAfter: 2 * time.Minute},
			graph.CodeAccountRateLimit, graph.ClassThrottled, graph.ScopeAccount, 2 * time.Minute, false,
		},
		{
			"app rate limit", sim.Faults{Throttle: 1, ThrottleCode: graph.CodeAppRateLimit, ThrottleRetryAfter: 3 * time.Second},
			graph.CodeAppRateLimit, graph.ClassThrottled, graph.ScopeApp, 3 * time.Second, false,
		},
		{
			"spam rate limit", sim.Faults{Throttle: 1, ThrottleCode: graph.CodeSpamRateLimit},
			graph.CodeSpamRateLimit, graph.ClassThrottled, graph.ScopeSpam, time.Second, false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, sim.Config{})
			tc.faults.Endpoints, tc.faults.Limit = []string{sim.EndpointCreateGroup}, 1
			if err := b.sim.SetFaults(tc.faults); err != nil {
				t.Fatal(err)
			}
			_, err := b.client.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: "faulty"})
			ge := graphErr(t, err, tc.code, tc.class)
			if ge.Scope() != tc.scope {
				t.Errorf("scope = %q, want %q", ge.Scope(), tc.scope)
			}
			if tc.retry != 0 && ge.RetryAfter != tc.retry {
				t.Errorf("RetryAfter = %s, want %s", ge.RetryAfter, tc.retry)
			}
			if graph.IsAmbiguous(err) != tc.ambiguous {
				t.Errorf("IsAmbiguous = %v, want %v", graph.IsAmbiguous(err), tc.ambiguous)
			}
			x := b.observed()
			if len(x) != 1 || x[0].endpoint != graph.EndpointCreateGroup || x[0].status != ge.HTTPStatus || x[0].code != tc.code {
				t.Errorf("OnResponse saw %+v", x)
			}
			// The fault was the only one: the retry goes through.
			if _, err := b.client.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: "faulty"}); err != nil {
				t.Errorf("retry: %v", err)
			}
		})
	}
}

// TestAmbiguity checks what IsAmbiguous says about failures where the
// request may or may not have reached Meta.
func TestAmbiguity(t *testing.T) {
	t.Parallel()
	t.Run("Lost answer after the group was created", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{})
		if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointCreateGroup}, Limit: 1, LostResponse: 1}); err != nil {
			t.Fatal(err)
		}
		_, err := b.client.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: "maybe"})
		if err == nil || !graph.IsAmbiguous(err) || graph.ClassOf(err) != graph.ClassTransient {
			t.Fatalf("lost answer: %v (ambiguous %v, class %s), want an ambiguous transient error", err, graph.IsAmbiguous(err), graph.ClassOf(err))
		}
		if n := len(b.sim.State().Numbers[0].Groups); n != 1 {
			t.Errorf("groups in the simulator = %d, want 1: the lost call did create one", n)
		}
		if x := b.observed(); len(x) != 1 || x[0].status != 0 {
			t.Errorf("OnResponse saw %+v, want one exchange with status 0", x)
		}
	})
	t.Run("Timeout after the request was written", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{})
		if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointCreateGroup}, Limit: 1, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
		// The deadline passes as the request is written, however loaded the
		// machine (a short Config.Timeout could pass while dialling, which is
		// not ambiguous). The client's own trace hook runs before this one.
		ctx, expire := context.WithCancelCause(t.Context())
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(info httptrace.WroteRequestInfo) {
				if info.Err == nil {
					expire(context.DeadlineExceeded)
				}
			},
		})
		_, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "slow"})
		if !errors.Is(err, context.DeadlineExceeded) || !graph.IsAmbiguous(err) || graph.ClassOf(err) != graph.ClassTransient {
			t.Fatalf("timeout: %v, want an ambiguous transient DeadlineExceeded", err)
		}
	})
	t.Run("Timeout bounds a call Graph holds", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{}, func(c *graph.Config) { c.Timeout = 50 * time.Millisecond })
		if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointCreateGroup}, Limit: 1, Timeout: 1}); err != nil {
			t.Fatal(err)
		}
		// The simulator holds the call until the client leaves: whether the
		// 50 ms pass before or after the request is written, the call ends
		// with them.
		_, err := b.client.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: "slow"})
		if !errors.Is(err, context.DeadlineExceeded) || graph.ClassOf(err) != graph.ClassTransient {
			t.Fatalf("timeout: %v, want a transient DeadlineExceeded", err)
		}
	})
	t.Run("Connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		c, err := graph.New(graph.Config{BaseURL: "http://" + addr, AccessToken: testToken})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.CreateGroup(t.Context(), phone, graph.CreateGroupRequest{Subject: "x"})
		if err == nil || graph.IsAmbiguous(err) || graph.ClassOf(err) != graph.ClassTransient {
			t.Fatalf("refused: %v (ambiguous %v), want a transient error that is not ambiguous", err, graph.IsAmbiguous(err))
		}
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("error holds the token: %v", err)
		}
	})
	t.Run("Context cancelled before sending", func(t *testing.T) {
		t.Parallel()
		b := setup(t, sim.Config{})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "x"})
		if !errors.Is(err, context.Canceled) || graph.IsAmbiguous(err) {
			t.Fatalf("cancelled: %v, want context.Canceled, not ambiguous", err)
		}
		if n := len(b.sim.Calls()); n != 0 {
			t.Errorf("the simulator saw %d calls", n)
		}
	})
}

// TestTokenNeverInErrors provokes every kind of failure, including answers
// that echo the token, and looks for the token in each error's text.
func TestTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Config{AccessToken: testToken})
	t.Cleanup(s.Close)
	// A proxy in front of the simulator that misbehaves on two paths.
	// A failed write to w shows up as the client's error, which is checked.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v23.0/echo":
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":{"message":"token %s rejected","code":190,"error_data":{"details":"%s"},"error_user_msg":"%s"}}`, tok, tok, tok)
		case "/v23.0/echo5xx":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = fmt.Fprint(w, "<html>upstream said "+r.Header.Get("Authorization")+"</html>")
		case "/v23.0/garbled/groups":
			_, _ = fmt.Fprint(w, "{not json")
		default:
			s.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	c, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: testToken, HTTPClient: &http.Client{Transport: tr}, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: testToken + "-wrong", HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var errs []error
	collect := func(_ any, err error) { errs = append(errs, err) }

	collect(c.GroupInfo(ctx, "echo"))
	collect(c.GroupInfo(ctx, "echo5xx"))
	collect(c.CreateGroup(ctx, "garbled", graph.CreateGroupRequest{Subject: "x"}))
	collect(wrong.ListGroups(ctx, phone, graph.PageOptions{}))
	for _, f := range []sim.Faults{{Timeout: 1}, {LostResponse: 1}} {
		f.Endpoints, f.Limit = []string{sim.EndpointCreateGroup}, 1
		if err := s.SetFaults(f); err != nil {
			t.Fatal(err)
		}
		collect(c.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "x"}))
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	refused, err := graph.New(graph.Config{BaseURL: closed.URL, AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	collect(refused.InviteLink(ctx, "g"))

	for i, err := range errs {
		if err == nil {
			t.Errorf("call %d succeeded, want a failure", i)
			continue
		}
		for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(text, testToken) {
				t.Errorf("call %d: token in error text %q", i, text)
			}
		}
	}
	var ge *graph.Error
	if errors.As(errs[0], &ge) && (ge.Code != graph.CodeAccessTokenExpired || !strings.Contains(ge.Message, "[redacted]")) {
		t.Errorf("echoed token error = %+v", ge)
	}
	if !errors.Is(errs[2], graph.ErrMalformedResponse) || !graph.IsAmbiguous(errs[2]) {
		t.Errorf("garbled 200: %v, want an ambiguous ErrMalformedResponse", errs[2])
	}
	wantGraphErr(t, errs[3], graph.CodeAccessTokenExpired, graph.ClassCredentials)
}

func BenchmarkClientAgainstSimulator(b *testing.B) {
	s := sim.New(sim.Config{GroupOpsPerSecond: -1, MPS: -1})
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	defer tr.CloseIdleConnections()
	c, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "bench"}); err != nil {
		b.Fatal(err)
	}
	page, err := c.ListGroups(ctx, phone, graph.PageOptions{Limit: 1})
	if err != nil || len(page.Groups) != 1 {
		b.Fatalf("ListGroups: %+v, %v", page, err)
	}
	gid := page.Groups[0].ID
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.InviteLink(ctx, gid); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// TestARefusalWith5xxIsNotAmbiguous: Graph sends some refusals, such as the
// capability error 3, with HTTP 500. A permanent code says the call was
// refused, so a send must not be reported as possibly made (outcome_unknown),
// while a 5xx with a transient code, or none, still may have been executed.
func TestARefusalWith5xxIsNotAmbiguous(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		switch r.URL.Path {
		case "/v23.0/capability/messages":
			_, _ = fmt.Fprint(w, `{"error":{"message":"(#3) Application does not have the capability to make this API call.","type":"OAuthException","code":3,"fbtrace_id":"x"}}`)
		default:
			_, _ = fmt.Fprint(w, `{"error":{"message":"Something went wrong","code":131000,"fbtrace_id":"y"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	tpl := graph.TemplateRef{Name: "group_invite_link", Language: "en_US"}
	_, err = c.SendGroupInvite(t.Context(), "capability", "15550001", "g", tpl)
	wantGraphErr(t, err, 3, graph.ClassPermanent)
	if graph.IsAmbiguous(err) {
		t.Errorf("a refusal with code 3 and HTTP 500 is reported as possibly executed: %v", err)
	}
	_, err = c.SendGroupInvite(t.Context(), "other", "15550001", "g", tpl)
	wantGraphErr(t, err, graph.CodeSendUnknown, graph.ClassTransient)
	if !graph.IsAmbiguous(err) {
		t.Errorf("a 131000 with HTTP 500 is reported as certainly not executed: %v", err)
	}
}

// TestRedirectsAreNotFollowed: Graph answers every call itself, so a
// redirect comes from something else (a proxy, a captured DNS name, a
// misconfigured GRAPH_API_BASE_URL). Go's client follows it and keeps the
// Authorization header for any port of the same host name and for its
// subdomains: the access token went wherever the Location pointed. The
// client refuses to follow, whatever http.Client it was given.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	var leaked sync.Map // method and path → the Authorization header that reached it
	t.Cleanup(func() {
		leaked.Range(func(k, v any) bool {
			t.Errorf("%s reached the redirect's target with Authorization %q", k, v)
			return true
		})
	})
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Method+" "+r.URL.Path, r.Header.Get("Authorization"))
		_, _ = fmt.Fprint(w, `{"messaging_product":"whatsapp","invite_link":"https://chat.whatsapp.com/elsewhere","request_id":"r"}`)
	}))
	t.Cleanup(elsewhere.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusFound
		if r.Method != http.MethodGet {
			code = http.StatusTemporaryRedirect // keeps the method and body
		}
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, code)
	}))
	t.Cleanup(redirector.Close)

	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	for name, hc := range map[string]*http.Client{"a client of the caller's": {Transport: tr}, "the default client": nil} {
		c, err := graph.New(graph.Config{BaseURL: redirector.URL, AccessToken: testToken, HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.InviteLink(t.Context(), "group-1")
		ge := graphErr(t, err, 0, graph.ClassPermanent)
		if ge.HTTPStatus != http.StatusFound {
			t.Errorf("%s: GET answered with a redirect: HTTP status %d, want 302", name, ge.HTTPStatus)
		}
		_, err = c.ResetInviteLink(t.Context(), "group-1")
		if ge := graphErr(t, err, 0, graph.ClassPermanent); ge.HTTPStatus != http.StatusTemporaryRedirect || graph.IsAmbiguous(err) {
			t.Errorf("%s: POST answered with a redirect: HTTP status %d, ambiguous %v; want 307, not ambiguous", name, ge.HTTPStatus, graph.IsAmbiguous(err))
		}
	}
}

func TestAccountPhoneNumbers(t *testing.T) {
	t.Parallel()
	const other, otherWABA = "106540352242923", "100000000000002"
	b := setup(t, sim.Config{Accounts: map[string]string{other: otherWABA}})
	ctx := t.Context()
	if _, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "Used"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		waba string
		want []string
	}{
		{sim.DefaultWABAID, []string{phone}}, // a number not configured is listed once used
		{otherWABA, []string{other}},         // a configured number before any use
	} {
		got, err := b.client.AccountPhoneNumbers(ctx, c.waba)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("AccountPhoneNumbers(%s) = %v, %v; want %v", c.waba, got, err, c.want)
		}
	}
	_, err := b.client.AccountPhoneNumbers(ctx, "100000000000999")
	if ge := graphErr(t, err, graph.CodeInvalidParameter, graph.ClassPermanent); ge.Subcode != 33 {
		t.Errorf("unknown account error = %+v, want 100/33", ge)
	}
	if _, err := b.client.AccountPhoneNumbers(ctx, ""); !errors.Is(err, graph.ErrInvalidArgument) {
		t.Errorf("empty account: %v, want ErrInvalidArgument", err)
	}
}
