package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/testutil"
)

// answer is one command API answer: status, Retry-After and JSON body.
type answer struct {
	status     int
	retryAfter string
	body       map[string]any
}

// call sends method path with token (and body for a POST).
func (b bundle) call(t *testing.T, method, path, token string, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return answer{}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err) // Error, not Fatal: called from goroutines too
		return answer{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// commandIDs lists the Nats-Msg-Id of every message in the command stream.
func (b bundle) commandIDs(t *testing.T) map[string]bool {
	t.Helper()
	s, err := b.js.Stream(context.Background(), "GROUPS_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("command stream message %d: %v", seq, err)
		}
		ids[msg.Header.Get("Nats-Msg-Id")] = true
	}
	return ids
}

// A caller flooding the command API with its token gets what its bound
// allows and 429 for the rest, with Retry-After and a JSON error, and
// nothing of the refused commands reaches the stream; its reads are
// counted too. Another token at the same time gets every request through,
// and so do Meta's webhooks, which no token bounds. Once the bound's time
// has passed the caller is served again. Each refusal is counted by the
// token's entry, and neither the count nor the log shows the token.
func TestCallerOverItsRateIsRefusedAndOthersAreNot(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	tel := withMetrics(t)
	logs := &testutil.SyncBuffer{}
	b := setupWith(t, tel, func(c *ingest.Config) {
		c.APIRate, c.APIBurst, c.Now = 0.5, 2, clk.Now // a token back every 2 s
		// other-token (entry 1) has a burst of its own, for two POSTs
		// and a GET; apiToken (entry 2) floods.
		c.APITokens = []string{"other-token;burst=3", apiToken}
		c.Logger = slog.New(telemetry.NewLogHandler(logs, slog.LevelInfo))
	})

	const flood = 12
	var wg sync.WaitGroup
	answers := make([]answer, flood)
	for i := range flood {
		wg.Go(func() {
			answers[i] = b.call(t, http.MethodPost, "/v1/commands", apiToken, approval(fmt.Sprintf("flood-%d", i), phoneA))
		})
	}
	others := make([]answer, 2)
	for i := range others {
		wg.Go(func() {
			others[i] = b.call(t, http.MethodPost, "/v1/commands", "other-token", approval(fmt.Sprintf("other-%d", i), phoneA))
		})
	}
	wg.Wait()

	accepted := map[string]bool{}
	refused := 0
	for i, a := range answers {
		switch a.status {
		case http.StatusAccepted:
			accepted[fmt.Sprintf("flood-%d", i)] = true
		case http.StatusTooManyRequests:
			refused++
			if a.retryAfter != "2" {
				t.Errorf("429 with Retry-After %q, want 2 (a token comes back every 2 s)", a.retryAfter)
			}
			if msg, _ := a.body["error"].(string); !strings.Contains(msg, "rate") {
				t.Errorf("429 body %v, want a JSON error about the token's rate", a.body)
			}
		default:
			t.Errorf("flooding POST = %d %v, want 202 or 429", a.status, a.body)
		}
	}
	if len(accepted) != 2 || refused != flood-2 {
		t.Errorf("flood of %d: %d accepted, %d refused; want the burst's 2 accepted and the rest refused", flood, len(accepted), refused)
	}
	for i, a := range others {
		if a.status != http.StatusAccepted {
			t.Errorf("other token's POST %d during the flood = %d %v, want 202", i, a.status, a.body)
		}
		accepted[fmt.Sprintf("other-%d", i)] = true
	}
	if got := b.commandIDs(t); !maps.Equal(got, accepted) {
		t.Errorf("command stream holds %v, want exactly the accepted commands %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(accepted)))
	}

	// Reads are counted by the same bound: refused for the flooder,
	// served for the other token.
	if a := b.call(t, http.MethodGet, "/v1/commands/flood-0", apiToken, nil); a.status != http.StatusTooManyRequests || a.retryAfter != "2" {
		t.Errorf("GET by the token over its bound = %d (Retry-After %q), want 429 with Retry-After 2", a.status, a.retryAfter)
	}
	if a := b.call(t, http.MethodGet, "/v1/commands/other-0", "other-token", nil); a.status != http.StatusNotFound {
		t.Errorf("GET by the other token = %d %v, want 404 (no worker has taken it)", a.status, a.body)
	}

	// Meta's webhooks are not the command API's: no token, no bound.
	hook, err := os.ReadFile("../webhook/testdata/meta-examples/groups.webhooks__group_create_succeed.json")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodPost, b.url+"/webhook", bytes.NewReader(hook))
		req.Header.Set("X-Hub-Signature-256", sign(hook))
		if status, out := do(t, req); status != http.StatusOK {
			t.Fatalf("webhook %d while a token is over its bound = %d %v, want 200", i, status, out)
		}
	}

	// The bound recovers: one token back after 2 s, and only one.
	clk.Advance(2 * time.Second)
	if a := b.call(t, http.MethodPost, "/v1/commands", apiToken, approval("after", phoneA)); a.status != http.StatusAccepted {
		t.Fatalf("POST 2 s later = %d %v, want 202", a.status, a.body)
	}
	if a := b.call(t, http.MethodPost, "/v1/commands", apiToken, approval("after-2", phoneA)); a.status != http.StatusTooManyRequests {
		t.Errorf("second POST 2 s later = %d %v, want 429", a.status, a.body)
	}

	page := scrapeMetrics(t, b.url)
	if got := sampleValue(page, "groupflow_api_rate_limited_total{", `caller_entry="2"`); got != fmt.Sprint(flood-2+2) {
		t.Errorf(`groupflow_api_rate_limited_total{caller_entry="2"} = %q, want %d (the flood's, the GET's and the last POST's)`, got, flood-2+2)
	}
	if got := sampleValue(page, "groupflow_api_rate_limited_total{", `caller_entry="1"`); got != "" {
		t.Errorf(`groupflow_api_rate_limited_total{caller_entry="1"} = %q, want no series: the other token was never refused`, got)
	}
	for name, text := range map[string]string{"/metrics": page, "the log": logs.String()} {
		if strings.Contains(text, apiToken) || strings.Contains(text, "other-token") {
			t.Errorf("%s shows a token's text", name)
		}
	}
	// One line for the 12 refusals: the clock moved 2 s, not a minute.
	if n := strings.Count(logs.String(), "over its rate bound"); n != 1 || !strings.Contains(logs.String(), `"caller_entry":2`) {
		t.Errorf("%d log lines about the rate bound, want 1 naming caller_entry 2:\n%s", n, logs)
	}
}

