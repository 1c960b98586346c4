package jobs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
)

// newGroup creates a group in the simulator directly and returns its
// state (id, invite link). It is recorded as the number's at once, as its
// group_create webhook will have it: a command sent before a worker has
// processed the webhook would otherwise list the number's groups first
// (see groupElsewhere), a call the tests of other things do not expect.
func (s *stack) newGroup(t testing.TB, subject, mode string) sim.GroupState {
	t.Helper()
	if _, err := s.graph.CreateGroup(context.Background(), phone, graph.CreateGroupRequest{Subject: subject, JoinApprovalMode: mode}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	for _, n := range s.sim.State().Numbers {
		for _, g := range n.Groups {
			if g.Subject == subject && !g.Deleted {
				s.knownAs(t, g.ID, phone)
				return g
			}
		}
	}
	t.Fatalf("group %q not in the simulator", subject)
	return sim.GroupState{}
}

// knownAs records groupID as number's group, as a webhook of the group does.
func (s *stack) knownAs(t testing.TB, groupID, number string) {
	t.Helper()
	if err := jobs.NewOwners(s.kv(t, s.names.OwnerBucket())).Learn(context.Background(), groupID, number); err != nil {
		t.Fatal(err)
	}
}

// joinRequests has n users ask to join an approval_required group.
func (s *stack) joinRequests(t testing.TB, g sim.GroupState, waIDs ...string) []string {
	t.Helper()
	var ids []string
	for _, wa := range waIDs {
		r, err := s.sim.Join(wa, g.InviteLink)
		if err != nil {
			t.Fatalf("join %s: %v", wa, err)
		}
		ids = append(ids, r.JoinRequestID)
	}
	return ids
}

func (s *stack) members(t testing.TB, g sim.GroupState, waIDs ...string) {
	t.Helper()
	for _, wa := range waIDs {
		if _, err := s.sim.Join(wa, g.InviteLink); err != nil {
			t.Fatalf("join %s: %v", wa, err)
		}
	}
}

func wantOutcome(t testing.TB, r events.CommandResult, want string) {
	t.Helper()
	if r.Outcome != want {
		t.Fatalf("command %s: outcome %s (error %+v, items %+v), want %s", r.CommandID, r.Outcome, r.Error, r.Items, want)
	}
}

// itemsByID returns r's item outcomes by item id.
func itemsByID(r events.CommandResult) map[string]events.ItemOutcome {
	out := make(map[string]events.ItemOutcome, len(r.Items))
	for _, it := range r.Items {
		out[it.ID] = it
	}
	return out
}

// wantFailure fails the test unless r is command.failed for reason.
func wantFailure(t testing.TB, r events.CommandResult, reason string) {
	t.Helper()
	wantOutcome(t, r, events.OutcomeFailed)
	if r.Error == nil || r.Error.Reason != reason {
		t.Fatalf("command %s: error %+v, want %s", r.CommandID, r.Error, reason)
	}
}

func TestCreateGroup(t *testing.T) {
	t.Parallel()

	t.Run("completes through its webhook", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		s.publish(t, command("create-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Watch club"}))
		r := s.terminal(t, "create-1")
		wantOutcome(t, r, events.OutcomeSucceeded)
		var res events.CreateGroupResult
		if err := json.Unmarshal(r.Result, &res); err != nil || res.GroupID == "" || res.InviteLink == "" || res.RequestID == "" {
			t.Fatalf("result = %s, want group id, invite link and request id", r.Result)
		}
		if g, ok := s.sim.Group(res.GroupID); !ok || g.Subject != "Watch club" {
			t.Fatalf("simulator group %s = %+v, %v; want subject Watch club", res.GroupID, g, ok)
		}
		s.events.WaitFor(t, "group.created", func() bool {
			return len(s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventGroupCreated })) == 1
		})
	})

	t.Run("a transient error in its webhook runs it again, and one group is created", func(t *testing.T) {
		t.Parallel()
		// 131000 in the group_create webhook: Meta created nothing this time.
		s := setup(t, func(o *stackOpts) { o.sim.Faults = sim.Faults{AsyncFailure: 1, Limit: 1} })
		s.startWorker(t)
		s.publish(t, command("create-2", events.CreateGroup, "", events.CreateGroupParams{Subject: "Second time lucky"}))
		r := s.terminal(t, "create-2")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointCreateGroup); n != 2 {
			t.Fatalf("%d create calls, want 2: the failed one and its retry", n)
		}
		if n := s.groupsWithSubject("Second time lucky"); n != 1 {
			t.Fatalf("%d groups with the subject, want 1", n)
		}
		s.events.WaitFor(t, "group.create_failed", func() bool {
			return len(s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventGroupCreateFailed })) == 1
		})
	})

	t.Run("a transient error in every webhook ends in the DLQ with retries exhausted", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.sim.Faults = sim.Faults{AsyncFailure: 1} })
		s.startWorker(t)
		s.publish(t, command("create-doomed", events.CreateGroup, "", events.CreateGroupParams{Subject: "Doomed"}))
		r := s.terminal(t, "create-doomed")
		wantFailure(t, r, events.ReasonRetriesExhausted)
		if r.Error.Code != 131000 {
			t.Fatalf("error = %+v, want code 131000", r.Error)
		}
		if n := s.calls(sim.EndpointCreateGroup); n != 4 {
			t.Fatalf("%d create calls, want 4 (MaxDeliver)", n)
		}
		// Each run waits longer for Meta to recover: 1 s, 2 s, 4 s (the
		// stream releases a scheduled copy at its time or later).
		var at []time.Time
		for _, c := range s.sim.Calls() {
			if c.Endpoint == sim.EndpointCreateGroup {
				at = append(at, c.Time)
			}
		}
		for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			if gap := at[i+1].Sub(at[i]); gap < want {
				t.Errorf("run %d came %v after the one before, want at least %v", i+2, gap, want)
			}
		}
		if n := s.groupsWithSubject("Doomed"); n != 0 {
			t.Fatalf("%d groups with the subject, want none", n)
		}
		if dl := s.deadLetters(t, 1)[0]; dl.CommandID != "create-doomed" || dl.Reason != events.ReasonRetriesExhausted {
			t.Fatalf("dead letter = %+v, want create-doomed, retries_exhausted", dl)
		}
	})

	t.Run("permanent error from the call", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		if err := s.sim.SetNumber(phone, sim.NumberSettings{Ineligible: true}); err != nil {
			t.Fatal(err)
		}
		s.startWorker(t)
		s.publish(t, command("create-3", events.CreateGroup, "", events.CreateGroupParams{Subject: "Nope"}))
		r := s.terminal(t, "create-3")
		wantOutcome(t, r, events.OutcomeFailed)
		if r.Error.Code != 131215 || r.Error.Reason != events.ReasonPermanentError {
			t.Fatalf("error = %+v, want permanent_error 131215", r.Error)
		}
		if n := s.calls(sim.EndpointCreateGroup); n != 1 {
			t.Fatalf("%d create calls, want 1 (permanent errors are not retried)", n)
		}
	})

	t.Run("5xx is not repeated blindly yet creates exactly one group", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Status5xx: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}}
		})
		s.startWorker(t, func(c *jobs.Config) { c.ReconcileGrace = 300 * time.Millisecond })
		s.publish(t, command("create-4", events.CreateGroup, "", events.CreateGroupParams{Subject: "Second try"}))
		r := s.terminal(t, "create-4")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if n := s.groupsWithSubject("Second try"); n != 1 {
			t.Fatalf("%d groups with the subject, want 1", n)
		}
		if r.Attempts < 2 {
			t.Fatalf("attempts = %d, want at least 2", r.Attempts)
		}
	})

	t.Run("no second attempt after the deadline", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Status5xx: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}}
		})
		s.startWorker(t, func(c *jobs.Config) { c.ReconcileGrace = 300 * time.Millisecond })
		c := command("create-6", events.CreateGroup, "", events.CreateGroupParams{Subject: "Deadline"})
		dl := time.Now().Add(200 * time.Millisecond)
		c.Deadline = &dl
		s.publish(t, c)
		r := s.terminal(t, "create-6")
		wantFailure(t, r, events.ReasonExpired)
		if n := s.calls(sim.EndpointCreateGroup); n != 1 {
			t.Fatalf("%d create calls, want only the first", n)
		}
	})

	t.Run("lost answer is reconciled by finding the group", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}}
		})
		s.startWorker(t)
		s.publish(t, command("create-5", events.CreateGroup, "", events.CreateGroupParams{Subject: "Lost answer"}))
		r := s.terminal(t, "create-5")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointCreateGroup); n != 1 {
			t.Fatalf("%d create calls, want 1: the lost create must be found, not repeated", n)
		}
		if n := s.groupsWithSubject("Lost answer"); n != 1 {
			t.Fatalf("%d groups with the subject, want 1", n)
		}
		if r.GroupID == "" {
			t.Fatal("no group id in the adopted result")
		}
	})
}

