package jobs_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

// At the default level (info) a worker under load must not write a line
// for every command that simply succeeds — sync or completed by its
// webhook — while a command that fails still says so.
func TestSucceedingCommandsLogNothingAtInfo(t *testing.T) {
	t.Parallel()
	s := setup(t)
	logs := &testutil.SyncBuffer{}
	s.startWorker(t, func(c *jobs.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	g := s.newGroup(t, "Quiet", "")
	s.publish(t, command("quiet-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Quiet too"}))
	s.publish(t, command("quiet-link", events.GetInviteLink, g.ID, nil))
	s.publish(t, command("loud-fail", events.GetInviteLink, "120363999999999999", nil))
	wantOutcome(t, s.terminal(t, "quiet-create"), events.OutcomeSucceeded)
	wantOutcome(t, s.terminal(t, "quiet-link"), events.OutcomeSucceeded)
	wantOutcome(t, s.terminal(t, "loud-fail"), events.OutcomeFailed)

	perCommand := map[string][]string{}
	for _, ln := range logLines(t, logs) {
		id, _ := ln["command_id"].(string)
		perCommand[id] = append(perCommand[id], ln["level"].(string)+" "+ln["msg"].(string))
	}
	for _, id := range []string{"quiet-create", "quiet-link"} {
		if lines := perCommand[id]; len(lines) > 0 {
			t.Errorf("succeeded command %s logged %q at info or above, want nothing", id, lines)
		}
	}
	if len(perCommand["loud-fail"]) == 0 {
		t.Errorf("the failed command logged nothing at info; lines by command: %v", perCommand)
	}
}

// A webhook item the worker cannot use is dropped with a warning; the
// line names the business number it came for, so an operator can tell
// whose webhooks are lost.
func TestADroppedWebhookItemIsLoggedWithItsNumber(t *testing.T) {
	t.Parallel()
	s := setup(t)
	logs := &testutil.SyncBuffer{}
	s.startWorker(t, func(c *jobs.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	item, _ := json.Marshal(webhook.Item{MsgID: "undecodable-1", PhoneNumberID: phone, Field: "group_lifecycle_update",
		Kind: webhook.KindGroup, Type: webhook.TypeGroupCreate, Data: json.RawMessage(`"not an object"`)})
	s.publishRaw(t, s.names.Webhook(phone, "group_lifecycle_update"), "undecodable-1", item)

	deadline := time.Now().Add(10 * time.Second) // a guard against hangs
	for {
		for _, ln := range logLines(t, logs) {
			if ln["msg"] == "webhook item undecodable; dropped" {
				if ln["phone_number_id"] != phone {
					t.Errorf("line %v: phone_number_id %v, want %s", ln, ln["phone_number_id"], phone)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line says the item was dropped; logs:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func logLines(t *testing.T, b *testutil.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	for sc.Scan() {
		var ln map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ln); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out = append(out, ln)
	}
	return out
}
