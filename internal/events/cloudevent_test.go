package events

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestNewEventAttributes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 18, 2, 3, 0, time.FixedZone("CET", 3600))
	data := GroupCreated{GroupID: testGroup, RequestID: "r1", CommandID: "order-1", Subject: "S"}
	e, err := NewEvent(EventGroupCreated, "ev-1", SourceWorker, testPhone, &data, WithTime(at))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"specversion", e.SpecVersion(), "1.0"},
		{"id", e.ID(), "ev-1"},
		{"source", e.Source(), SourceWorker},
		{"type", e.Type(), EventGroupCreated},
		{"subject", e.Subject(), testGroup},
		{"datacontenttype", e.DataContentType(), ContentType},
		{"time", e.Time().Format(time.RFC3339), "2026-11-24T17:02:03Z"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	wantExt := map[string]any{ExtPhoneNumberID: testPhone, ExtCommandID: "order-1", ExtGroupID: testGroup}
	if got := e.Extensions(); !reflect.DeepEqual(got, wantExt) {
		t.Errorf("extensions = %v, want %v", got, wantExt)
	}
}

func TestNewEventDefaultsTimeToNow(t *testing.T) {
	t.Parallel()
	before := time.Now()
	e, err := NewEvent(EventGroupSuspended, "ev-1", SourceWorker, testPhone, GroupSuspended{GroupID: "g"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Time().Before(before.Add(-time.Second)) || e.Time().Location() != time.UTC {
		t.Errorf("time = %v, want about now, in UTC", e.Time())
	}
}

func TestNewEventRefusesMistakes(t *testing.T) {
	t.Parallel()
	ok := GroupSuspended{GroupID: "g"}
	tests := []struct {
		name                  string
		eventType, id, source string
		phone                 string
		data                  any
		wantErr               string
	}{
		{"Unknown type", "group.renamed", "e", SourceWorker, testPhone, ok, "unknown event type"},
		{"Data of another type", EventGroupCreated, "e", SourceWorker, testPhone, ok, "needs data of type events.GroupCreated, got events.GroupSuspended"},
		{"Data a map", EventGroupSuspended, "e", SourceWorker, testPhone, map[string]any{"group_id": "g"}, "needs data of type events.GroupSuspended"},
		{"Data nil", EventGroupSuspended, "e", SourceWorker, testPhone, nil, "needs data of type"},
		{"Data a nil pointer", EventGroupSuspended, "e", SourceWorker, testPhone, (*GroupSuspended)(nil), "needs data of type"},
		{"No id", EventGroupSuspended, "", SourceWorker, testPhone, ok, "id is required"},
		{"No source", EventGroupSuspended, "e", "", testPhone, ok, "source is required"},
		{"Phone with a dot", EventGroupSuspended, "e", SourceWorker, "1.2", ok, "cannot stand in a subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewEvent(tt.eventType, tt.id, tt.source, tt.phone, tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("NewEvent error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewTerminalEvent(t *testing.T) {
	t.Parallel()
	for _, outcome := range []string{OutcomeSucceeded, OutcomePartiallySucceeded, OutcomeFailed, OutcomeRejected} {
		r := CommandResult{CommandID: "order-1", CommandType: DeleteGroup, PhoneNumberID: testPhone, GroupID: "g", Outcome: outcome}
		e, err := NewTerminalEvent(SourceWorker, r)
		if err != nil {
			t.Fatalf("%s: %v", outcome, err)
		}
		if e.Type() != "command."+outcome || e.ID() != "order-1:terminal" || e.Subject() != "order-1" {
			t.Errorf("%s: type %q, id %q, subject %q; want command.%s, order-1:terminal, order-1", outcome, e.Type(), e.ID(), e.Subject(), outcome)
		}
		if !IsTerminal(e.Type()) {
			t.Errorf("IsTerminal(%q) = false", e.Type())
		}
	}
	replayed, err := NewTerminalEvent(SourceWorker, CommandResult{CommandID: "order-1", CommandType: DeleteGroup, PhoneNumberID: testPhone, Outcome: OutcomeSucceeded, Replay: "7"})
	if err != nil || replayed.ID() != "order-1:terminal:replay-7" {
		t.Errorf("a replay's terminal event: id %q, %v; want order-1:terminal:replay-7", replayed.ID(), err)
	}
	if _, err := NewTerminalEvent(SourceWorker, CommandResult{CommandID: "x", PhoneNumberID: testPhone, Outcome: "done"}); err == nil {
		t.Error("unknown outcome: want an error")
	}
	if _, err := NewTerminalEvent(SourceWorker, CommandResult{PhoneNumberID: testPhone, Outcome: OutcomeFailed}); err == nil {
		t.Error("no command id: want an error")
	}
	if IsTerminal(EventGroupCreated) || IsTerminal("command.started") {
		t.Error("IsTerminal must hold only for the four terminal types")
	}
}

func TestEventRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 24, 17, 2, 3, 500, time.UTC)
	for et, sample := range sampleData() {
		e, err := NewEvent(et, EventID(et), SourceWorker, testPhone, sample, WithTime(at))
		if err != nil {
			t.Fatalf("%s: %v", et, err)
		}
		b, err := Marshal(e)
		if err != nil {
			t.Fatalf("%s: %v", et, err)
		}
		back, err := Unmarshal(b)
		if err != nil {
			t.Fatalf("%s: %v", et, err)
		}
		if back.ID() != e.ID() || back.Type() != et || !back.Time().Equal(at) || !reflect.DeepEqual(back.Extensions(), e.Extensions()) {
			t.Errorf("%s: attributes changed in a round trip:\n%v\nvs\n%v", et, e, back)
		}
		got, err := DataOf(back)
		if err != nil {
			t.Fatalf("%s: %v", et, err)
		}
		if want := reflect.New(reflect.TypeOf(sample)); !reflect.DeepEqual(got, func() any { want.Elem().Set(reflect.ValueOf(sample)); return want.Interface() }()) {
			t.Errorf("%s: data changed in a round trip:\n got %+v\nwant %+v", et, got, sample)
		}
	}
}

func TestUnmarshalRefusesBadEvents(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"Not JSON":         `{`,
		"Spec version 0.3": `{"specversion":"0.3","id":"1","source":"s","type":"t"}`,
		"No id":            `{"specversion":"1.0","source":"s","type":"t"}`,
		"No type":          `{"specversion":"1.0","id":"1","source":"s"}`,
		"No spec version":  `{"id":"1","source":"s","type":"t"}`,
	} {
		if _, err := Unmarshal([]byte(body)); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
	// Unknown types are accepted: consumers outlive the types they know.
	e, err := Unmarshal([]byte(`{"specversion":"1.0","id":"1","source":"groupflow/worker","type":"group.renamed","data":{}}`))
	if err != nil {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := DataOf(e); err == nil {
		t.Error("DataOf of an unknown type: want an error")
	}
}

func TestEventID(t *testing.T) {
	t.Parallel()
	a := EventID("group_participants_update", "g", "group_participants_add", "1755548877", "16505551234")
	if a != EventID("group_participants_update", "g", "group_participants_add", "1755548877", "16505551234") {
		t.Error("EventID is not deterministic")
	}
	if EventID("ab", "c") == EventID("a", "bc") || EventID("a") == EventID("a", "") {
		t.Error("EventID must tell different part lists apart")
	}
	if len(a) != 32 || strings.ContainsAny(a, ".*> ") {
		t.Errorf("EventID = %q, want 32 hex digits", a)
	}
	if got := TerminalEventID("order-1", ""); got != "order-1:terminal" {
		t.Errorf("TerminalEventID of the first execution = %q", got)
	}
	if got := TerminalEventID("order-1", "12"); got != "order-1:terminal:replay-12" {
		t.Errorf("TerminalEventID of a replay = %q", got)
	}
}

func TestEventTypes(t *testing.T) {
	t.Parallel()
	types := EventTypes()
	if len(types) != len(eventSpecs) {
		t.Fatalf("EventTypes has %d types, the spec table %d", len(types), len(eventSpecs))
	}
	for _, et := range types {
		// The type is the subject's last tokens: each must be a valid token.
		for tok := range strings.SplitSeq(et, ".") {
			if !ValidToken(tok) {
				t.Errorf("event type %q has an invalid subject token %q", et, tok)
			}
		}
	}
	// command.* events share CommandResult; its outcomes name them.
	for _, et := range []string{EventCommandSucceeded, EventCommandPartiallySucceeded, EventCommandFailed, EventCommandRejected} {
		r := CommandResult{Outcome: strings.TrimPrefix(et, "command.")}
		if r.EventType() != et {
			t.Errorf("CommandResult{Outcome: %q}.EventType() = %q, want %q", r.Outcome, r.EventType(), et)
		}
	}
}

func TestCommandResultJSON(t *testing.T) {
	t.Parallel()
	// Field names are the contract; pin a few.
	b, _ := json.Marshal(CommandResult{CommandID: "c", CommandType: CreateGroup, PhoneNumberID: "1", Outcome: OutcomeFailed,
		Error: &FailureInfo{Reason: ReasonWebhookTimeout}})
	want := `{"command_id":"c","command_type":"create_group","phone_number_id":"1","outcome":"failed","error":{"reason":"webhook_timeout"},"attempts":0}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