func (s *stack) groupsWithSubject(subject string) int {
	n := 0
	for _, num := range s.sim.State().Numbers {
		for _, g := range num.Groups {
			if g.Subject == subject && !g.Deleted {
				n++
			}
		}
	}
	return n
}

func TestDeleteGroup(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "To delete", "")
	s.publish(t, command("del-1", events.DeleteGroup, g.ID, nil))
	wantOutcome(t, s.terminal(t, "del-1"), events.OutcomeSucceeded)
	if st, _ := s.sim.Group(g.ID); !st.Deleted {
		t.Fatal("group not deleted in the simulator")
	}
	s.events.WaitFor(t, "group.deleted", func() bool {
		return len(s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventGroupDeleted })) == 1
	})

	s.publish(t, command("del-2", events.DeleteGroup, g.ID, nil))
	r := s.terminal(t, "del-2")
	wantOutcome(t, r, events.OutcomeFailed)
	if r.Error.Code != graph.CodeGroupUnknown {
		t.Fatalf("deleting a deleted group: error %+v, want code 131041", r.Error)
	}

	// 131000 in the group_delete webhook: the group is still there.
	g = s.newGroup(t, "To delete later", "")
	if err := s.sim.SetFaults(sim.Faults{AsyncFailure: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("del-3", events.DeleteGroup, g.ID, nil))
	wantOutcome(t, s.terminal(t, "del-3"), events.OutcomeSucceeded)
	if st, _ := s.sim.Group(g.ID); !st.Deleted {
		t.Fatal("group not deleted in the simulator after the transient failure")
	}
}

