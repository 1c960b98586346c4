package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// A command waiting behind its number's backlog is parked before any
// worker claims it. Its status through the ingest's API reads "queued"
// while it waits, not "unknown command id", and its result once it ran.
func TestAParkedCommandReadsQueuedThroughTheAPI(t *testing.T) {
	t.Parallel()
	const backlog = 12 // at 2 a second: the last waits about 6 s
	s := setup(t, func(o *stackOpts) {
		o.limiter = true
		o.limits = ratelimit.Limits{GroupOps: 2}
	})
	s.startWorker(t, workerOpts{cfg: func(c *jobs.Config) { c.ParkAfter = 200 * time.Millisecond }})
	tok := s.opts.secrets.APIToken
	if code, body := s.post(t, command("queued-group", events.CreateGroup, "", events.CreateGroupParams{Subject: "Queued"}), tok); code != http.StatusAccepted {
		t.Fatalf("POST create_group = %d %s", code, body)
	}
	_, created := s.events.Terminal(t, "queued-group")
	if created.Outcome != events.OutcomeSucceeded {
		t.Fatalf("create_group: %q %+v", created.Outcome, created.Error)
	}
	group := created.GroupID

	ids := make([]string, backlog)
	for i := range ids {
		ids[i] = fmt.Sprint("queued-", i)
		// A group operation each, every one of which succeeds.
		c := command(ids[i], events.ResetInviteLink, group, nil)
		if code, body := s.post(t, c, tok); code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %s", ids[i], code, body)
		}
	}
	last := ids[backlog-1]
	status := func() (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.ingestURL+"/v1/commands/"+last, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		code, body := s.do(t, req)
		var e struct {
			State jobs.State `json:"state"`
		}
		_ = json.Unmarshal(body, &e)
		return code, string(e.State)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, state := status()
		if code == http.StatusOK && state == string(jobs.StateQueued) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/commands/%s = %d, state %q; want 200 and queued while it waits", last, code, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, r := s.events.Terminal(t, last); r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("%s: %q %+v, want succeeded", last, r.Outcome, r.Error)
	}
	if code, state := status(); code != http.StatusOK || state != string(jobs.StateSucceeded) {
		t.Errorf("GET /v1/commands/%s after its terminal event = %d, state %q; want 200 and succeeded", last, code, state)
	}
}
