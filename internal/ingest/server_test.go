package ingest_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The command stream's source of the parked stream: the server
		// waits for its consumer's answer in a goroutine that a shutdown
		// does not end, for up to 30 s.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

const (
	apiToken  = "caller-token-1"
	appSecret = "app-secret-for-tests"
)

type bundle struct {
	ledger  *jobs.Ledger
	url     string
	js      jetstream.JetStream
	nats    *natsembed.Server
	handler *ingest.Server
}

func setup(t testing.TB) bundle {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith serves an ingest handler with tel (nil: none), its Config
// changed by each mutate first.
func setupWith(t testing.TB, tel *telemetry.Telemetry, mutate ...func(*ingest.Config)) bundle {
	t.Helper()
	ns := natsembed.RunTest(t)
	nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(context.Background(), js, events.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), "groups_ledger")
	if err != nil {
		t.Fatal(err)
	}
	ledger := jobs.NewLedger(kv, nil)
	cfg := ingest.Config{
		Ledger:         ingest.JobsLedger(ledger),
		Conn:           nc,
		JS:             js,
		APITokens:      []string{"other-token", apiToken},
		PublishTimeout: 2 * time.Second,
		Telemetry:      tel,
		Webhook: &webhook.Handler{
			AppSecret:   []byte(appSecret),
			VerifyToken: "verify-me",
			Publisher:   &webhook.JetStreamPublisher{JS: js, Tracer: tracerOf(tel)},
			Metrics:     metricsOf(tel),
		},
	}
	for _, f := range mutate {
		f(&cfg)
	}
	h, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return bundle{ledger: ledger, url: srv.URL, js: js, nats: ns, handler: h}
}

func (b bundle) post(t *testing.T, path, token string, body []byte) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

// get answers GET /v1/commands/{id} with token: status and raw body.
func (b bundle) get(t *testing.T, id, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.url+"/v1/commands/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// do sends req and returns the status code and the JSON answer (nil if it
// is not JSON).
func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, out
}

func (b bundle) streamMsgs(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := b.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

const validCommand = `{"id":"order-4711-approve","type":"approve_join_requests",
 "phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
 "params":{"join_request_ids":["MTY0NjcwNDM1OTU6MTIwMzYzNDA0Njk0MjMzODIw"]}}`

func TestCommandIsPublishedOnceWithItsID(t *testing.T) {
	t.Parallel()
	b := setup(t)

	status, body := b.post(t, "/v1/commands", apiToken, []byte(validCommand))
	if status != http.StatusAccepted || body["id"] != "order-4711-approve" {
		t.Fatalf("first POST = %d %v, want 202 with the id", status, body)
	}
	status, body = b.post(t, "/v1/commands", apiToken, []byte(validCommand))
	if status != http.StatusOK || body["status"] != "duplicate" {
		t.Fatalf("second POST = %d %v, want 200 duplicate", status, body)
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 1 {
		t.Fatalf("command stream holds %d messages, want 1", n)
	}
	s, _ := b.js.Stream(context.Background(), "GROUPS_COMMANDS")
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := "groups.cmd.106540352242922.approve_join_requests"; msg.Subject != want {
		t.Errorf("published to %s, want %s", msg.Subject, want)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != "order-4711-approve" {
		t.Errorf("Nats-Msg-Id = %q, want the command id", got)
	}
}

// Outside the stream's 2-minute duplicate window only the ledger knows a
// command id. A command still under way is a duplicate and nothing is
// published; a finished one is a duplicate too, and one copy goes to the
// worker under a message id of its own, for the worker to re-publish the
// stored result (DESIGN §4).
func TestCommandKnownToTheLedgerIsADuplicate(t *testing.T) {
	t.Parallel()

	t.Run("under way", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := b.ledger.Queue(context.Background(), jobs.ClaimRequest{CommandID: "order-4711-approve", CommandType: "approve_join_requests",
			PhoneNumberID: "106540352242922", Command: json.RawMessage(validCommand)}); err != nil {
			t.Fatal(err)
		}
		status, body := b.post(t, "/v1/commands", apiToken, []byte(validCommand))
		if status != http.StatusOK || body["status"] != "duplicate" {
			t.Fatalf("POST of a queued command = %d %v, want 200 duplicate", status, body)
		}
		if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
			t.Fatalf("command stream holds %d messages, want 0", n)
		}
	})

	t.Run("finished", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if _, err := b.ledger.FinishNew(context.Background(), jobs.Entry{CommandID: "order-4711-approve", State: jobs.StateSucceeded}); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			status, body := b.post(t, "/v1/commands", apiToken, []byte(validCommand))
			if status != http.StatusOK || body["status"] != "duplicate" {
				t.Fatalf("POST of a finished command = %d %v, want 200 duplicate", status, body)
			}
		}
		if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 2 {
			t.Fatalf("command stream holds %d messages, want a copy per re-send", n)
		}
		s, _ := b.js.Stream(context.Background(), "GROUPS_COMMANDS")
		msg, err := s.GetMsg(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if id := msg.Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(id, "order-4711-approve/resent/") {
			t.Errorf("Nats-Msg-Id = %q, want one of its own", id)
		}
		if string(msg.Data) != validCommand {
			t.Errorf("published %s, want the command as sent", msg.Data)
		}
	})
}