func squareJPEG(t testing.TB, side int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for i := range side {
		img.Set(i, i, color.RGBA{R: 200, A: 255})
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestUpdateGroupSettings(t *testing.T) {
	t.Parallel()

	t.Run("subject, description and picture", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Old subject", "")
		s.publish(t, command("set-1", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
			Subject: ptr("New subject"), Description: ptr("About watches"),
			ProfilePicture: &events.Picture{MediaBase64: squareJPEG(t, 200)},
		}))
		wantOutcome(t, s.terminal(t, "set-1"), events.OutcomeSucceeded)
		st, _ := s.sim.Group(g.ID)
		if st.Subject != "New subject" || st.Description != "About watches" || st.PictureSHA256 == "" {
			t.Fatalf("simulator group = %+v, want the new subject, description and a picture", st)
		}
	})

	t.Run("a refused picture is a partial success", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Pictures", "")
		s.publish(t, command("set-2", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
			Subject: ptr("Renamed"), ProfilePicture: &events.Picture{MediaBase64: squareJPEG(t, 100)},
		}))
		r := s.terminal(t, "set-2")
		wantOutcome(t, r, events.OutcomePartiallySucceeded)
		if len(r.Items) != 1 || r.Items[0].ID != "profile_picture" || r.Items[0].Outcome != events.ItemFailed || r.Items[0].Code != 131210 {
			t.Fatalf("items = %+v, want the picture failed with 131210", r.Items)
		}
		if st, _ := s.sim.Group(g.ID); st.Subject != "Renamed" {
			t.Fatalf("subject = %q, want Renamed", st.Subject)
		}
	})

	t.Run("a picture given by URL is fetched and set", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		// The test's server is on a loopback address, which the
		// worker's own client refuses (next subtest): a plain client.
		s.startWorker(t, func(c *jobs.Config) { c.HTTPClient = &http.Client{Timeout: 5 * time.Second} })
		jpg, _ := base64.StdEncoding.DecodeString(squareJPEG(t, 200))
		cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "image/jpeg")
			_, _ = w.Write(jpg)
		}))
		t.Cleanup(cdn.Close)
		g := s.newGroup(t, "Pictured", "")
		s.publish(t, command("set-url", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
			ProfilePicture: &events.Picture{URL: cdn.URL + "/shop/logo.jpg"},
		}))
		wantOutcome(t, s.terminal(t, "set-url"), events.OutcomeSucceeded)
		sum := sha256.Sum256(jpg)
		if st, _ := s.sim.Group(g.ID); st.PictureSHA256 != base64.StdEncoding.EncodeToString(sum[:]) {
			t.Fatalf("group picture %q, want the fetched JPEG's", st.PictureSHA256)
		}
	})

	t.Run("a picture URL of an internal address is not fetched", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t) // its default picture client, as cmd/worker's
		// A service only the worker's network reaches (a metadata
		// endpoint, a NATS monitor, an admin API), answering a JPEG: the
		// worker fetched it and made it the group's picture, and a failed
		// fetch said in the command's event why (a refused port, HTTP 404).
		var fetched atomic.Int32
		jpg, _ := base64.StdEncoding.DecodeString(squareJPEG(t, 200))
		internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fetched.Add(1)
			_, _ = w.Write(jpg)
		}))
		t.Cleanup(internal.Close)
		g := s.newGroup(t, "Pictures", "")
		s.publish(t, command("set-ssrf", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
			ProfilePicture: &events.Picture{URL: internal.URL + "/latest/meta-data/iam"},
		}))
		r := s.terminal(t, "set-ssrf")
		if n := fetched.Load(); n != 0 {
			t.Errorf("the internal address was fetched %d times", n)
		}
		if st, _ := s.sim.Group(g.ID); st.PictureSHA256 != "" {
			t.Errorf("the group got the internal answer as its picture")
		}
		if len(r.Items) != 1 || r.Items[0].Outcome != events.ItemFailed || !strings.Contains(r.Items[0].Reason, "not a public address") {
			t.Errorf("items %+v, want the picture failed, its URL's address not public", r.Items)
		}
	})

	t.Run("a throttle in its webhook (131208) runs it again", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Throttled", "")
		if err := s.sim.SetFaults(sim.Faults{AsyncFailure: 1, Limit: 1}); err != nil {
			t.Fatal(err)
		}
		s.publish(t, command("set-3", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
			Subject: ptr("Renamed at last"), Description: ptr("Patience"),
		}))
		wantOutcome(t, s.terminal(t, "set-3"), events.OutcomeSucceeded)
		if st, _ := s.sim.Group(g.ID); st.Subject != "Renamed at last" || st.Description != "Patience" {
			t.Fatalf("simulator group = %+v, want the new subject and description", st)
		}
	})
}

