package events

import (
	"encoding/json"
	"testing"
	"time"
)

// plainEvent is the same CloudEvent as a plain struct, to measure what the
// sdk-go event package costs over encoding/json.
type plainEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject,omitempty"`
	DataContentType string    `json:"datacontenttype"`
	Time            time.Time `json:"time"`
	PhoneNumberID   string    `json:"phonenumberid"`
	CommandID       string    `json:"commandid,omitempty"`
	GroupID         string    `json:"groupid,omitempty"`
	Data            any       `json:"data"`
}

func benchResult() CommandResult {
	return CommandResult{CommandID: "order-4711-approve", CommandType: ApproveJoinRequests, PhoneNumberID: testPhone,
		GroupID: testGroup, Outcome: OutcomePartiallySucceeded, Attempts: 1,
		Items: []ItemOutcome{{ID: "MTY0NjcwNDM1OTU6MTIw", Outcome: ItemApproved}, {ID: "MTY0NjcwNDM1OTY6MTIw", Outcome: ItemFailed, Code: 131203, Reason: "ToS"}}}
}

// BenchmarkEventMarshal compares building and encoding a terminal event with
// sdk-go (NewTerminalEvent + Marshal, which validates) and with a plain
// struct and encoding/json.
func BenchmarkEventMarshal(b *testing.B) {
	r := benchResult()
	at := time.Date(2026, 11, 24, 17, 2, 3, 0, time.UTC)
	b.Run("sdk-go", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e, err := NewTerminalEvent(SourceWorker, r, WithTime(at))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain-struct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e := plainEvent{SpecVersion: "1.0", ID: TerminalEventID(r.CommandID, ""), Source: SourceWorker, Type: r.EventType(),
				Subject: r.CommandID, DataContentType: ContentType, Time: at, PhoneNumberID: r.PhoneNumberID,
				CommandID: r.CommandID, GroupID: r.GroupID, Data: r}
			if _, err := json.Marshal(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeCommand measures the strict decoder on a typical command.
func BenchmarkDecodeCommand(b *testing.B) {
	data := []byte(`{"id":"order-4711-approve","type":"approve_join_requests","phone_number_id":"106540352242922",` +
		`"group_id":"Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",` +
		`"params":{"join_request_ids":["MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw"]},"deadline":"2026-11-24T18:00:00Z"}`)
	subject := Names{}.Command(testPhone, ApproveJoinRequests)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeCommand(subject, data); err != nil {
			b.Fatal(err)
		}
	}
}
