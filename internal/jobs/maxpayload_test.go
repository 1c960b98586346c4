package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
)

// defaultMaxPayload is the max_payload of a NATS server that does not set
// it: what a deployment that did not copy deploy/nats has.
const defaultMaxPayload = 1 << 20

// TestMaxPayload runs commands as large as the contract allows on a
// server with the default max_payload: each gets its one terminal event,
// none is retried for ever.
func TestMaxPayload(t *testing.T) {
	t.Parallel()

	t.Run("a command that fits a message but not its ledger entry is rejected once", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.maxPayload = defaultMaxPayload })
		s.startWorker(t)
		// Valid, and a message the server takes: padded with the spaces
		// JSON allows to a few hundred bytes under max_payload.
		b, err := json.Marshal(command("big-1", events.GetInviteLink, "Y2FwaV9ncm91cDpub3RoZXJl", nil))
		if err != nil {
			t.Fatal(err)
		}
		body := append(b[:len(b)-1:len(b)-1], strings.Repeat(" ", defaultMaxPayload-len(b)-300)+"}"...)
		subject := s.names.Command(phone, events.GetInviteLink)
		s.publishRaw(t, subject, "big-1", body)

		r := s.terminal(t, "big-1")
		wantOutcome(t, r, events.OutcomeRejected)
		if len(r.ValidationErrors) != 1 || !strings.Contains(r.ValidationErrors[0].Message, "max_payload") {
			t.Fatalf("validation errors = %+v, want one naming max_payload", r.ValidationErrors)
		}
		e, _, err := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil).Get(context.Background(), "big-1")
		if err != nil || e.State != jobs.StateRejected {
			t.Fatalf("ledger entry = %+v, %v; want it rejected", e, err)
		}
		if n := s.calls("get_invite_link"); n != 0 {
			t.Fatalf("%d get_invite_link calls, want none", n)
		}

		// Sent again, past the duplicate window: answered from the
		// ledger (the same event, so the stream keeps it once), not
		// retried for ever.
		s.publishRaw(t, subject, "", body)
		s.waitCommandsConsumed(t)
		if rs := s.events.Terminals("big-1"); len(rs) != 1 {
			t.Fatalf("terminal events = %+v, want the one rejection", rs)
		}
	})

	t.Run("a long list of wrong items is rejected with a short list of errors", func(t *testing.T) {
		t.Parallel()
		s := setup(t, func(o *stackOpts) { o.maxPayload = defaultMaxPayload })
		s.startWorker(t)
		var b strings.Builder
		b.WriteString(`{"id":"big-2","type":"remove_participants","phone_number_id":"` + phone +
			`","group_id":"Y2FwaV9ncm91cDpub3RoZXJl","params":{"participants":[1`)
		// 100,000 items: an error each made an event of 8 MB.
		for range 100_000 {
			b.WriteString(",1")
		}
		b.WriteString("]}}")
		s.publishRaw(t, s.names.Command(phone, events.RemoveParticipants), "big-2", []byte(b.String()))

		r := s.terminal(t, "big-2")
		wantOutcome(t, r, events.OutcomeRejected)
		if n := len(r.ValidationErrors); n > events.MaxFieldErrors {
			t.Fatalf("%d validation errors, want at most %d", n, events.MaxFieldErrors)
		}
		if last := r.ValidationErrors[len(r.ValidationErrors)-1]; !strings.Contains(last.Message, "more errors") {
			t.Fatalf("last validation error = %+v, want how many more there are", last)
		}
	})
}

// allPendingSize is more join requests than an all_pending approval or
// rejection could handle on a server with the default max_payload while
// the ledger entry kept its progress and the terminal event listed every
// item: the progress (about 180 bytes a request) outgrew the entry at
// about 5,800 requests, the list (about 75 bytes an item) a message at
// about 14,000.
const allPendingSize = 15_000

// bigPendingList runs a stack on a server with the default max_payload
// and a group with n pending join requests, which it returns with the
// users who asked. The simulator lets them all in (Meta's groups
// take 8), and the webhooks announcing the requests are dropped: they are
// not what these tests are about.
func bigPendingList(t *testing.T, n int) (s *stack, g sim.GroupState, ids, users []string) {
	t.Helper()
	s = setup(t, func(o *stackOpts) {
		o.maxPayload = defaultMaxPayload
		o.sim.MaxParticipants = n
	})
	g = s.newGroup(t, "Crowd", graph.JoinApprovalRequired)
	s.sim.SetWebhookURL("")
	users = make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("1555%07d", i)
	}
	ids = s.joinRequests(t, g, users...)
	s.events.WaitFor(t, "the join webhooks dropped", func() bool { return s.sim.PendingWebhooks() == 0 })
	s.sim.SetWebhookURL(s.hooksURL)
	return s, g, ids, users
}