// TestCopiesCannotBeShadowedByACallersID: the copies a worker publishes to
// the command stream (run again, re-queued, parked) had message ids of the
// command id alphabet, "<id>:again::0" and the like, so a caller knowing
// another's command id could send a command under that id first (over
// POST /v1/commands, whose message id is the command's id): the
// stream dropped the worker's copy as its duplicate, the worker took the
// drop for a publish, and the other command never ran again nor ended.
func TestCopiesCannotBeShadowedByACallersID(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "Shadowed", "")
	s.publish(t, command("victim:again::0", events.GetInviteLink, g.ID, nil))
	wantOutcome(t, s.terminal(t, "victim:again::0"), events.OutcomeSucceeded)
	if err := s.sim.SetFaults(sim.Faults{AsyncFailure: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("victim", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{Subject: ptr("Renamed")}))
	wantOutcome(t, s.terminal(t, "victim"), events.OutcomeSucceeded)
}

func TestInviteLinks(t *testing.T) {
	t.Parallel()

	t.Run("get and reset", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Links", "")
		s.publish(t, command("link-1", events.GetInviteLink, g.ID, nil))
		var got events.InviteLinkResult
		r := s.terminal(t, "link-1")
		wantOutcome(t, r, events.OutcomeSucceeded)
		_ = json.Unmarshal(r.Result, &got)
		if got.InviteLink != g.InviteLink {
			t.Fatalf("link = %q, want %q", got.InviteLink, g.InviteLink)
		}
		s.publish(t, command("link-2", events.ResetInviteLink, g.ID, nil))
		r = s.terminal(t, "link-2")
		wantOutcome(t, r, events.OutcomeSucceeded)
		_ = json.Unmarshal(r.Result, &got)
		if st, _ := s.sim.Group(g.ID); got.InviteLink == g.InviteLink || got.InviteLink != st.InviteLink {
			t.Fatalf("reset link = %q; old %q, current %q", got.InviteLink, g.InviteLink, st.InviteLink)
		}
	})

	t.Run("transient errors are retried in process on reads", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Code2: 1, Limit: 2, Endpoints: []string{sim.EndpointGetInviteLink}}
		})
		s.startWorker(t)
		g := s.newGroup(t, "Flaky", "")
		s.publish(t, command("link-3", events.GetInviteLink, g.ID, nil))
		r := s.terminal(t, "link-3")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if r.Attempts != 1 || s.calls(sim.EndpointGetInviteLink) != 3 {
			t.Fatalf("attempts %d, calls %d; want 1 delivery and 3 calls", r.Attempts, s.calls(sim.EndpointGetInviteLink))
		}
	})

	t.Run("a lost reset is answered by reading the link", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointResetInviteLink}}
		})
		s.startWorker(t)
		g := s.newGroup(t, "Lost reset", "")
		s.publish(t, command("link-4", events.ResetInviteLink, g.ID, nil))
		r := s.terminal(t, "link-4")
		wantOutcome(t, r, events.OutcomeSucceeded)
		var got events.InviteLinkResult
		_ = json.Unmarshal(r.Result, &got)
		st, _ := s.sim.Group(g.ID)
		if got.InviteLink != st.InviteLink || got.InviteLink == g.InviteLink {
			t.Fatalf("link %q, current %q, original %q: want the link the lost reset made", got.InviteLink, st.InviteLink, g.InviteLink)
		}
		if n := s.calls(sim.EndpointResetInviteLink); n != 1 {
			t.Fatalf("%d resets, want 1", n)
		}
	})

	// A reset that timed out without effect must not be reported done with
	// the old link, which would stay valid (perhaps leaked: why reset it).
	t.Run("a reset that never happened is made again", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Timeout: 1, Limit: 1, Endpoints: []string{sim.EndpointResetInviteLink}}
		})
		s.startWorker(t)
		g := s.newGroup(t, "Timed out reset", "")
		s.publish(t, command("link-6", events.ResetInviteLink, g.ID, nil))
		r := s.terminalWithin(t, "link-6", 30*time.Second)
		wantOutcome(t, r, events.OutcomeSucceeded)
		var got events.InviteLinkResult
		_ = json.Unmarshal(r.Result, &got)
		st, _ := s.sim.Group(g.ID)
		if got.InviteLink == g.InviteLink || got.InviteLink != st.InviteLink {
			t.Fatalf("link %q, current %q, original %q: want a new link, the current one", got.InviteLink, st.InviteLink, g.InviteLink)
		}
		if n := s.calls(sim.EndpointResetInviteLink); n != 2 {
			t.Fatalf("%d resets, want 2: the one without effect, then one that worked", n)
		}
	})

	t.Run("permanent error", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		// A group groupflow knows as the number's that Graph does not
		// know (any more): Graph's 131041.
		s.knownAs(t, "Y2FwaV9ncm91cDpub3RoZXJl", phone)
		s.publish(t, command("link-5", events.GetInviteLink, "Y2FwaV9ncm91cDpub3RoZXJl", nil))
		r := s.terminal(t, "link-5")
		wantOutcome(t, r, events.OutcomeFailed)
		if r.Error.Reason != events.ReasonPermanentError || r.Error.Code == 0 {
			t.Fatalf("error = %+v, want a permanent Graph error", r.Error)
		}
	})
}

