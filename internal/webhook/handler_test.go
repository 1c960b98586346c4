package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/testutil"
	"github.com/groupflow/groupflow/internal/webhook"
)

const testSecret = "test-app-secret-do-not-log"

type testBundle struct {
	srv     *natsembed.Server
	nc      *nats.Conn
	stream  jetstream.Stream
	handler *webhook.Handler
	url     string
	logs    *testutil.SyncBuffer
}

// setup starts an embedded JetStream with the webhook stream, and the
// handler behind a real HTTP server.
func setup(t *testing.T, configure ...func(*webhook.Handler)) *testBundle {
	t.Helper()
	srv := natsembed.RunTest(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	names := events.Names{}
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:       names.WebhookStream(),
		Subjects:   []string{names.AllWebhooks()},
		Storage:    jetstream.FileStorage,
		Duplicates: 10 * time.Minute,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	h := &webhook.Handler{
		AppSecret:   []byte(testSecret),
		VerifyToken: "verify-me",
		Publisher:   webhook.JetStreamPublisher{JS: js, Names: names},
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	}
	for _, c := range configure {
		c(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return &testBundle{srv: srv, nc: nc, stream: stream, handler: h, url: hs.URL, logs: logs}
}

// post sends body signed with sig (use sign for a good one).
func (b *testBundle) post(t *testing.T, body []byte, sig string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(webhook.SignatureHeader, sig)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func sign(body []byte) string { return webhook.Sign([]byte(testSecret), body) }

type stored struct {
	subject, msgID string
	item           webhook.Item
}

// stored reads every message in the webhook stream.
func (b *testBundle) stored(t *testing.T) []stored {
	t.Helper()
	ctx := context.Background()
	info, err := b.stream.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := b.stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		var it webhook.Item
		if err := json.Unmarshal(m.Data, &it); err != nil {
			t.Fatalf("message %d is not an item: %v", seq, err)
		}
		out = append(out, stored{subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), item: it})
	}
	return out
}

// assertStoredOnce checks that the stream holds each of want exactly once,
// under its subject and MsgID, and nothing else.
func (b *testBundle) assertStoredOnce(t *testing.T, want []webhook.Item) {
	t.Helper()
	got := b.stored(t)
	if len(got) != len(want) {
		t.Fatalf("stream holds %d messages, want %d (one per item)", len(got), len(want))
	}
	byID := map[string]webhook.Item{}
	for _, it := range want {
		byID[it.MsgID] = it
	}
	for _, s := range got {
		it, ok := byID[s.msgID]
		if !ok {
			t.Fatalf("stream holds unexpected or duplicate message %s on %s", s.msgID, s.subject)
		}
		delete(byID, s.msgID)
		wantSubject := "groups.webhook." + it.PhoneNumberID + "." + it.Field
		if s.subject != wantSubject {
			t.Errorf("item %s stored on %s, want %s", it.MsgID, s.subject, wantSubject)
		}
		if s.item.MsgID != it.MsgID || s.item.Kind != it.Kind || s.item.Type != it.Type || s.item.GroupID != it.GroupID ||
			!bytes.Equal(s.item.Data, it.Data) {
			t.Errorf("stored item\n%+v\nwant\n%+v", s.item, it)
		}
	}
}

func TestHandlerStoresEveryItem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var want []webhook.Item
	for _, f := range []string{"fields__group_participants_update.json", "messages__group_statuses_aggregated.json", "messages__group_text.json"} {
		body := readFixture(t, f)
		if code := b.post(t, body, sign(body)); code != http.StatusOK {
			t.Fatalf("POST %s = %d, want 200", f, code)
		}
		want = append(want, mustParse(t, body)...)
	}
	b.assertStoredOnce(t, want)
	for _, s := range b.stored(t) {
		if _, err := webhook.Decode(s.item); err != nil {
			t.Errorf("stored item %s does not decode: %v", s.msgID, err)
		}
	}
}

func TestHandlerStoresALargeBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := batch(1000)
	if code := b.post(t, body, sign(body)); code != http.StatusOK {
		t.Fatalf("POST = %d, want 200", code)
	}
	b.assertStoredOnce(t, mustParse(t, body))
}

func TestHandlerDropsRedeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := readFixture(t, "fields__group_lifecycle_update.json")
	again := reserialise(t, body)
	for i, delivery := range [][]byte{body, body, again} {
		if code := b.post(t, delivery, sign(delivery)); code != http.StatusOK {
			t.Fatalf("delivery %d = %d, want 200", i, code)
		}
	}
	b.assertStoredOnce(t, mustParse(t, body))
}

