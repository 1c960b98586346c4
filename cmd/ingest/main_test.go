package main

import (
	"context"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestInvalidConfigurationStopsStartUpWithOneLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_APP_SECRET": "sekr1t-value", "INGEST_SHUTDOWN_GRACE": "soon"}
	err := runMain(context.Background(), nil, func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("runMain started without WHATSAPP_VERIFY_TOKEN, want a configuration error")
	}
	msg := err.Error()
	for _, want := range []string{"WHATSAPP_VERIFY_TOKEN", "INGEST_SHUTDOWN_GRACE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "sekr1t") {
		t.Errorf("error is not one secret-free line: %q", msg)
	}
}

// A malformed INGEST_API_TOKENS entry (here a token that holds an "@" and
// so reads as a token limited to a number that is not one) stops start-up
// with one line naming the variable and the entry, and nothing of the
// token: neither before the "@" nor after it.
func TestMalformedAPITokenStopsStartUpWithoutShowingIt(t *testing.T) {
	t.Parallel()
	const entries = "t1,Zq8vKx3mW@Rp5nT7yLd"
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(entries, ",", "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tokens := range map[string]map[string]string{
		"INGEST_API_TOKENS":      {"INGEST_API_TOKENS": entries},
		"INGEST_API_TOKENS_FILE": {"INGEST_API_TOKENS_FILE": file},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v", "LOG_LEVEL": "error"}
			maps.Copy(env, tokens)
			// Cancelled: were the tokens taken, runMain would stop at its
			// first wait for NATS instead of running on.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := runMain(ctx, nil, func(k string) string { return env[k] })
			if err == nil {
				t.Fatal("runMain started with a malformed INGEST_API_TOKENS entry, want a configuration error")
			}
			msg := err.Error()
			if !strings.Contains(msg, "INGEST_API_TOKENS") || !strings.Contains(msg, "entry 2") {
				t.Errorf("error %q does not name INGEST_API_TOKENS and its entry 2", msg)
			}
			for _, secret := range []string{"Zq8vKx3mW", "Rp5nT7yLd"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error shows the token's %q: %q", secret, msg)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

// An address the listener would refuse only after JetStream set-up (and
// while NATS is down, not at all) is refused with the other settings.
func TestAnAddressWithoutAPortIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"INGEST_ADDR", "INGEST_METRICS_ADDR"} {
		env := map[string]string{"WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v", name: "8080"}
		_, e := load(func(k string) string { return env[k] })
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), name+": want host:port") {
			t.Errorf("%s=8080: error %v, want one naming %[1]s", name, err)
		}
	}
}

// INGEST_DRAIN is off by default and its table says `0s`: an operator
// turning it off again (over the Kubernetes base's 5s) writes just that.
func TestDrainCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v", "INGEST_DRAIN": "0s"}
	s, e := load(func(k string) string { return env[k] })
	if err := e.Err(); err != nil || s.drain != 0 {
		t.Fatalf("INGEST_DRAIN=0s: drain %v, error %v; want 0 and no error", s.drain, err)
	}
}

func TestPrintConfigListsEveryVariable(t *testing.T) {
	t.Parallel()
	_, e := load(func(string) string { return "" })
	names := map[string]bool{}
	for _, v := range e.Vars() {
		names[v.Name] = true
	}
	for _, want := range []string{"NATS_URL", "WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "INGEST_ADDR", "INGEST_API_TOKENS"} {
		if !names[want] {
			t.Errorf("the ingest does not declare %s", want)
		}
	}
}

// The whole binary against a real NATS: topology, command API with the
// ledger behind GET /v1/commands/{id}, and a clean stop when ctx ends. Its
// address comes from a flag, which wins over the environment.
func TestIngestRunsAgainstNATS(t *testing.T) {
	t.Parallel()
	base, cancel, done := startIngest(t, nil)
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/commands", strings.NewReader(
		`{"id":"e2e-1","type":"delete_group","phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDoxZD"}`))
	req.Header.Set("Authorization", "Bearer t2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/commands = %d, want 202", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, base+"/v1/commands/e2e-1", nil)
	req.Header.Set("Authorization", "Bearer t1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status of a command no worker has seen = %d, want 404", resp.StatusCode)
	}
	metrics, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if metrics.StatusCode != http.StatusOK {
		t.Errorf("/metrics = %d, want 200", metrics.StatusCode)
	}
	// The alerted series at 0 from start-up are the ingest's own: its
	// webhook signature failures, and none of the worker's throttles,
	// which would say the ingest calls Graph.
	for _, want := range []string{
		`groupflow_webhook_signature_failures_total{reason="missing"} 0`,
		`groupflow_webhook_signature_failures_total{reason="mismatch"} 0`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(page), "groupflow_throttles_total") {
		t.Errorf("the ingest's /metrics has the worker's groupflow_throttles_total: %s", grepLines(string(page), "groupflow_throttles_total"))
	}

	cancel()
	awaitStopped(t, done, base)
}

// grepLines returns the lines of page that contain s.
func grepLines(page, s string) string {
	var out []string
	for line := range strings.Lines(page) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "; ")
}

// awaitStopped waits for runMain to return, within 20 s, and fails the test
// unless it returned nil and none of bases answers any more.
func awaitStopped(t *testing.T, done <-chan error, bases ...string) {
	t.Helper()
	awaitStoppedWithin(t, 20*time.Second, done, bases...)
}

// awaitStoppedWithin is awaitStopped within bound.
func awaitStoppedWithin(t *testing.T, bound time.Duration, done <-chan error, bases ...string) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("runMain after stop = %v, want nil", err)
		}
	case <-time.After(bound):
		t.Fatalf("ingest did not stop within %s", bound)
	}
	for _, base := range bases {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after the ingest stopped", base)
		}
	}
}