func TestJoinRequests(t *testing.T) {
	t.Parallel()

	t.Run("approve by id", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Approvals", graph.JoinApprovalRequired)
		ids := s.joinRequests(t, g, "15550000001", "15550000002")
		s.publish(t, command("appr-1", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
		r := s.terminal(t, "appr-1")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if len(r.Items) != 2 || r.Items[0].Outcome != events.ItemApproved || r.Items[1].Outcome != events.ItemApproved {
			t.Fatalf("items = %+v, want both approved", r.Items)
		}
		if st, _ := s.sim.Group(g.ID); len(st.Participants) != 2 {
			t.Fatalf("participants = %v, want 2", st.Participants)
		}
	})

	t.Run("partial success reports each item", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Partial", graph.JoinApprovalRequired)
		ids := s.joinRequests(t, g, "15550000011", "15550000012")
		if err := s.sim.SetTOS("15550000012", false); err != nil {
			t.Fatal(err)
		}
		s.publish(t, command("appr-2", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true}))
		r := s.terminal(t, "appr-2")
		wantOutcome(t, r, events.OutcomePartiallySucceeded)
		byID := itemsByID(r)
		if byID[ids[0]].Outcome != events.ItemApproved || byID[ids[1]].Outcome != events.ItemFailed || byID[ids[1]].Code != graph.CodeTermsNotAccepted {
			t.Fatalf("items = %+v, want %s approved and %s failed with 131203", r.Items, ids[0], ids[1])
		}
	})

	t.Run("reject all pending", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t)
		g := s.newGroup(t, "Rejections", graph.JoinApprovalRequired)
		s.joinRequests(t, g, "15550000021", "15550000022", "15550000023")
		s.publish(t, command("rej-1", events.RejectJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true}))
		r := s.terminal(t, "rej-1")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if len(r.Items) != 3 {
			t.Fatalf("items = %+v, want 3 rejected", r.Items)
		}
		if st, _ := s.sim.Group(g.ID); len(st.JoinRequests) != 0 || len(st.Participants) != 0 {
			t.Fatalf("group = %+v, want no requests and no participants", st)
		}
	})

	t.Run("throttled, then retried after the suggested delay", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: graph.CodeGroupRateLimit,
				ThrottleRetryAfter: 200 * time.Millisecond, Endpoints: []string{sim.EndpointApproveJoin}}
		})
		s.startWorker(t)
		g := s.newGroup(t, "Throttled", graph.JoinApprovalRequired)
		ids := s.joinRequests(t, g, "15550000031")
		s.publish(t, command("appr-3", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
		r := s.terminal(t, "appr-3")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if r.Attempts != 2 {
			t.Fatalf("attempts = %d, want 2 (one throttled delivery, one success)", r.Attempts)
		}
	})

	// A call whose answer was lost is retried; Graph then no longer knows
	// the request (131213). The requester's state tells that the lost call
	// did it: a participant after an approval, neither pending nor in the
	// group after a rejection (DESIGN §5).
	for _, tc := range []struct{ name, typ, endpoint, done string }{
		{"lost approval counts as done when the user is a participant", events.ApproveJoinRequests, sim.EndpointApproveJoin, events.ItemApproved},
		{"lost rejection counts as done when the user is neither pending nor a participant", events.RejectJoinRequests, sim.EndpointRejectJoin, events.ItemRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, func(o *stackOpts) {
				o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{tc.endpoint}}
			})
			s.startWorker(t)
			g := s.newGroup(t, "Lost answer", graph.JoinApprovalRequired)
			ids := s.joinRequests(t, g, "15550000041")
			s.publish(t, command("lost-4", tc.typ, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
			r := s.terminal(t, "lost-4")
			wantOutcome(t, r, events.OutcomeSucceeded)
			if len(r.Items) != 1 || r.Items[0].Outcome != tc.done {
				t.Fatalf("items = %+v, want %s", r.Items, tc.done)
			}
			if n := s.calls(tc.endpoint); n != 2 {
				t.Fatalf("%d %s calls, want 2: the lost one and its retry", n, tc.endpoint)
			}
		})
	}
}