// checkItems fails the test unless r counts want and lists
// events.MaxItems of the items, failed ones first, each with the outcome
// outcomeOf gives its id.
func checkItems(t *testing.T, r events.CommandResult, want events.ItemCounts, outcomeOf map[string]string) {
	t.Helper()
	if r.ItemCounts == nil || *r.ItemCounts != want {
		t.Fatalf("item counts %+v, want %+v", r.ItemCounts, want)
	}
	if len(r.Items) != events.MaxItems || r.ItemsOmitted != want.Total()-events.MaxItems {
		t.Fatalf("%d items listed, %d omitted; want %d and %d", len(r.Items), r.ItemsOmitted, events.MaxItems, want.Total()-events.MaxItems)
	}
	for i, it := range r.Items {
		if o, ok := outcomeOf[it.ID]; !ok || it.Outcome != o || (i < want.Failed) != (o == events.ItemFailed) {
			t.Fatalf("item %d %+v, want one of the requests, %s, the failed ones first", i, it, o)
		}
	}
}

// Rejections on a group with more pending requests than an entry, or an
// event, could list on the default max_payload. One naming the newest
// events.MaxJoinRequestIDs requests kept whom every pending request was
// for in its entry, and failed as all_pending did. Now each completes:
// every request is rejected, each in one call, and the terminal event
// lists a bounded number of items and counts them all.
func TestMaxPayloadAllPending(t *testing.T) {
	t.Parallel()
	s, g, ids, _ := bigPendingList(t, allPendingSize)
	s.startWorker(t)
	outcomes := make(map[string]string, len(ids))
	for _, id := range ids {
		outcomes[id] = events.ItemRejected
	}

	named := ids[len(ids)-events.MaxJoinRequestIDs:]
	s.publish(t, command("rej-named", events.RejectJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: named}))
	r := s.terminalWithin(t, "rej-named", 3*time.Minute)
	wantOutcome(t, r, events.OutcomeSucceeded)
	if r.ItemCounts == nil || *r.ItemCounts != (events.ItemCounts{Rejected: len(named)}) || len(r.Items) != len(named) || r.ItemsOmitted != 0 {
		t.Fatalf("item counts %+v, %d items listed, %d omitted; want each of the %d requests named listed", r.ItemCounts, len(r.Items), r.ItemsOmitted, len(named))
	}
	for i, it := range r.Items {
		if it.ID != named[i] || it.Outcome != events.ItemRejected {
			t.Fatalf("item %d %+v, want %s rejected", i, it, named[i])
		}
	}

	s.publish(t, command("rej-all", events.RejectJoinRequests, g.ID, events.JoinRequestsParams{AllPending: true}))
	r = s.terminalWithin(t, "rej-all", 3*time.Minute)
	wantOutcome(t, r, events.OutcomeSucceeded)
	checkItems(t, r, events.ItemCounts{Rejected: len(ids) - len(named)}, outcomes)
	if st, _ := s.sim.Group(g.ID); len(st.JoinRequests) != 0 {
		t.Fatalf("%d join requests still pending, want none", len(st.JoinRequests))
	}
	if n, want := s.calls(sim.EndpointRejectJoin), (len(named)+99)/100+(len(ids)-len(named)+99)/100; n != want {
		t.Fatalf("%d rejection calls, want %d: one per chunk of 100", n, want)
	}
	e, _, err := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil).Get(context.Background(), "rej-all")
	if err != nil || e.State != jobs.StateSucceeded || len(e.Progress) != 0 {
		t.Fatalf("ledger entry in state %q with %d bytes of progress, %v; want succeeded, without progress", e.State, len(e.Progress), err)
	}
}

func TestWorkerWarnsOfASmallMaxPayload(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		maxPayload int32
		warns      bool
	}{
		{"on the default 1 MiB it warns", defaultMaxPayload, true},
		{"on the 8 MiB of deploy/nats it does not", 8 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, func(o *stackOpts) { o.maxPayload = tc.maxPayload })
			var logs testutil.SyncBuffer
			s.startWorker(t, func(c *jobs.Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			// Run checks before it takes commands: once one is done, the
			// warning is in the log or will not be.
			s.publish(t, command("mp-1", events.GetInviteLink, "Y2FwaV9ncm91cDpub3RoZXJl", nil))
			s.terminal(t, "mp-1")
			if got := strings.Contains(logs.String(), "max_payload"); got != tc.warns {
				t.Errorf("warned of max_payload: %v, want %v; the log:\n%s", got, tc.warns, logs.String())
			}
		})
	}
}
