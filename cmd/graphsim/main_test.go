package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil { // the server under test takes the address next
		t.Fatal(err)
	}
	return addr
}

func TestParseEnvMirrorsAndFlagsWin(t *testing.T) {
	t.Parallel()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parse([]string{"--mps", "5", "--webhook-delay=1s"}, envOf(map[string]string{
		"GRAPHSIM_ADDR":            "127.0.0.1:9999",
		"GRAPHSIM_MPS":             "7",
		"GRAPHSIM_ACCESS_TOKEN":    "env-token",
		"GRAPHSIM_APP_SECRET_FILE": secretFile,
		"GRAPHSIM_SEED":            "42",
		"GRAPHSIM_PAIR_INTERVAL":   "-1s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:9999" || o.mps != 5 || o.accessToken != "env-token" || o.appSecret != "from-file" ||
		o.seed != 42 || o.webhookDelay != time.Second || o.pairInterval != -time.Second {
		t.Fatalf("options = %+v", o)
	}
	d, err := parse(nil, envOf(nil))
	if err != nil || d.addr != "127.0.0.1:8090" || d.accessToken != "dev-token" || d.mps != 80 {
		t.Fatalf("defaults = %+v, %v", d, err)
	}
	// A refused webhook is retried for about ten minutes, as Meta keeps
	// retrying: an ingest restarted under load loses nothing.
	if d.hookAttempts != 30 || d.hookBackoff != 30*time.Second {
		t.Fatalf("webhook retry defaults = %d attempts, %s apart at most; want 30, 30s", d.hookAttempts, d.hookBackoff)
	}
	r, err := parse([]string{"--webhook-max-attempts=3"}, envOf(map[string]string{"GRAPHSIM_WEBHOOK_RETRY_MAX_BACKOFF": "2s"}))
	if err != nil || r.hookAttempts != 3 || r.hookBackoff != 2*time.Second {
		t.Fatalf("webhook retry options = %d, %s, %v", r.hookAttempts, r.hookBackoff, err)
	}
}

func TestParseErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	_, err := parse(nil, envOf(map[string]string{"GRAPHSIM_MPS": "lots", "GRAPHSIM_ACCESS_TOKEN": "s3cr3t"}))
	if err == nil || !strings.Contains(err.Error(), "GRAPHSIM_MPS") || strings.Contains(err.Error(), "s3cr3t") {
		t.Fatalf("err = %v, want GRAPHSIM_MPS named and no secret", err)
	}
	if _, err := parse([]string{"--nope"}, envOf(nil)); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if err := runMain(context.Background(), []string{"--webhook-url", "ftp://x"}, envOf(nil)); err == nil {
		t.Fatal("ftp webhook URL accepted")
	}
	if err := runMain(context.Background(), []string{"--webhook-delay", "-1s"}, envOf(nil)); err == nil {
		t.Fatal("negative webhook delay accepted")
	}
}

func TestRunServesAndStopsOnCancel(t *testing.T) {
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runMain(ctx, []string{"--addr", addr, "--log-level", "warn"}, envOf(map[string]string{"GRAPHSIM_ACCESS_TOKEN": "abc"}))
	}()
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/_sim/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("graphsim never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The README's numbers are their account's from the start, before
	// any use: the worker's account check lists them.
	req, _ := http.NewRequest(http.MethodGet, base+"/v23.0/"+sim.DefaultWABAID+"/phone_numbers", nil)
	req.Header.Set("Authorization", "Bearer abc")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, n := range []string{"106540352242922", "106540352242923"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(listed), `"id":"`+n+`"`) {
			t.Errorf("GET /%s/phone_numbers before any use: %d %s, want %s listed", sim.DefaultWABAID, resp.StatusCode, listed, n)
		}
	}
	get := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/v23.0/106540352242922/groups", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get("abc"); got != 200 {
		t.Fatalf("with the configured token: %d", got)
	}
	if got := get("dev-token"); got != 401 {
		t.Fatalf("with another token: %d, want 401", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("graphsim did not stop")
	}
}

// startSim runs graphsim with args until the test ends and returns its
// base URL once it answers.
func startSim(t *testing.T, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runMain(ctx, append([]string{"--addr", addr, "--log-level", "warn"}, args...), envOf(nil))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run = %v", err)
		}
	})
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/_sim/health") //nolint:noctx // a test's poll
		if err == nil {
			_ = resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("graphsim never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstRequestID creates a group on a fresh simulator and returns the
// request id of its answer: the first id the simulator made.
func firstRequestID(t *testing.T, args ...string) string {
	t.Helper()
	base := startSim(t, args...)
	req, _ := http.NewRequest(http.MethodPost, base+"/v23.0/106540352242922/groups",
		strings.NewReader(`{"messaging_product":"whatsapp","subject":"Restart"}`))
	req.Header.Set("Authorization", "Bearer dev-token")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		RequestID string `json:"request_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.RequestID == "" {
		t.Fatalf("create group: status %d, %v, request id %q", resp.StatusCode, err, body.RequestID)
	}
	return body.RequestID
}

// A restarted simulator must not repeat the ids of the last run: the
// workers' buckets outlive it (make run keeps ./data), and a request id
// seen before belongs to another command there. A seed given on the
// command line still repeats a run exactly.
func TestARestartMakesNewIDsUnlessSeeded(t *testing.T) {
	if a, b := firstRequestID(t), firstRequestID(t); a == b {
		t.Errorf("two starts without --seed both answered request id %s", a)
	}
	if a, b := firstRequestID(t, "--seed", "7"), firstRequestID(t, "--seed", "7"); a != b {
		t.Errorf("two starts with --seed 7 answered %s and %s, want the same", a, b)
	}
}