func TestRemoveParticipants(t *testing.T) {
	t.Parallel()

	t.Run("in chunks, completed by every chunk's webhook", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.sim.Faults = sim.Faults{WebhookDuplicate: 1, WebhookReorder: 0.5} })
		s.startWorker(t)
		g := s.newGroup(t, "Crowd", "")
		var members []string
		for i := range 8 {
			members = append(members, fmt.Sprintf("1555000010%d", i))
		}
		s.members(t, g, members...)
		// Ten names, two of them strangers: two chunks (8 + 2).
		names := append(slices.Clone(members[:6]), "15559999901", "15559999902", members[6], members[7])
		s.publish(t, command("rm-1", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: names}))
		r := s.terminal(t, "rm-1")
		wantOutcome(t, r, events.OutcomePartiallySucceeded)
		got := itemsByID(r)
		for _, m := range members {
			if got[m].Outcome != events.ItemRemoved {
				t.Errorf("%s: %+v, want removed", m, got[m])
			}
		}
		for _, x := range []string{"15559999901", "15559999902"} {
			if got[x].Outcome != events.ItemFailed || got[x].Code != graph.CodeParticipantNotInGroup {
				t.Errorf("%s: %+v, want failed with 131212", x, got[x])
			}
		}
		if n := s.calls(sim.EndpointRemoveParticipant); n != 2 {
			t.Errorf("%d removal calls, want 2 chunks", n)
		}
		// Duplicated webhooks: still exactly one terminal event.
		time.Sleep(100 * time.Millisecond)
		if n := len(s.events.Terminals("rm-1")); n != 1 {
			t.Fatalf("%d terminal events, want 1", n)
		}
	})

	t.Run("a removal whose webhook never comes times out", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		s.startWorker(t, func(c *jobs.Config) { c.WebhookTimeout, c.SweepInterval = 300*time.Millisecond, 50*time.Millisecond })
		g := s.newGroup(t, "Silent", "")
		s.members(t, g, "15550000201")
		s.sim.SetWebhookURL("")
		s.publish(t, command("rm-2", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000201"}}))
		r := s.terminal(t, "rm-2")
		wantFailure(t, r, events.ReasonWebhookTimeout)
	})
}