func TestHandlerRefusesWithoutPublishing(t *testing.T) {
	t.Parallel()
	b := setup(t, func(h *webhook.Handler) { h.MaxBody = 8 << 10 })
	good := readFixture(t, "groups.webhooks__group_create_succeed.json")
	// Valid and signed, but over the limit.
	big := append(append([]byte(nil), good...), bytes.Repeat([]byte(" "), 10<<10)...)

	tests := []struct {
		name     string
		body     []byte
		sig      string
		chunked  bool
		wantCode int
	}{
		{"Signature missing", good, "", false, http.StatusUnauthorized},
		{"Signature from another secret", good, webhook.Sign([]byte("other"), good), false, http.StatusForbidden},
		{"Signature of another body", good, sign(big), false, http.StatusForbidden},
		{"Garbage signature", good, "sha256=nothex", false, http.StatusForbidden},
		{"Body over the limit", big, sign(big), false, http.StatusRequestEntityTooLarge},
		{"Body over the limit without a length", big, sign(big), true, http.StatusRequestEntityTooLarge},
		{"Signed but not JSON", []byte("hello"), sign([]byte("hello")), false, http.StatusBadRequest},
		{"Signed but not a webhook", []byte(`{"object":"page","entry":[]}`), sign([]byte(`{"object":"page","entry":[]}`)), false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			if tt.chunked {
				// Hide the length so the limit must be enforced while reading.
				req, err := http.NewRequest(http.MethodPost, b.url, io.MultiReader(bytes.NewReader(tt.body)))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set(webhook.SignatureHeader, tt.sig)
				code = do(t, req)
			} else {
				code = b.post(t, tt.body, tt.sig)
			}
			if code != tt.wantCode {
				t.Fatalf("POST = %d, want %d", code, tt.wantCode)
			}
			if got := b.stored(t); len(got) != 0 {
				t.Fatalf("stream holds %d messages after a refused delivery, want 0", len(got))
			}
		})
	}
	if logs := b.logs.String(); strings.Contains(logs, testSecret) || strings.Contains(logs, strings.TrimPrefix(sign(good), "sha256=")) {
		t.Fatalf("logs leak the app secret or an expected signature:\n%s", logs)
	}
}

// Anyone can post unsigned bodies as fast as they like: each is refused
// (and counted by the metrics), but the log gets one line a second, with
// the sender's address, not one per request.
func TestRefusedSignaturesAreLoggedAtMostOnceASecond(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	for range 50 {
		if code := b.post(t, body, ""); code != http.StatusUnauthorized {
			t.Fatalf("unsigned POST = %d, want 401", code)
		}
	}
	lines := strings.Count(b.logs.String(), "webhook refused: signature")
	if lines < 1 || lines > 2 { // two if the posts straddled a second
		t.Fatalf("%d log lines for 50 refused posts, want 1 (or 2):\n%s", lines, b.logs.String())
	}
	if !strings.Contains(b.logs.String(), "remote_addr=127.0.0.1:") {
		t.Errorf("the refusal does not say who sent it:\n%s", b.logs.String())
	}
}

// A POST that cannot be Meta's (no signature, or one that is not a
// signature) is refused before its body is read: a client announcing
// megabytes and sending nothing got them allocated, and held the
// connection for ever, waiting.
func TestAnUnsignedPostIsRefusedBeforeItsBody(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if got := testutil.PostWithoutBody(t, b.url, "/", "", 3<<20); !strings.Contains(got, "401") {
		t.Errorf("unsigned: %q, want 401", got)
	}
	if got := testutil.PostWithoutBody(t, b.url, "/", webhook.SignatureHeader+": sha256=nothex\r\n", 3<<20); !strings.Contains(got, "403") {
		t.Errorf("malformed signature: %q, want 403", got)
	}
}

func TestHandlerVerifiesWithAReplacedAppSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := readFixture(t, "groups.webhooks__group_create_succeed.json")
	serve := func(sig string) int {
		// In this goroutine, so that replacing the secret is no data race.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		req.Header.Set(webhook.SignatureHeader, sig)
		b.handler.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := serve(sign(body)); code != http.StatusOK {
		t.Fatalf("POST signed with the secret = %d, want 200", code)
	}
	b.handler.AppSecret = []byte("rotated-secret")
	if code := serve(sign(body)); code != http.StatusForbidden {
		t.Fatalf("POST signed with the replaced secret = %d, want 403", code)
	}
	if code := serve(webhook.Sign([]byte("rotated-secret"), body)); code != http.StatusOK {
		t.Fatalf("POST signed with the new secret = %d, want 200", code)
	}
}

func TestHandlerNotConfigured(t *testing.T) {
	t.Parallel()
	body := readFixture(t, "groups.webhooks__group_suspended.json")
	for name, h := range map[string]*webhook.Handler{
		"No app secret": {Publisher: webhook.JetStreamPublisher{}, Logger: slog.New(slog.DiscardHandler)},
		"No publisher":  {AppSecret: []byte(testSecret), Logger: slog.New(slog.DiscardHandler)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header.Set(webhook.SignatureHeader, sign(body))
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusInternalServerError {
				t.Fatalf("POST = %d, want 500", rec.Code)
			}
		})
	}
}

func TestHandlerAnswers503WhileNATSIsDown(t *testing.T) {
	t.Parallel()
	b := setup(t, func(h *webhook.Handler) { h.PublishTimeout = 2 * time.Second })
	body := readFixture(t, "messages__group_statuses_aggregated.json")
	opts := b.srv.Options()

	b.srv.Shutdown()
	if code := b.post(t, body, sign(body)); code != http.StatusServiceUnavailable {
		t.Fatalf("POST with NATS down = %d, want 503 so that Meta retries", code)
	}

	// Same store, same port: the client reconnects by itself.
	srv, err := natsembed.Start(natsembed.Options{Dir: opts.Dir, Port: opts.Port})
	if err != nil {
		t.Fatalf("restart NATS: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	waitConnected(t, b.nc)

	// Meta's retry. Whatever the failed attempt left buffered in the client
	// and flushed on reconnect must not show up twice.
	if code := b.post(t, body, sign(body)); code != http.StatusOK {
		t.Fatalf("POST after restart = %d, want 200", code)
	}
	b.assertStoredOnce(t, mustParse(t, body))
}

// waitConnected waits for the client to reconnect; it is a readiness wait,
// not an assertion on timing.
func waitConnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("client did not reconnect to the restarted server (status %v)", nc.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
