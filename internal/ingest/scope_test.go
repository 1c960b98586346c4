package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/testutil"
)

// Two tenants on one ingest: A may act for phoneA and phoneC, B for
// phoneB only. apiToken (setup's) is a plain token: every number.
const (
	phoneA  = "106540352242922" // validCommand's number
	phoneB  = "106540352242923"
	phoneC  = "106540352242924"
	tenantA = "8f3c1e0d9ab24f6e"
	tenantB = "51d0c2a7e4b94a1f"
)

// setupTenants is setup with the two tenants' scoped tokens beside the
// plain ones, and the handler's log in logs.
func setupTenants(t *testing.T, tel *telemetry.Telemetry) (bundle, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	b := setupWith(t, tel, func(c *ingest.Config) {
		c.APITokens = append(c.APITokens, tenantA+"@"+phoneA+"+"+phoneC, tenantB+"@"+phoneB)
		c.Logger = slog.New(telemetry.NewLogHandler(logs, slog.LevelInfo))
	})
	return b, logs
}

// approval is an approve_join_requests command with id for phone.
func approval(id, phone string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"type":"approve_join_requests","phone_number_id":%q,"group_id":"Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
 "params":{"join_request_ids":["MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw"]}}`, id, phone)
}

// queue puts a command into the ledger as a worker that parked it would.
func (b bundle) queue(t *testing.T, id, phone string) {
	t.Helper()
	if err := b.ledger.Queue(context.Background(), jobs.ClaimRequest{CommandID: id, CommandType: "approve_join_requests",
		PhoneNumberID: phone, Command: json.RawMessage(approval(id, phone))}); err != nil {
		t.Fatal(err)
	}
}

func TestScopedTokenActsForItsNumbers(t *testing.T) {
	t.Parallel()
	b, _ := setupTenants(t, nil)

	for _, c := range []struct{ id, phone string }{{"a-1", phoneA}, {"a-2", phoneC}} {
		if status, out := b.post(t, "/v1/commands", tenantA, approval(c.id, c.phone)); status != http.StatusAccepted {
			t.Fatalf("POST %s for %s with a token scoped to it = %d %v, want 202", c.id, c.phone, status, out)
		}
	}
	s, err := b.js.Stream(context.Background(), "GROUPS_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	for seq, want := range map[uint64]string{1: "groups.cmd." + phoneA + ".approve_join_requests", 2: "groups.cmd." + phoneC + ".approve_join_requests"} {
		msg, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("command stream message %d: %v", seq, err)
		}
		if msg.Subject != want {
			t.Errorf("message %d published to %s, want %s", seq, msg.Subject, want)
		}
	}

	b.queue(t, "a-1", phoneA)
	if status, body := b.get(t, "a-1", tenantA); status != http.StatusOK || !bytes.Contains(body, []byte(`"state":"queued"`)) {
		t.Fatalf("GET of its own number's command with a scoped token = %d %s, want 200 queued", status, body)
	}
}

func TestScopedTokenIsRefusedAnotherNumber(t *testing.T) {
	t.Parallel()
	b, logs := setupTenants(t, nil)

	req, _ := http.NewRequest(http.MethodPost, b.url+"/v1/commands", bytes.NewReader(approval("b-1", phoneA)))
	req.Header.Set("Authorization", "Bearer "+tenantB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	msg, _ := out["error"].(string)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(msg, phoneA) {
		t.Fatalf("POST for %s with a token scoped to %s = %d %s, want 403 naming %s", phoneA, phoneB, resp.StatusCode, raw, phoneA)
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
		t.Fatalf("a refused command put %d messages into the command stream, want 0", n)
	}

	// The refusal is logged once, naming the command, the number and the
	// token's entry, never the token (nor in the answer).
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `"command_id":"b-1"`) {
			if line != "" {
				t.Errorf("more than one line about the refusal:\n%s", logs)
			}
			line = l
		}
	}
	if !strings.Contains(line, `"level":"WARN"`) || !strings.Contains(line, `"phone_number_id":"`+phoneA+`"`) ||
		!strings.Contains(line, `"caller_entry":4`) {
		t.Errorf("refusal line %q, want a WARN naming phone_number_id %s and caller_entry 4 (tenant B's place in the list)", line, phoneA)
	}
	for what, text := range map[string]string{"answer": string(raw), "log": logs.String()} {
		if strings.Contains(text, tenantB) {
			t.Errorf("the %s shows the token: %s", what, text)
		}
	}
}

// A scoped token learns nothing of another number's commands from GET:
// the answer is the very one an unknown id gets.
func TestCommandOfAnotherNumberIsHiddenFromAScopedToken(t *testing.T) {
	t.Parallel()
	b, logs := setupTenants(t, nil)
	b.queue(t, "a-1", phoneA)
	// A command rejected before its number was known has none: it is no
	// scoped token's.
	if _, err := b.ledger.FinishNew(context.Background(), jobs.Entry{CommandID: "x-1", State: jobs.StateRejected}); err != nil {
		t.Fatal(err)
	}

	wantStatus, want := b.get(t, "never-sent", tenantB)
	if wantStatus != http.StatusNotFound {
		t.Fatalf("GET of an unknown id = %d %s, want 404", wantStatus, want)
	}
	for _, id := range []string{"a-1", "x-1"} {
		if status, body := b.get(t, id, tenantB); status != http.StatusNotFound || !bytes.Equal(body, want) {
			t.Errorf("GET of %s (not tenant B's) with tenant B's token = %d %s, want the unknown id's 404 %s", id, status, body, want)
		}
	}
	if !strings.Contains(logs.String(), `"command_id":"a-1"`) || strings.Contains(logs.String(), tenantB) {
		t.Errorf("log %q, want a line naming the hidden command a-1 and not the token", logs)
	}

	// Whoever may act for the number, or for every number, sees it.
	for _, c := range []struct{ id, token string }{{"a-1", tenantA}, {"a-1", apiToken}, {"x-1", apiToken}} {
		if status, body := b.get(t, c.id, c.token); status != http.StatusOK {
			t.Errorf("GET of %s with %s = %d %s, want 200", c.id, c.token, status, body)
		}
	}
}

// An id is one space for all callers, so a used one must be refused to
// anyone; to a scoped token the 409 says nothing of another number's
// command: not its type, number or group.
func TestUsedIDOfAnotherNumberIsAConflictWithoutItsDetails(t *testing.T) {
	t.Parallel()
	b, _ := setupTenants(t, nil)
	created := `{"id":"shared-1","type":"create_group","phone_number_id":"` + phoneA + `","params":{"subject":"Shop"}}`
	if _, err := b.ledger.FinishNew(context.Background(), jobs.Entry{CommandID: "shared-1", CommandType: "create_group",
		PhoneNumberID: phoneA, Command: json.RawMessage(created), State: jobs.StateSucceeded}); err != nil {
		t.Fatal(err)
	}

	status, out := b.post(t, "/v1/commands", tenantB, approval("shared-1", phoneB))
	msg, _ := out["error"].(string)
	if status != http.StatusConflict || !strings.Contains(msg, "shared-1") {
		t.Fatalf("POST under another number's id with a scoped token = %d %v, want 409 naming the id", status, out)
	}
	for _, detail := range []string{"create_group", phoneA, "Shop"} {
		if strings.Contains(msg, detail) {
			t.Errorf("409 to tenant B shows %q of tenant A's command: %s", detail, msg)
		}
	}
	// Its own number's command: the details help, and are its own.
	status, out = b.post(t, "/v1/commands", tenantA, approval("shared-1", phoneA))
	if msg, _ := out["error"].(string); status != http.StatusConflict || !strings.Contains(msg, "create_group") {
		t.Fatalf("POST under its own number's used id = %d %v, want 409 naming create_group", status, out)
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
		t.Fatalf("conflicts put %d messages into the command stream, want 0", n)
	}
}

func TestPlainTokenActsForEveryNumber(t *testing.T) {
	t.Parallel()
	b, _ := setupTenants(t, nil)
	for _, c := range []struct{ id, phone string }{{"p-1", phoneA}, {"p-2", phoneB}, {"p-3", "999"}} {
		if status, out := b.post(t, "/v1/commands", apiToken, approval(c.id, c.phone)); status != http.StatusAccepted {
			t.Fatalf("POST for %s with a plain token = %d %v, want 202", c.phone, status, out)
		}
		b.queue(t, c.id, c.phone)
		if status, body := b.get(t, c.id, apiToken); status != http.StatusOK {
			t.Fatalf("GET of %s with a plain token = %d %s, want 200", c.id, status, body)
		}
	}
}

// A refused scope is counted as the command API's other refusals are: by
// its status in http.server.request.duration.
func TestScopeRefusalIsCounted(t *testing.T) {
	t.Parallel()
	b, _ := setupTenants(t, withMetrics(t))
	if status, out := b.post(t, "/v1/commands", tenantB, approval("b-1", phoneA)); status != http.StatusForbidden {
		t.Fatalf("POST for another number = %d %v, want 403", status, out)
	}
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var got string
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "http_server_request_duration_seconds_count{") &&
			strings.Contains(line, `http_response_status_code="403"`) && strings.Contains(line, `http_route="/v1/commands"`) {
			got = line
		}
	}
	if f := strings.Fields(got); len(f) == 0 || f[len(f)-1] != "1" {
		t.Errorf("403 answers of POST /v1/commands on /metrics: %q, want a count of 1", got)
	}
	if strings.Contains(string(raw), tenantB) {
		t.Error("/metrics shows the token")
	}
}