func TestEnsureInviteTemplate(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	p := events.EnsureInviteTemplateParams{WABAID: sim.DefaultWABAID, Name: "my_group_invite", Language: "en"}
	s.publish(t, command("tpl-1", events.EnsureInviteTemplate, "", p))
	r := s.terminal(t, "tpl-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	var res events.EnsureInviteTemplateResult
	_ = json.Unmarshal(r.Result, &res)
	if !res.Created || res.Name != p.Name || res.Status == "" || res.TemplateID == "" {
		t.Fatalf("first result = %+v, want created", res)
	}
	s.publish(t, command("tpl-2", events.EnsureInviteTemplate, "", p))
	r = s.terminal(t, "tpl-2")
	wantOutcome(t, r, events.OutcomeSucceeded)
	var again events.EnsureInviteTemplateResult
	_ = json.Unmarshal(r.Result, &again)
	if again.Created || again.TemplateID != res.TemplateID {
		t.Fatalf("second result = %+v, want the same template, not created", again)
	}
	if n := s.calls(sim.EndpointCreateTemplate); n != 1 {
		t.Fatalf("%d template creations, want 1", n)
	}
}

func TestSendGroupInvite(t *testing.T) {
	t.Parallel()
	invite := func(g sim.GroupState, to, onAmbiguous string) events.SendGroupInviteParams {
		return events.SendGroupInviteParams{To: to, GroupID: g.ID, OnAmbiguous: onAmbiguous,
			Template: events.TemplateRef{Name: "my_group_invite", Language: "en"}}
	}
	withTemplate := func(t *testing.T, s *stack) {
		_, err := s.graph.AddLibraryTemplate(context.Background(), sim.DefaultWABAID, graph.AddTemplateRequest{
			Name: "my_group_invite", Category: "UTILITY", Language: "en", LibraryTemplateName: "group_invite_upon_request"})
		if err != nil {
			t.Fatal(err)
		}
	}

	t.Run("sends once", func(t *testing.T) {
		t.Parallel()
		s := setup(t)
		withTemplate(t, s)
		s.startWorker(t)
		g := s.newGroup(t, "Invites", "")
		s.publish(t, command("inv-1", events.SendGroupInvite, "", invite(g, "15550000301", "")))
		r := s.terminal(t, "inv-1")
		wantOutcome(t, r, events.OutcomeSucceeded)
		var res events.SendGroupInviteResult
		if _ = json.Unmarshal(r.Result, &res); res.MessageID == "" {
			t.Fatalf("result %s, want a message id", r.Result)
		}
		s.events.WaitFor(t, "a status of the invite naming the command", func() bool {
			return len(s.events.Filter(func(e testutil.Event) bool {
				var ms events.MessageStatus
				return e.Type == events.EventMessageStatus && json.Unmarshal(e.Data, &ms) == nil && ms.MessageID == res.MessageID && ms.CommandID == "inv-1"
			})) > 0
		})
	})

	// The status of an invite is looked up in the correlation bucket. While
	// the bucket is unreachable the status waits: published without its
	// command it would stay so, and a campaign would not count it.
	t.Run("a status waits out a correlation outage", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.sim.WebhookDelay = time.Second }) // statuses a second apart
		withTemplate(t, s)
		s.startWorker(t)
		g := s.newGroup(t, "Invites", "")
		s.publish(t, command("inv-out", events.SendGroupInvite, "", invite(g, "15550000304", "")))
		wantOutcome(t, s.terminal(t, "inv-out"), events.OutcomeSucceeded)

		ctx := context.Background()
		bucket := "KV_" + s.names.CorrelationBucket()
		st, err := s.js.Stream(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		saved := st.CachedInfo().Config
		kv := s.kv(t, s.names.CorrelationBucket())
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kept := map[string][]byte{}
		for k := range keys.Keys() {
			if e, err := kv.Get(ctx, k); err == nil {
				kept[k] = e.Value()
			}
		}
		if len(kept) == 0 {
			t.Fatal("the invite left nothing in the correlation bucket; the test proves nothing")
		}
		if err := s.js.DeleteStream(ctx, bucket); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // the first statuses arrive meanwhile
		if _, err := s.js.CreateStream(ctx, saved); err != nil {
			t.Fatal(err)
		}
		for k, v := range kept {
			if _, err := kv.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
		}

		statuses := func() []events.MessageStatus {
			var out []events.MessageStatus
			for _, e := range s.events.OfType(events.EventMessageStatus) {
				var ms events.MessageStatus
				if json.Unmarshal(e.Data, &ms) == nil {
					out = append(out, ms)
				}
			}
			return out
		}
		s.events.WaitFor(t, "two statuses of the invite", func() bool { return len(statuses()) >= 2 })
		for _, ms := range statuses() {
			if ms.CommandID != "inv-out" {
				t.Errorf("status %q of %s names command %q, want inv-out", ms.Status, ms.MessageID, ms.CommandID)
			}
		}
	})

	t.Run("an ambiguous send fails as outcome_unknown by default", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointSendMessage}}
		})
		withTemplate(t, s)
		s.startWorker(t)
		g := s.newGroup(t, "Ambiguous", "")
		s.publish(t, command("inv-2", events.SendGroupInvite, "", invite(g, "15550000302", "")))
		r := s.terminal(t, "inv-2")
		wantFailure(t, r, events.ReasonOutcomeUnknown)
		if n := s.calls(sim.EndpointSendMessage); n != 1 {
			t.Fatalf("%d sends, want 1 (at most once)", n)
		}
	})

	t.Run("an ambiguous send is repeated with resend", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{LostResponse: 1, Limit: 1, Endpoints: []string{sim.EndpointSendMessage}}
		})
		withTemplate(t, s)
		s.startWorker(t)
		g := s.newGroup(t, "Resend", "")
		s.publish(t, command("inv-3", events.SendGroupInvite, "", invite(g, "15550000303", events.OnAmbiguousResend)))
		wantOutcome(t, s.terminal(t, "inv-3"), events.OutcomeSucceeded)
		if n := s.calls(sim.EndpointSendMessage); n != 2 {
			t.Fatalf("%d sends, want 2 (at least once)", n)
		}
	})

	t.Run("a recipient's pair limit delays only that command", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: graph.CodePairRateLimit,
				ThrottleRetryAfter: 300 * time.Millisecond, Endpoints: []string{sim.EndpointSendMessage}}
		})
		withTemplate(t, s)
		s.startWorker(t)
		g := s.newGroup(t, "Pairs", "")
		s.publish(t, command("inv-4", events.SendGroupInvite, "", invite(g, "15550000304", "")))
		r := s.terminal(t, "inv-4")
		wantOutcome(t, r, events.OutcomeSucceeded)
		if r.Attempts != 2 {
			t.Fatalf("attempts = %d, want 2", r.Attempts)
		}
	})
}
