package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// publishEvent publishes an event the way the worker does: to its subject,
// with its id as Nats-Msg-Id.
func (b bundle) publishEvent(t testing.TB, phone, typ, id string, data any) {
	t.Helper()
	e, err := events.NewEvent(typ, id, events.SourceWorker, phone, data)
	if err != nil {
		t.Fatal(err)
	}
	body, err := events.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: b.names.Event(phone, typ), Data: body, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	if _, err := b.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// eventIDs runs `events --json` and returns the ids printed.
func eventIDs(t testing.TB, b bundle, args ...string) []string {
	t.Helper()
	r := b.groupctl(t, append([]string{"events", "--json"}, args...)...)
	wantCode(t, r, 0)
	var ids []string
	for line := range strings.Lines(r.stdout) {
		e, err := events.Unmarshal([]byte(line))
		if err != nil {
			t.Fatalf("line %q is not a CloudEvent: %v", line, err)
		}
		ids = append(ids, e.ID())
	}
	return ids
}

func TestEventsFiltersByNumberTypeGroupAndCommand(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	const other = "999000111"
	b.publishEvent(t, phone, events.EventGroupCreated, "e1", events.GroupCreated{GroupID: "G1", RequestID: "r1", CommandID: "c1", Subject: "One"})
	b.publishEvent(t, phone, events.EventCommandSucceeded, "e2", events.CommandResult{CommandID: "c1", CommandType: events.CreateGroup, PhoneNumberID: phone, GroupID: "G1", Outcome: events.OutcomeSucceeded, Attempts: 1})
	b.publishEvent(t, other, events.EventGroupCreated, "e3", events.GroupCreated{GroupID: "G2", RequestID: "r2", Subject: "Two"})
	b.publishEvent(t, phone, events.EventGroupParticipantsJoined, "e4", events.ParticipantsJoined{GroupID: "G2", Participants: []events.ParticipantRef{{WAID: "15550001"}}})
	b.publishEvent(t, phone, events.EventCommandFailed, "e5", events.CommandResult{CommandID: "c2", CommandType: events.GetInviteLink, PhoneNumberID: phone, GroupID: "G2", Outcome: events.OutcomeFailed, Error: &events.FailureInfo{Reason: events.ReasonPermanentError, Code: 131203}, Attempts: 1})

	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"Everything stored", []string{"--all", "--follow=false"}, []string{"e1", "e2", "e3", "e4", "e5"}},
		{"One number", []string{"--all", "--follow=false", "--phone", other}, []string{"e3"}},
		{"One type", []string{"--all", "--follow=false", "--type", "group.created"}, []string{"e1", "e3"}},
		{"A family and a type", []string{"--all", "--follow=false", "--type", "command.*,group.participants_joined"}, []string{"e2", "e4", "e5"}},
		{"A family covering its own type", []string{"--all", "--follow=false", "--type", "command", "--type", "command.failed"}, []string{"e2", "e5"}},
		{"One group", []string{"--all", "--follow=false", "--group", "G2"}, []string{"e3", "e4", "e5"}},
		{"One command, from the start by default", []string{"--follow=false", "--command", "c1"}, []string{"e1", "e2"}},
		{"Number, type and group together", []string{"--all", "--follow=false", "--phone", phone, "--type", "group.*", "--group", "G2"}, []string{"e4"}},
		{"Following stops after --count", []string{"--all", "--count", "2"}, []string{"e1", "e2"}},
		{"Nothing matches", []string{"--all", "--follow=false", "--type", "campaign.*"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := eventIDs(t, b, tc.args...); !slices.Equal(got, tc.want) {
				t.Fatalf("events %v printed %v, want %v", tc.args, got, tc.want)
			}
		})
	}

	t.Run("Human lines", func(t *testing.T) {
		t.Parallel()
		r := b.groupctl(t, "events", "--all", "--follow=false", "--phone", phone)
		wantCode(t, r, 0)
		lines := slices.Collect(strings.Lines(r.stdout))
		if len(lines) != 4 {
			t.Fatalf("want 4 lines, got:\n%s", r.stdout)
		}
		wantContains(t, "line 1", lines[0], `group.created`, `group G1 "One" (command c1)`)
		wantContains(t, "line 3", lines[2], "group.participants_joined", "group G2: 15550001 joined")
		wantContains(t, "line 4", lines[3], "command.failed", "get_invite_link c2: permanent error (code 131203)")
	})
}

