package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

func TestDLQListShowReplayPurge(t *testing.T) {
	t.Parallel()
	s := setupStack(t, func(o *stackOpts) { o.retryMaxElapsed = time.Millisecond })
	g := s.createGroup(t, "dlq-create", "Unlucky")

	// Meta keeps answering "service unavailable": the worker retries until
	// its deliveries run out and dead-letters the command.
	if err := s.sim.SetFaults(sim.Faults{Code2: 1, Endpoints: []string{sim.EndpointGetInviteLink}}); err != nil {
		t.Fatal(err)
	}
	r := s.groupctl(t, "submit", "get_invite_link", "--phone", phone, "--group", g.GroupID, "--id", "dlq-1", "--wait")
	wantCode(t, r, 1)
	wantContains(t, "submit --wait", r.stdout, "command.failed", "retries exhausted (code 2)")

	var letters []listedLetter
	eventually(t, "the dead letter", func() bool {
		r = s.groupctl(t, "dlq", "list", "--json")
		letters = nil
		for line := range strings.Lines(r.stdout) {
			var l listedLetter
			if json.Unmarshal([]byte(line), &l) == nil {
				letters = append(letters, l)
			}
		}
		return r.code == 0 && len(letters) == 1
	})
	dl := letters[0]
	if dl.CommandID != "dlq-1" || dl.Reason != events.ReasonRetriesExhausted || dl.Subject != s.names.Command(phone, events.GetInviteLink) || len(dl.Attempts) != 3 {
		t.Fatalf("dead letter %+v, want dlq-1 retries_exhausted on its subject with 3 attempts", dl)
	}
	seq := strconv.FormatUint(dl.Seq, 10)

	r = s.groupctl(t, "dlq", "list")
	wantCode(t, r, 0)
	wantContains(t, "dlq list", r.stdout, "SEQ", "dlq-1", "get_invite_link", "retries_exhausted")

	r = s.groupctl(t, "dlq", "show", seq)
	wantCode(t, r, 0)
	wantContains(t, "dlq show", r.stdout, "dlq-1 (get_invite_link, phone "+phone+")", "retries_exhausted", "transient code 2", `"id":"dlq-1"`)

	r = s.groupctl(t, "dlq", "show", "9999")
	wantCode(t, r, 1)

	// Meta recovers; the replay executes the same id again.
	if err := s.sim.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	r = s.groupctl(t, "dlq", "replay", seq)
	wantCode(t, r, 0)
	wantContains(t, "dlq replay", r.stdout, "replayed "+seq+": get_invite_link dlq-1")
	eventually(t, "the replayed command to succeed", func() bool {
		r := s.groupctl(t, "status", "dlq-1", "--json")
		var e jobs.Entry
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &e) == nil && e.State == jobs.StateSucceeded
	})
	// Within the event stream's duplicate window, the replay's terminal
	// event is one of its own: the first execution's failure stays, the
	// replay's success follows it.
	eventually(t, "the replay's terminal event", func() bool {
		r := s.groupctl(t, "events", "--command", "dlq-1", "--json", "--follow=false")
		return r.code == 0 && strings.Contains(r.stdout, `"id":"dlq-1:terminal:replay-`+seq+`"`) &&
			strings.Contains(r.stdout, `"replay":"`+seq+`"`) && strings.Contains(r.stdout, `"id":"dlq-1:terminal"`)
	})
	r = s.groupctl(t, "dlq", "list")
	wantCode(t, r, 0)
	wantContains(t, "dlq list after replay", r.stdout, "the dead-letter queue is empty")

	// A dead letter as the worker writes it, to purge.
	body, _ := json.Marshal(jobs.DeadLetter{CommandID: "dlq-2", CommandType: events.SendGroupInvite, PhoneNumberID: phone,
		Subject: s.names.Command(phone, events.SendGroupInvite), Command: json.RawMessage(`{"id":"dlq-2"}`),
		Reason: events.ReasonRetriesExhausted, Attempts: []jobs.Attempt{{At: time.Now(), Outcome: "transient", Code: 131000}},
		StreamSequence: 7, DeadAt: time.Now(), Worker: "w-1"})
	m := &nats.Msg{Subject: s.names.DLQ(phone, events.SendGroupInvite), Data: body, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, "dlq-2:dlq:7")
	if _, err := s.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	// Its command is not valid: replay refuses it and leaves it in place.
	r = s.groupctl(t, "dlq", "replay", "--all")
	wantCode(t, r, 1)
	wantContains(t, "replay of an invalid command", r.stderr, "dlq-2 cannot be replayed, it is invalid")

	r = s.groupctl(t, "dlq", "purge")
	wantCode(t, r, 2)
	wantContains(t, "purge without --yes", r.stderr, "deletes 1 dead letter(s) for good; run again with --yes")
	r = s.groupctl(t, "dlq", "purge", "--yes", "--type", events.CreateGroup)
	wantCode(t, r, 0)
	wantContains(t, "purge of another type", r.stdout, "purged 0")
	r = s.groupctl(t, "dlq", "purge", "--yes")
	wantCode(t, r, 0)
	wantContains(t, "purge", r.stdout, "purged 1 dead letter(s)")
	r = s.groupctl(t, "dlq", "list", "--json")
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Fatalf("dlq list after purge printed %q, want nothing", r.stdout)
	}
}