// An entry's own ";rate=" takes the place of APIRate for its token: 0
// lifts the bound (an operator's own service), a lower one holds a
// tenant tighter than the rest.
func TestAnEntrysOwnRateTakesThePlaceOfAPIRate(t *testing.T) {
	t.Parallel()
	clk := testutil.NewClock(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	b := setupWith(t, nil, func(c *ingest.Config) {
		c.APIRate, c.APIBurst, c.Now = 1, 2, clk.Now
		c.APITokens = []string{"ops-token;rate=0", tenantA + "@" + phoneA + ";rate=0.25;burst=1", apiToken}
	})
	for i := range 20 {
		if a := b.call(t, http.MethodPost, "/v1/commands", "ops-token", approval(fmt.Sprintf("ops-%d", i), phoneA)); a.status != http.StatusAccepted {
			t.Fatalf("POST %d by a token whose entry has rate=0 = %d %v, want 202: no bound", i, a.status, a.body)
		}
	}
	if a := b.call(t, http.MethodPost, "/v1/commands", tenantA, approval("tenant-1", phoneA)); a.status != http.StatusAccepted {
		t.Fatalf("tenant's first POST = %d %v, want 202", a.status, a.body)
	}
	if a := b.call(t, http.MethodPost, "/v1/commands", tenantA, approval("tenant-2", phoneA)); a.status != http.StatusTooManyRequests || a.retryAfter != "4" {
		t.Errorf("tenant's second POST = %d (Retry-After %q), want 429 after its own burst of 1, Retry-After 4 (0.25/s)", a.status, a.retryAfter)
	}
	for i := range 2 {
		if a := b.call(t, http.MethodPost, "/v1/commands", apiToken, approval(fmt.Sprintf("plain-%d", i), phoneA)); a.status != http.StatusAccepted {
			t.Errorf("plain token's POST %d = %d %v, want 202 within APIBurst's 2", i, a.status, a.body)
		}
	}
	if a := b.call(t, http.MethodPost, "/v1/commands", apiToken, approval("plain-2", phoneA)); a.status != http.StatusTooManyRequests || a.retryAfter != "1" {
		t.Errorf("plain token's third POST = %d (Retry-After %q), want 429 with Retry-After 1 (APIRate 1/s)", a.status, a.retryAfter)
	}
}

// A token whose bound lets a request through less often than a
// time.Duration can say (a rate of 1e-12, about one in 31,700 years) is
// told to come back that much later, not in a second: the wait overflowed
// to a negative duration, and Retry-After said 1.
func TestATokenBoundAlmostShutIsToldToWaitLong(t *testing.T) {
	t.Parallel()
	b := setupWith(t, nil, func(c *ingest.Config) {
		c.APITokens = []string{tenantA + ";rate=1e-12"}
	})
	if a := b.call(t, http.MethodPost, "/v1/commands", tenantA, approval("almost-shut-1", phoneA)); a.status != http.StatusAccepted {
		t.Fatalf("first POST = %d %v, want 202 (its burst of 1)", a.status, a.body)
	}
	a := b.call(t, http.MethodPost, "/v1/commands", tenantA, approval("almost-shut-2", phoneA))
	if secs, err := strconv.ParseInt(a.retryAfter, 10, 64); a.status != http.StatusTooManyRequests || err != nil || secs < 1e9 {
		t.Errorf("second POST = %d with Retry-After %q, want 429 with Retry-After of 1e9 seconds or more", a.status, a.retryAfter)
	}
}

// A negative or non-finite rate, or a negative burst, is a
// configuration error.
func TestInvalidAPIRateIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc, err := nats.Connect(b.nats.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	for _, c := range []struct {
		rate  float64
		burst int
	}{{-1, 0}, {1, -1}} {
		cfg := ingest.Config{Conn: nc, JS: b.js, Webhook: http.NotFoundHandler(), APIRate: c.rate, APIBurst: c.burst}
		if _, err := ingest.New(cfg); err == nil || !strings.Contains(err.Error(), "API") {
			t.Errorf("New with APIRate %v, APIBurst %d = %v, want an error naming it", c.rate, c.burst, err)
		}
	}
	// A burst with no rate to go with it bounds nothing: the operator
	// meant a bound, so say so rather than run without one.
	for _, c := range []struct {
		rate  float64
		entry string
	}{{0, "s3cr3t;burst=5"}, {2, "s3cr3t;rate=0;burst=5"}} {
		cfg := ingest.Config{Conn: nc, JS: b.js, Webhook: http.NotFoundHandler(), APIRate: c.rate, APITokens: []string{"other", c.entry}}
		_, err := ingest.New(cfg)
		if err == nil || !strings.Contains(err.Error(), "entry 2") || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("New with APIRate %v and entry %q = %v, want an error naming entry 2, not its token", c.rate, c.entry, err)
		}
	}
}

func scrapeMetrics(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}
