package jobs

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestEncodeEntry(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 18, 0, 0, 123, time.UTC)
	event := json.RawMessage(`{"specversion":"1.0","id":"c1:terminal","data":{"outcome":"succeeded"}}`)
	for _, tc := range []struct {
		name string
		e    Entry
	}{
		{"A new claim", Entry{CommandID: "c1", Command: json.RawMessage(`{"id":"c1", "type":"get_invite_link"}`),
			State: StateRunning, Owner: "w/1/1", LeaseUntil: now, CreatedAt: now, UpdatedAt: now}},
		{"A finished command", Entry{CommandID: "c:1", CommandType: "get_invite_link", Command: json.RawMessage(`{"id":"c:1"}`),
			State: StateSucceeded, Attempts: []Attempt{{At: now, Worker: "w", Delivery: 1, Outcome: "succeeded"}},
			Intent:   &Intent{Op: "send", At: now, Done: true, Outcome: json.RawMessage(`{"result":{"x":1}}`)},
			Pending:  []Pending{{RequestID: "r1", Result: json.RawMessage(`{"result":{}}`)}},
			Result:   &Terminal{Type: "command.succeeded", Subject: "s", MsgID: "c:1:terminal", Event: event, Published: true, At: now},
			Progress: json.RawMessage(`[1,2]`), CreatedAt: now, UpdatedAt: now}},
		{"A result without its event", Entry{CommandID: "c2", State: StateFailed, Result: &Terminal{Type: "command.failed"}}},
		{"No command", Entry{CommandID: "c3", State: StateRunning}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := encodeEntry(tc.e)
			if err != nil {
				t.Fatalf("encodeEntry: %v", err)
			}
			if !json.Valid(got) {
				t.Fatalf("encodeEntry wrote invalid JSON: %s", got)
			}
			want, _ := json.Marshal(tc.e)
			var g, w any
			_ = json.Unmarshal(got, &g)
			_ = json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Errorf("encodeEntry differs from json.Marshal:\n got %s\nwant %s", got, want)
			}
			var back Entry
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("decode: %v", err)
			}
		})
	}
}

// BenchmarkEncodeEntry encodes a finished get_invite_link entry, as the
// ledger writes it, beside json.Marshal of the same entry.
func BenchmarkEncodeEntry(b *testing.B) {
	now := time.Now()
	cmd := json.RawMessage(`{"id":"bench-10000-1234","type":"get_invite_link","phone_number_id":"106540352242922","group_id":"120363041234567890"}`)
	event := json.RawMessage(`{"specversion":"1.0","id":"bench-10000-1234:terminal","source":"groupflow/worker","type":"command.succeeded","subject":"120363041234567890","datacontenttype":"application/json","time":"2026-11-24T18:00:00.123456Z","phonenumberid":"106540352242922","commandid":"bench-10000-1234","groupid":"120363041234567890","data":{"command_id":"bench-10000-1234","command_type":"get_invite_link","phone_number_id":"106540352242922","group_id":"120363041234567890","outcome":"succeeded","attempts":1,"result":{"invite_link":"https://chat.whatsapp.com/AbCdEfGhIjKlMnOpQrStUv"}}}`)
	e := Entry{CommandID: "bench-10000-1234", CommandType: "get_invite_link", PhoneNumberID: "106540352242922",
		Subject: "groups.cmd.106540352242922.get_invite_link", Command: cmd, State: StateSucceeded,
		Attempts:  []Attempt{{At: now, Worker: "host-1234-abcdef01", Delivery: 1, Outcome: "succeeded"}},
		Result:    &Terminal{Type: "command.succeeded", Subject: "groups.evt.106540352242922.command.succeeded", MsgID: "bench-10000-1234:terminal", Event: event, Published: true, At: now},
		CreatedAt: now, UpdatedAt: now}
	b.Run("encodeEntry", func(b *testing.B) {
		for b.Loop() {
			_, _ = encodeEntry(e)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(e)
		}
	})
}
