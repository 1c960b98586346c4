package sim_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	token  = "test-token"
	secret = "test-secret"
	phone  = "106540352242922"
	waba   = "100000000000001"
)

// bundle is one simulator behind a real HTTP server, plus a webhook
// receiver that checks every signature.
type bundle struct {
	sim    *sim.Server
	srv    *httptest.Server
	client *http.Client
	hooks  *receiver
}

// setup starts a simulator with test defaults (tiny webhook delay, limits
// off) overridden by mod.
func setup(t *testing.T, mod func(*sim.Config)) *bundle {
	t.Helper()
	rcv := newReceiver(t)
	cfg := sim.Config{
		AccessToken:         token,
		AppSecret:           secret,
		WebhookURL:          rcv.srv.URL,
		WebhookDelay:        2 * time.Millisecond,
		MPS:                 -1,
		PairInterval:        -1,
		GroupOpsPerSecond:   -1,
		WebhookRetryBackoff: time.Millisecond,
		Seed:                7,
	}
	if mod != nil {
		mod(&cfg)
	}
	s := sim.New(cfg)
	srv := httptest.NewServer(s)
	tr := &http.Transport{}
	b := &bundle{sim: s, srv: srv, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, hooks: rcv}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		s.Close()
		rcv.srv.Close()
	})
	return b
}

// answer is a decoded Graph answer.
type answer struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

func (a answer) code() int {
	e, _ := a.Body["error"].(map[string]any)
	if e == nil {
		return 0
	}
	return int(e["code"].(float64))
}

func (a answer) str(key string) string {
	v, _ := a.Body[key].(string)
	return v
}

// call sends one Graph request with the bearer token. body may be nil, a
// string (sent raw) or a value sent as JSON.
func (b *bundle) call(t *testing.T, method, path string, body any) answer {
	t.Helper()
	return b.callAs(t, token, method, path, body)
}

func (b *bundle) callAs(t *testing.T, tok, method, path string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return b.do(t, req)
}

func (b *bundle) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.Body); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %s", req.Method, req.URL.Path, raw)
		}
	}
	return a
}

// expectError checks an error answer's HTTP status and Graph code, and
// Meta's error shape.
func expectError(t *testing.T, a answer, status, code int) map[string]any {
	t.Helper()
	if a.Status != status || a.code() != code {
		t.Fatalf("want HTTP %d code %d, got HTTP %d: %s", status, code, a.Status, a.Raw)
	}
	e := a.Body["error"].(map[string]any)
	for _, k := range []string{"message", "type", "code", "error_subcode", "error_data", "fbtrace_id"} {
		if _, ok := e[k]; !ok {
			t.Fatalf("error lacks %q: %s", k, a.Raw)
		}
	}
	ed := e["error_data"].(map[string]any)
	if ed["messaging_product"] != "whatsapp" || ed["details"] == "" {
		t.Fatalf("error_data = %v, want messaging_product and details", ed)
	}
	if want := fmt.Sprintf("(#%d) ", code); !strings.HasPrefix(e["message"].(string), want) {
		t.Fatalf("message %q does not start with %q", e["message"], want)
	}
	return e
}

func expectOK(t *testing.T, a answer, status int) {
	t.Helper()
	if a.Status != status {
		t.Fatalf("want HTTP %d, got %d: %s", status, a.Status, a.Raw)
	}
}

// hook is one received webhook.
type hook struct {
	Field string
	Value hookValue
	Raw   []byte
}

type hookValue struct {
	MessagingProduct string           `json:"messaging_product"`
	Metadata         map[string]any   `json:"metadata"`
	Groups           []map[string]any `json:"groups"`
	Statuses         []map[string]any `json:"statuses"`
	Messages         []map[string]any `json:"messages"`
	Contacts         []map[string]any `json:"contacts"`
}

// receiver is the webhook endpoint: it verifies X-Hub-Signature-256 and
// records what arrived. respond (when set) picks the status per delivery.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	got     []hook
	n       int
	badSig  int
	respond func(n int) int
	notify  chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{t: t, notify: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if !hmac.Equal([]byte(req.Header.Get("X-Hub-Signature-256")), []byte(want)) {
		r.badSig++
		w.WriteHeader(http.StatusForbidden)
		return
	}
	if r.respond != nil {
		if st := r.respond(r.n); st != http.StatusOK {
			w.WriteHeader(st)
			return
		}
	}
	var env struct {
		Object string `json:"object"`
		Entry  []struct {
			ID      string `json:"id"`
			Changes []struct {
				Field string    `json:"field"`
				Value hookValue `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Object != "whatsapp_business_account" ||
		len(env.Entry) != 1 || len(env.Entry[0].Changes) != 1 || env.Entry[0].ID != waba {
		r.t.Errorf("bad webhook envelope: %s", body)
		w.WriteHeader(http.StatusOK)
		return
	}
	c := env.Entry[0].Changes[0]
	r.got = append(r.got, hook{Field: c.Field, Value: c.Value, Raw: body})
	w.WriteHeader(http.StatusOK)
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *receiver) setRespond(f func(n int) int) {
	r.mu.Lock()
	r.respond = f
	r.mu.Unlock()
}

func (r *receiver) badSignatures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.badSig
}

func (r *receiver) all() []hook {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hook(nil), r.got...)
}

// waitFor returns the first received webhook matching pred, waiting for it
// (a deadline only guards against hanging; nothing here measures speed).
func (r *receiver) waitFor(t *testing.T, what string, pred func(hook) bool) hook {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, h := range r.all() {
			if pred(h) {
				return h
			}
		}
		select {
		case <-r.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no webhook %s arrived; got %d webhooks", what, len(r.all()))
		}
	}
}

// waitCount waits until n webhooks match pred and returns them.
func (r *receiver) waitCount(t *testing.T, what string, n int, pred func(hook) bool) []hook {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		var out []hook
		for _, h := range r.all() {
			if pred(h) {
				out = append(out, h)
			}
		}
		if len(out) >= n {
			return out
		}
		select {
		case <-r.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("want %d webhooks %s, got %d", n, what, len(out))
		}
	}
}

// groupEvent matches a group webhook by item type and a property.
func groupEvent(typ, key, val string) func(hook) bool {
	return func(h hook) bool {
		for _, g := range h.Value.Groups {
			if g["type"] == typ && (key == "" || g[key] == val) {
				return true
			}
		}
		return false
	}
}

func firstGroup(h hook) map[string]any { return h.Value.Groups[0] }

// createGroup creates a group and waits for its group_create webhook,
// returning the group id and invite link.
func (b *bundle) createGroup(t *testing.T, subject, mode string) (id, link string) {
	t.Helper()
	body := map[string]any{"messaging_product": "whatsapp", "subject": subject}
	if mode != "" {
		body["join_approval_mode"] = mode
	}
	a := b.call(t, "POST", "/v23.0/"+phone+"/groups", body)
	expectOK(t, a, 200)
	reqID := a.str("request_id")
	h := b.hooks.waitFor(t, "group_create "+reqID, groupEvent("group_create", "request_id", reqID))
	g := firstGroup(h)
	return g["group_id"].(string), g["invite_link"].(string)
}

func (b *bundle) join(t *testing.T, waID, link string) sim.JoinResult {
	t.Helper()
	res, err := b.sim.Join(waID, link)
	if err != nil {
		t.Fatalf("Join(%s): %v", waID, err)
	}
	return res
}
