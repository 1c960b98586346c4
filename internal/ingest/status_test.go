package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/testutil"
)

// GET /v1/commands/{id} answers what the command_status query answers,
// valid against its schema, and nothing of the ledger's internals: not the
// claim token, its lease, the intent, the command as received or the trace.
func TestCommandStatusAnswersTheDocumentedShape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const (
		id    = "order-4711:link"
		phone = "106540352242922"
		token = "claim-token-3f9c1e"
		trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	)
	if _, _, err := b.ledger.Claim(ctx, jobs.ClaimRequest{
		CommandID: id, CommandType: events.ResetInviteLink, PhoneNumberID: phone, Subject: "groups.cmd." + phone + ".reset_invite_link",
		Command: json.RawMessage(`{"id":"order-4711:link","type":"reset_invite_link","phone_number_id":"106540352242922","group_id":"G1"}`),
		Token:   token, Lease: time.Minute, Traceparent: trace,
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.ledger.RecordIntent(ctx, id, token, "reset_invite_link"); err != nil {
		t.Fatal(err)
	}

	get := func() query.CommandStatusReply {
		t.Helper()
		status, body := b.get(t, id, apiToken)
		if status != http.StatusOK {
			t.Fatalf("GET /v1/commands/%s = %d %s, want 200", id, status, body)
		}
		checkSchema(t, "query.command_status.reply.json", body)
		for _, internal := range []string{token, trace, "lease_until", "owner", "intent", "group_id\":\"G1"} {
			if bytes.Contains(body, []byte(internal)) {
				t.Errorf("GET /v1/commands/%s shows the ledger's internal %q: %s", id, internal, body)
			}
		}
		// Nothing beyond the documented reply.
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		var r query.CommandStatusReply
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("GET /v1/commands/%s is not the command_status reply: %v\n%s", id, err, body)
		}
		return r
	}

	if r := get(); r.CommandID != id || r.State != string(jobs.StateRunning) || r.CommandType != events.ResetInviteLink ||
		r.PhoneNumberID != phone || r.Attempts != 0 || r.Result != nil {
		t.Errorf("running command: %+v", r)
	}

	res, _ := json.Marshal(events.InviteLinkResult{InviteLink: "https://chat.whatsapp.com/new"})
	ev, err := events.NewTerminalEvent(events.SourceWorker, events.CommandResult{
		CommandID: id, CommandType: events.ResetInviteLink, PhoneNumberID: phone,
		Outcome: events.OutcomeSucceeded, Result: res, Attempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := events.Marshal(ev)
	if _, err := b.ledger.Finish(ctx, id, token, jobs.StateSucceeded,
		jobs.Terminal{Type: ev.Type(), Subject: "groups.event." + phone + "." + ev.Type(), MsgID: ev.ID(), Event: raw},
		&jobs.Attempt{At: time.Now(), Worker: "worker-a", Outcome: "succeeded"}, nil); err != nil {
		t.Fatal(err)
	}
	done := get()
	var result events.CommandResult
	if err := json.Unmarshal(done.Result, &result); err != nil {
		t.Fatalf("result %s: %v", done.Result, err)
	}
	if done.State != string(jobs.StateSucceeded) || done.Attempts != 1 || result.CommandID != id || result.Outcome != events.OutcomeSucceeded {
		t.Errorf("finished command: state %s, attempts %d, result %+v", done.State, done.Attempts, result)
	}
}

// checkSchema validates data against one of the events package's schemas.
func checkSchema(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := testutil.ValidateSchema(t, name, data); err != nil {
		t.Errorf("answer does not match %s: %v\n%s", name, err, data)
	}
}