func TestCommandIDUsedForAnotherCommandIsAConflict(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// order-4711-approve was a create_group: an approval sent under the same
	// id is not a re-send of it, and must not be answered "duplicate" with
	// the group's result.
	created := `{"id":"order-4711-approve","type":"create_group","phone_number_id":"106540352242922","params":{"subject":"Shop"}}`
	if _, err := b.ledger.FinishNew(context.Background(), jobs.Entry{CommandID: "order-4711-approve", CommandType: "create_group",
		PhoneNumberID: "106540352242922", Command: json.RawMessage(created), State: jobs.StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	status, body := b.post(t, "/v1/commands", apiToken, []byte(validCommand))
	msg, _ := body["error"].(string)
	if status != http.StatusConflict || !strings.Contains(msg, "create_group") {
		t.Fatalf("POST of another command under a used id = %d %v, want 409 naming the command the id was used for", status, body)
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
		t.Fatalf("command stream holds %d messages, want 0", n)
	}
}

func TestInvalidCommandIsRefusedWithFieldErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := map[string]string{
		"Not JSON":     `{"id":`,
		"Unknown type": `{"id":"a1","type":"launch_rocket","phone_number_id":"1065"}`,
		"Missing id":   `{"type":"delete_group","phone_number_id":"1065","group_id":"g1"}`,
		"Bad id":       `{"id":"has space","type":"delete_group","phone_number_id":"1065","group_id":"g1"}`,
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			status, out := b.post(t, "/v1/commands", apiToken, []byte(body))
			if status != http.StatusBadRequest {
				t.Fatalf("POST %s = %d %v, want 400", body, status, out)
			}
			if out["error"] == nil {
				t.Errorf("400 answer has no error message: %v", out)
			}
		})
	}
	status, out := b.post(t, "/v1/commands", apiToken, []byte(`{"id":"x1","type":"create_group","phone_number_id":"1065","params":{}}`))
	if status != http.StatusBadRequest {
		t.Fatalf("create_group without subject = %d, want 400", status)
	}
	if errs, _ := out["errors"].([]any); len(errs) == 0 {
		t.Errorf("400 answer lists no field errors: %v", out)
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
		t.Fatalf("invalid commands published %d messages, want 0", n)
	}
}

func TestCommandAPIRequiresAValidToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, token := range []string{"", "wrong", apiToken + "x", "Bearer"} {
		status, _ := b.post(t, "/v1/commands", token, []byte(validCommand))
		if status != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", token, status)
		}
	}
	if n := b.streamMsgs(t, "GROUPS_COMMANDS"); n != 0 {
		t.Fatalf("unauthorised requests published %d messages", n)
	}
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// RFC 9110 section 11.1: the scheme is case-insensitive; clients and
	// proxies send "bearer". Section 11.4: one or more spaces follow it.
	for _, scheme := range []string{"bearer ", "BEARER ", "Bearer  ", "Bearer   "} {
		req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/commands/order-4711-approve", nil)
		req.Header.Set("Authorization", scheme+apiToken)
		if status, out := do(t, req); status != http.StatusNotFound {
			t.Errorf("scheme %q with a valid token: %d %v, want 404 (authorised, unknown id)", scheme, status, out)
		}
	}
}

func TestOversizedCommandIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := `{"id":"big","type":"create_group","phone_number_id":"1065","params":{"subject":"` + strings.Repeat("x", 2<<20) + `"}}`
	status, _ := b.post(t, "/v1/commands", apiToken, []byte(big))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB command: status %d, want 413", status)
	}
}

func TestCommandStatusComesFromTheLedger(t *testing.T) {
	t.Parallel()
	b := setup(t)
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/commands/camp-1:7", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	// An accepted command is not in the ledger until a worker takes it:
	// the answer says so, and where it waits, not only "not received".
	if status, out := do(t, req); status != http.StatusNotFound || !strings.Contains(fmt.Sprint(out["error"]), "once a worker takes it") ||
		!strings.Contains(fmt.Sprint(out["error"]), "waiting in the command stream") {
		t.Fatalf("unknown command: %d %v, want 404 saying an accepted command appears once a worker takes it and waits in the stream until then", status, out)
	}
	if _, err := b.ledger.FinishNew(context.Background(), jobs.Entry{CommandID: "camp-1:7", State: jobs.StateRejected}); err != nil {
		t.Fatal(err)
	}
	status, out := do(t, req.Clone(context.Background()))
	if status != http.StatusOK || out["state"] != "rejected" {
		t.Fatalf("known command: %d %v, want 200 with its ledger state", status, out)
	}
}

func TestCommandStatusDuringANATSOutageSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.nats.Shutdown()
	req, _ := http.NewRequest(http.MethodGet, b.url+"/v1/commands/order-4711-approve", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status with NATS down: %d, Retry-After %q; want 503 with a Retry-After, as a POST gets",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// /readyz needs the streams the ingest publishes to, not only NATS: with
// one gone, every command or webhook would be refused.
func TestReadinessNeedsTheStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.js.DeleteStream(ctx, "GROUPS_WEBHOOKS"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(b.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "GROUPS_WEBHOOKS") {
		t.Fatalf("/readyz without the webhook stream = %d %s, want 503 naming it", resp.StatusCode, body)
	}
	if err := events.Ensure(ctx, b.js, events.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(b.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with the stream back = %d, want 200", resp.StatusCode)
	}
}

func TestReadinessFollowsNATS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	get := func(path string) int {
		resp, err := http.Get(b.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz with NATS up = %d, want 200", got)
	}
	b.nats.Shutdown()
	deadline := time.Now().Add(5 * time.Second)
	for get("/readyz") != http.StatusServiceUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("/readyz still 200 five seconds after NATS went away")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 (the process itself is fine)", got)
	}
}

func sign(body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func TestWebhookThroughTheIngest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body, err := os.ReadFile("../webhook/testdata/meta-examples/groups.webhooks__group_create_succeed.json")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", sign(body))
	req.Header.Set("Content-Type", "application/json")
	if status, _ := do(t, req); status != http.StatusOK {
		t.Fatalf("signed webhook: status %d, want 200", status)
	}
	if n := b.streamMsgs(t, "GROUPS_WEBHOOKS"); n == 0 {
		t.Fatal("signed webhook published nothing")
	}

	forged, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", bytes.NewReader(append(body, ' ')))
	forged.Header.Set("X-Hub-Signature-256", sign(body))
	before := b.streamMsgs(t, "GROUPS_WEBHOOKS")
	if status, _ := do(t, forged); status != http.StatusForbidden {
		t.Fatalf("forged webhook: status %d, want 403", status)
	}
	if after := b.streamMsgs(t, "GROUPS_WEBHOOKS"); after != before {
		t.Fatalf("forged webhook published %d messages", after-before)
	}
}