func TestEventsFollowsNewEvents(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	b.publishEvent(t, phone, events.EventGroupDeleted, "old", events.GroupDeleted{GroupID: "G0"})
	done := make(chan result, 1)
	go func() { done <- b.groupctl(t, "events", "--json", "--count", "1", "--type", "group.deleted") }()
	// The follower starts at new events: keep publishing until it has
	// seen one (it may start after the first of them).
	for i := 0; ; i++ {
		b.publishEvent(t, phone, events.EventGroupDeleted, "new-"+string(rune('a'+i%26))+time.Now().Format("150405.000000"), events.GroupDeleted{GroupID: "G1"})
		select {
		case r := <-done:
			wantCode(t, r, 0)
			var e struct{ ID string }
			if err := json.Unmarshal([]byte(r.stdout), &e); err != nil || !strings.HasPrefix(e.ID, "new-") {
				t.Fatalf("followed %q (%v), want a new event, not the stored one", r.stdout, err)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestEventFilterSubjects(t *testing.T) {
	t.Parallel()
	n := events.Names{}
	for _, tc := range []struct {
		f    eventFilter
		want []string
	}{
		{eventFilter{}, []string{"groups.event.*.>"}},
		{eventFilter{phone: "1"}, []string{"groups.event.1.>"}},
		{eventFilter{types: []string{"group"}}, []string{"groups.event.*.group.*"}},
		{eventFilter{types: []string{"group.created", "group.*"}}, []string{"groups.event.*.group.*"}},
		{eventFilter{types: []string{"group.created", "command.failed", "group.created"}}, []string{"groups.event.*.group.created", "groups.event.*.command.failed"}},
		{eventFilter{types: []string{"*"}}, []string{"groups.event.*.>"}},
	} {
		got, err := tc.f.subjects(n)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("subjects(%+v) = %v, %v; want %v", tc.f, got, err, tc.want)
		}
	}
	for _, bad := range []eventFilter{{types: []string{"group.a.b"}}, {types: []string{""}}, {phone: "1.2"}, {types: []string{"group.>"}}} {
		if got, err := bad.subjects(n); err == nil {
			t.Errorf("subjects(%+v) = %v, want an error", bad, got)
		}
	}
}

// FuzzEventFilterSubjects: whatever --type and --phone hold, the filter
// subjects are valid, do not overlap, or the input is refused.
func FuzzEventFilterSubjects(f *testing.F) {
	for _, s := range []string{"group.created", "group", "*", "command.*", "a.b.c", " x ", "group.>"} {
		f.Add("106540352242922", s, "command.failed")
	}
	f.Fuzz(func(t *testing.T, phone, t1, t2 string) {
		subs, err := eventFilter{phone: phone, types: []string{t1, t2}}.subjects(events.Names{})
		if err != nil {
			return
		}
		for _, s := range subs {
			for _, tok := range strings.Split(s, ".") {
				if tok == "" || strings.ContainsAny(tok, " \t\r\n") || (strings.ContainsAny(tok, "*>") && len(tok) > 1) {
					t.Fatalf("subject %q from (%q, %q, %q) has a bad token %q", s, phone, t1, t2, tok)
				}
			}
		}
		if len(subs) != len(slices.Compact(slices.Sorted(slices.Values(subs)))) {
			t.Fatalf("duplicate subjects %v", subs)
		}
	})
}
