package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

func TestSubmitReachesTheWorkerAndStatusShowsTheResult(t *testing.T) {
	t.Parallel()
	s := setupStack(t)

	r := s.groupctl(t, "submit", "create_group", "--phone", phone, "--id", "create-1", "--subject", "Book club")
	wantCode(t, r, 0)
	wantContains(t, "submit output", r.stdout, "submitted create_group create-1 → groups.cmd."+phone+".create_group")

	// The terminal event arrives on the event stream: follow it.
	r = s.groupctl(t, "events", "--command", "create-1", "--type", "command", "--count", "1", "--json")
	wantCode(t, r, 0)
	ev, err := events.Unmarshal([]byte(strings.TrimSpace(r.stdout)))
	if err != nil {
		t.Fatalf("events --json printed %q: %v", r.stdout, err)
	}
	if ev.Type() != events.EventCommandSucceeded || ev.ID() != events.TerminalEventID("create-1", "") {
		t.Fatalf("event %s %s, want command.succeeded create-1:terminal", ev.Type(), ev.ID())
	}
	d, _ := events.DataOf(ev)
	var created events.CreateGroupResult
	_ = json.Unmarshal(d.(*events.CommandResult).Result, &created)

	r = s.groupctl(t, "status", "create-1")
	wantCode(t, r, 0)
	wantContains(t, "status", r.stdout, "create-1 (create_group, phone "+phone+")", "succeeded", "group "+created.GroupID, "awaiting_webhook")

	r = s.groupctl(t, "status", "create-1", "--json")
	wantCode(t, r, 0)
	var e jobs.Entry
	if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || e.State != jobs.StateSucceeded || e.CommandType != events.CreateGroup {
		t.Fatalf("status --json = %+v (%v), want a succeeded create_group entry", e, err)
	}

	r = s.groupctl(t, "status", "never-sent")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "never-sent is not in the ledger", "once a worker takes it", "waiting in the command stream")
}

func TestSubmitWaitExitsByOutcome(t *testing.T) {
	t.Parallel()
	s := setupStack(t)
	g := s.createGroup(t, "wait-create", "Waiting room")

	t.Run("Success exits 0 with the result", func(t *testing.T) {
		r := s.groupctl(t, "submit", "get_invite_link", "--phone", phone, "--group", g.GroupID, "--id", "wait-ok", "--wait")
		wantCode(t, r, 0)
		wantContains(t, "stdout", r.stdout, "command.succeeded", "get_invite_link wait-ok", "link https://")
	})

	t.Run("Failure exits 1 with the reason", func(t *testing.T) {
		r := s.groupctl(t, "submit", "remove_participants", "--phone", phone, "--group", g.GroupID, "--id", "wait-fail",
			"--participant", "15550009999", "--wait")
		if r.code == 0 {
			t.Fatalf("removing a non-member succeeded? %s", r)
		}
		wantCode(t, r, 1)
		wantContains(t, "stdout", r.stdout, "remove_participants wait-fail")
	})

	t.Run("A finished id is answered from the ledger", func(t *testing.T) {
		// Re-sent within the duplicate window: the stream drops it, and
		// the terminal event is not published again; the ledger has it.
		r := s.groupctl(t, "submit", "get_invite_link", "--phone", phone, "--group", g.GroupID, "--id", "wait-ok", "--wait", "--json")
		wantCode(t, r, 0)
		if res := terminalOf(t, r.stdout); res.CommandID != "wait-ok" || res.Outcome != events.OutcomeSucceeded {
			t.Fatalf("result %+v, want wait-ok succeeded", res)
		}
	})

	t.Run("Another command under a used id is refused", func(t *testing.T) {
		r := s.groupctl(t, "submit", "reset_invite_link", "--phone", phone, "--group", g.GroupID, "--id", "wait-ok", "--wait")
		wantCode(t, r, 1)
		wantContains(t, "stderr", r.stderr, `command id "wait-ok" is already used`, "get_invite_link")
		if strings.Contains(r.stdout, "command.succeeded") {
			t.Errorf("stdout %q shows the earlier command's result as this one's", r.stdout)
		}
	})

	t.Run("A command from a file", func(t *testing.T) {
		body := `{"id":"wait-file","type":"get_invite_link","phone_number_id":"` + phone + `","group_id":"` + g.GroupID + `"}`
		r := s.groupctlIn(t, body, "submit", "--file", "-", "--wait")
		wantCode(t, r, 0)
		wantContains(t, "stdout", r.stdout, "get_invite_link wait-file")
	})
}

func TestParseDeadline(t *testing.T) {
	t.Parallel()
	now := mustTime(t, "2026-01-02T03:04:05Z")
	for _, tc := range []struct{ in, want string }{
		{"10m", "2026-01-02T03:14:05Z"},
		{"2026-11-24T18:00:00Z", "2026-11-24T18:00:00Z"},
		{"2026-11-24T18:00:00+01:00", "2026-11-24T17:00:00Z"},
	} {
		got, err := parseDeadline(tc.in, now)
		if err != nil || !got.Equal(mustTime(t, tc.want)) {
			t.Errorf("parseDeadline(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "2026-11-24"} {
		if _, err := parseDeadline(bad, now); err == nil {
			t.Errorf("parseDeadline(%q) accepted", bad)
		}
	}
}