// startIngest runs the whole binary against a real NATS (a server of its
// own unless env names one in NATS_URL), with env added to a working
// environment, and waits until it is ready. Its address comes from a
// flag, which wins over the environment. done has runMain's result once
// cancel is called.
func startIngest(t *testing.T, env map[string]string) (base string, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	addr := freeAddr(t)
	all := map[string]string{
		"INGEST_ADDR":           "127.0.0.1:1", // the flag below wins
		"WHATSAPP_APP_SECRET":   "s",
		"WHATSAPP_VERIFY_TOKEN": "v",
		"INGEST_API_TOKENS":     "t1,t2",
		"LOG_LEVEL":             "error",
	}
	maps.Copy(all, env)
	if all["NATS_URL"] == "" {
		all["NATS_URL"] = natsembed.RunTest(t).ClientURL()
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	result := make(chan error, 1)
	go func() {
		result <- runMain(ctx, []string{"--ingest-addr", addr}, func(k string) string { return all[k] })
	}()

	base = "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cancel, result
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest not ready after 10 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr is a local address nothing listens on, for the ingest to take.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil { // the server under test takes the address next
		t.Fatal(err)
	}
	return addr
}

// INGEST_API_RATE and INGEST_API_BURST reach the command API: at one
// request in 1000 s with a burst of 1, a token's second request is
// refused with 429 and Retry-After (whatever the machine's speed), the
// other token's is not. Unset, they bound nothing: make run and a
// deployment that does not set them answer as before.
func TestAPIRateBoundsEachToken(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "v"}
	s, e := load(func(k string) string { return env[k] })
	if err := e.Err(); err != nil || s.apiRate != 0 || s.apiBurst != 0 {
		t.Fatalf("defaults: INGEST_API_RATE %v, INGEST_API_BURST %v (%v); want 0 and 0, no bound", s.apiRate, s.apiBurst, err)
	}
	base, cancel, done := startIngest(t, map[string]string{"INGEST_API_RATE": "0.001", "INGEST_API_BURST": "1"})
	post := func(token, id string) (status int, retryAfter string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/commands", strings.NewReader(
			`{"id":"`+id+`","type":"delete_group","phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDoxZD"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if status, _ := post("t1", "rate-1"); status != http.StatusAccepted {
		t.Fatalf("first POST = %d, want 202", status)
	}
	if status, retryAfter := post("t1", "rate-2"); status != http.StatusTooManyRequests || retryAfter != "1000" {
		t.Errorf("second POST = %d with Retry-After %q, want 429 with 1000", status, retryAfter)
	}
	if status, _ := post("t2", "rate-3"); status != http.StatusAccepted {
		t.Errorf("the other token's POST = %d, want 202", status)
	}
	cancel()
	awaitStopped(t, done, base)
}

// With INGEST_METRICS_ADDR set, /metrics is served on that private
// listener, with the probes, and the public one, which Meta's webhooks and
// the command API's callers reach, answers 404 for it.
func TestMetricsMoveToAPrivateListener(t *testing.T) {
	t.Parallel()
	private := "http://" + freeAddr(t)
	base, cancel, done := startIngest(t, map[string]string{"INGEST_METRICS_ADDR": strings.TrimPrefix(private, "http://")})
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, _ := get(base + "/metrics"); status != http.StatusNotFound {
		t.Errorf("GET /metrics on INGEST_ADDR = %d, want 404", status)
	}
	status, page := get(private + "/metrics")
	if status != http.StatusOK || !strings.Contains(page, "groupflow_webhook_signature_failures_total") {
		t.Errorf("GET /metrics on INGEST_METRICS_ADDR = %d, want 200 with groupflow_webhook_signature_failures_total; page starts %.200q", status, page)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if status, body := get(private + p); status != http.StatusOK {
			t.Errorf("GET %s on INGEST_METRICS_ADDR = %d %s, want 200", p, status, body)
		}
		if status, body := get(base + p); status != http.StatusOK {
			t.Errorf("GET %s on INGEST_ADDR = %d %s, want 200 (a load balancer checks the port it sends to)", p, status, body)
		}
	}
	cancel()
	awaitStopped(t, done, base, private)
}

// On SIGTERM with INGEST_DRAIN set, the ingest first says it is not ready
// while it keeps serving (a load balancer stops routing to it), and only
// then closes its listener.
func TestIngestDrainsBeforeClosing(t *testing.T) {
	t.Parallel()
	base, cancel, done := startIngest(t, map[string]string{"INGEST_DRAIN": "1500ms"})
	cancel()
	// Within the drain: unready, yet a command is still taken.
	deadline := time.Now().Add(time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the drain: %v; the listener closed too early", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d a second after the stop, want 503 while draining", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/commands", strings.NewReader(
		`{"id":"drain-1","type":"delete_group","phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDoxZD"}`))
	req.Header.Set("Authorization", "Bearer t1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/commands during the drain: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/commands during the drain = %d, want 202", resp.StatusCode)
	}
	awaitStopped(t, done, base)
}

// SIGTERM while NATS is unreachable: the ingest exits within
// INGEST_SHUTDOWN_GRACE plus the telemetry flush's 5 s, as deploy/ budgets
// it, waiting on NATS for nothing (a flush before the close would wait
// its 10 s).
func TestSIGTERMWhileNATSIsDownExitsWithinTheGrace(t *testing.T) {
	t.Parallel()
	ns := natsembed.RunTest(t)
	const grace = time.Second
	base, cancel, done := startIngest(t, map[string]string{"NATS_URL": ns.ClientURL(), "INGEST_SHUTDOWN_GRACE": grace.String()})
	ns.Shutdown()
	for { // until the ingest knows
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	awaitStoppedWithin(t, grace+5*time.Second, done, base)
}
