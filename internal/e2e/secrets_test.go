package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/webhook"
)

// TestSecretsNeverLeak drives the stack through its success and failure
// paths — a bad webhook signature, wrong API tokens, a throttle, a
// permanent Graph error, retries exhausted into the DLQ, and an access
// token the Graph API refuses (190) — capturing every log line, span,
// NATS message, metric and error text, and proves that none holds the
// access token, the app secret or an API token.
func TestSecretsNeverLeak(t *testing.T) {
	s := setup(t, func(o *stackOpts) { o.maxDeliver = 2 })
	sec := s.opts.secrets
	wire := s.captureNATS(t)
	var answers []string // every response body and error text handed back
	answer := func(what string, code int, body []byte) {
		answers = append(answers, fmt.Sprintf("%s: %d %s", what, code, body))
	}
	stopA := s.startWorker(t, workerOpts{})

	// Success: a group created (webhook and all) and its link read.
	code, body := s.post(t, command("secret-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Secretive"}), sec.APIToken)
	answer("create", code, body)
	_, created := s.events.Terminal(t, "secret-create")
	if created.Outcome != events.OutcomeSucceeded {
		t.Fatalf("create_group: %q %+v, want succeeded", created.Outcome, created.Error)
	}
	group := created.GroupID
	code, body = s.post(t, command("secret-link", events.GetInviteLink, group, nil), sec.APIToken)
	answer("link", code, body)
	s.events.Terminal(t, "secret-link")

	// The API refuses wrong and missing tokens; status reads go through.
	for _, tok := range []string{"", "wrong-token", sec.APIToken + "x"} {
		code, body = s.post(t, command("secret-refused", events.GetInviteLink, group, nil), tok)
		if code != http.StatusUnauthorized {
			t.Errorf("POST with token %q = %d, want 401", tok, code)
		}
		answer("refused post", code, body)
	}
	for _, tok := range []string{sec.APIToken, "wrong-token"} {
		req, _ := http.NewRequest(http.MethodGet, s.ingestURL+"/v1/commands/secret-create", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		code, body = s.do(t, req)
		answer("status", code, body)
	}

	// Webhooks: a wrong signature, none, one made with another secret, a
	// malformed body; the verify handshake right and wrong.
	hook := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	for _, sig := range []string{"sha256=" + strings.Repeat("0", 64), "", webhook.Sign([]byte("not-the-secret"), hook), "sha256=zz"} {
		req, _ := http.NewRequest(http.MethodPost, s.ingestURL+"/webhook", strings.NewReader(string(hook)))
		if sig != "" {
			req.Header.Set(webhook.SignatureHeader, sig)
		}
		code, body = s.do(t, req)
		if code < 400 {
			t.Errorf("webhook with signature %q = %d, want refused", sig, code)
		}
		answer("bad webhook", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.ingestURL+"/webhook", strings.NewReader("{not json"))
	req.Header.Set(webhook.SignatureHeader, webhook.Sign([]byte(sec.AppSecret), []byte("{not json")))
	code, body = s.do(t, req)
	answer("malformed webhook", code, body)
	for _, vt := range []string{sec.VerifyToken, "wrong"} {
		q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {vt}, "hub.challenge": {"1158201444"}}
		req, _ := http.NewRequest(http.MethodGet, s.ingestURL+"/webhook?"+q.Encode(), nil)
		code, body = s.do(t, req)
		answer("handshake", code, body)
	}

	// A throttle, then success on the retry.
	must(t, s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Limit: 1, Throttle: 1,
		ThrottleCode: graph.CodeThroughput, ThrottleRetryAfter: 10 * time.Millisecond}))
	code, body = s.post(t, command("secret-throttled", events.GetInviteLink, group, nil), sec.APIToken)
	answer("throttled", code, body)
	if _, r := s.events.Terminal(t, "secret-throttled"); r.Outcome != events.OutcomeSucceeded || r.Attempts < 2 {
		t.Errorf("throttled command: %q after %d attempts, want succeeded on a retry", r.Outcome, r.Attempts)
	}

	// A permanent error: the group, recorded as the number's, does not
	// exist for Graph.
	s.knownAs(t, "120363999999999999", phone)
	code, body = s.post(t, command("secret-permanent", events.GetInviteLink, "120363999999999999", nil), sec.APIToken)
	answer("permanent", code, body)
	if _, r := s.events.Terminal(t, "secret-permanent"); r.Outcome != events.OutcomeFailed || r.Error == nil || r.Error.Code == 0 {
		t.Errorf("unknown group: %q %+v, want failed with a Graph code", r.Outcome, r.Error)
	}

	// Transient errors on every delivery: dead-lettered.
	must(t, s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Status5xx: 1}))
	code, body = s.post(t, command("secret-dlq", events.GetInviteLink, group, nil), sec.APIToken)
	answer("dlq", code, body)
	if _, r := s.events.Terminal(t, "secret-dlq"); r.Outcome != events.OutcomeFailed || r.Error == nil || r.Error.Reason != events.ReasonRetriesExhausted {
		t.Errorf("always-5xx command: %q %+v, want failed with retries_exhausted", r.Outcome, r.Error)
	}
	must(t, s.sim.SetFaults(sim.Faults{}))
	stopA()

	// Code 190: a Graph API that does not accept the worker's token.
	other := sim.New(sim.Config{AccessToken: "a-token-the-worker-does-not-have"})
	otherSrv := httptest.NewServer(other)
	t.Cleanup(func() { otherSrv.Close(); other.Close() })
	s.startWorker(t, workerOpts{graphURL: otherSrv.URL})
	code, body = s.post(t, command("secret-190", events.CreateGroup, "", events.CreateGroupParams{Subject: "Refused"}), sec.APIToken)
	answer("190", code, body)
	// The worker's fault, not the command's: it waits (re-queued) with the
	// refusal in its history, and is not failed.
	deadline := time.Now().Add(30 * time.Second)
	for refused := false; !refused; {
		if time.Now().After(deadline) {
			t.Fatal("secret-190 has no attempt refused with code 190")
		}
		time.Sleep(20 * time.Millisecond)
		e, _, err := s.ledger.Get(context.Background(), "secret-190")
		if err == nil {
			refused = slices.ContainsFunc(e.Attempts, func(a jobs.Attempt) bool { return a.Code == 190 && a.Outcome == "credentials" })
		}
	}
	if rs := s.events.Terminals("secret-190"); len(rs) > 0 {
		t.Errorf("refused token: terminal %+v, want the command waiting", rs[0])
	}
	// The Graph client's own errors, as a caller sees them.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, base := range []string{otherSrv.URL, "http://127.0.0.1:1"} {
		gc, err := graph.New(graph.Config{BaseURL: base, AccessToken: sec.AccessToken, HTTPClient: &http.Client{Transport: tr}})
		must(t, err)
		_, err = gc.InviteLink(context.Background(), group)
		if err == nil {
			t.Fatalf("InviteLink against %s succeeded", base)
		}
		answers = append(answers, fmt.Sprintf("graph error: %v / %+v", err, err))
	}
	_, err := graph.New(graph.Config{BaseURL: "http://user:" + sec.AccessToken + "@h/?x=1", AccessToken: sec.AccessToken})
	answers = append(answers, fmt.Sprintf("graph config error: %v", err))

	// Everything that was produced.
	spans := s.waitSpans(t, "the 190 call", func(all tracetest.SpanStubs) bool {
		for _, sp := range all {
			if sp.Name == "POST /v23.0/{phone_number_id}/groups" && attr(sp, "http.response.status_code") == "401" {
				return true
			}
		}
		return false
	})
	captured := map[string]string{
		"logs":           s.logs.String(),
		"spans":          spansText(spans),
		"NATS traffic":   wire.text(),
		"streams":        s.streamsText(t),
		"answers":        strings.Join(answers, "\n"),
		"ingest metrics": scrapeText(t, s.ingestTel.MetricsHandler()),
		"worker metrics": scrapeText(t, s.workerTel.MetricsHandler()),
	}

	// The failure paths did leave traces to search: a search of nothing
	// proves nothing.
	for what, want := range map[string][]string{
		"logs":         {"190", "signature", "retried", "dead-lettering", "throttl"},
		"spans":        {"401", "429", "50", "command.failed"},
		"NATS traffic": {"retries_exhausted", `"code":190`, "secret-dlq:dlq:"},
		"answers":      {"401", "missing or invalid bearer token", "1158201444"},
	} {
		for _, w := range want {
			if !strings.Contains(strings.ToLower(captured[what]), strings.ToLower(w)) {
				t.Errorf("%s lack %q: the failure path it stands for was not exercised", what, w)
			}
		}
	}
	for what, text := range captured {
		for name, secret := range map[string]string{
			"access token": sec.AccessToken, "app secret": sec.AppSecret, "API token": sec.APIToken, "verify token": sec.VerifyToken,
		} {
			if i := leak(text, secret); i >= 0 {
				lo, hi := max(i-120, 0), min(i+len(secret)+40, len(text))
				t.Errorf("the %s appears in the %s: …%s…", name, what, text[lo:hi])
			}
		}
	}
}

// leak finds secret, or a distinctive part of it, in text (any case);
// -1 when absent.
func leak(text, secret string) int {
	lt := strings.ToLower(text)
	for _, part := range []string{secret, secret[len(secret)/2:], secret[:len(secret)/2]} {
		if i := strings.Index(lt, strings.ToLower(part)); i >= 0 {
			return i
		}
	}
	return -1
}

func TestLeakFindsSecretsAndParts(t *testing.T) {
	t.Parallel()
	const secret = "EAAG-e2e-ACCESS-TOKEN-7f3a9c2e51d8"
	for _, text := range []string{secret, "x" + strings.ToLower(secret), "token=" + secret[17:], secret[:17] + "…"} {
		if leak(text, secret) < 0 {
			t.Errorf("leak(%q) found nothing", text)
		}
	}
	if i := leak("Bearer REDACTED", secret); i >= 0 {
		t.Errorf("leak found a secret in a redacted text at %d", i)
	}
}

// natsWire is every message published on groupflow's subjects while the
// test ran: commands, webhook items, events, dead letters, queries, KV and
// object store writes (the ledger), JetStream API requests and acks.
type natsWire struct {
	mu   sync.Mutex
	msgs []string
}

func (s *stack) captureNATS(t *testing.T) *natsWire {
	t.Helper()
	w := &natsWire{}
	// Not ">": interest in every _INBOX would keep a stopped worker's
	// pull requests alive on the server, which would then deliver
	// commands to them. Inbox traffic is replies and copies of stored
	// messages, which are read from the streams.
	for _, subject := range []string{s.names.AllCommands(), s.names.AllWebhooks(), s.names.AllEvents(), s.names.AllDLQ(),
		s.names.AllQueries(), "$KV.>", "$O.>", "$JS.>"} {
		sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.msgs = append(w.msgs, fmt.Sprintf("%s %v %s", m.Subject, m.Header, m.Data))
		})
		must(t, err)
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	must(t, s.nc.Flush())
	return w
}

func (w *natsWire) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msgs, "\n")
}

// streamsText reads every message still stored in every stream (KV
// buckets included), headers and all.
func (s *stack) streamsText(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	names := s.js.StreamNames(ctx)
	for name := range names.Name() {
		st, err := s.js.Stream(ctx, name)
		must(t, err)
		info, err := st.Info(ctx)
		must(t, err)
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted (acked from a work queue, purged)
			}
			fmt.Fprintf(&b, "%s %s %v %s\n", name, m.Subject, m.Header, m.Data)
		}
	}
	must(t, names.Err())
	return b.String()
}

// spansText renders everything a span carries to a backend: name,
// attributes, events and their attributes, status, links, resource.
func spansText(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, sp := range spans {
		fmt.Fprintf(&b, "%s kind=%v status=%v %q\n", sp.Name, sp.SpanKind, sp.Status.Code, sp.Status.Description)
		for _, a := range sp.Attributes {
			fmt.Fprintf(&b, "  %s=%s\n", a.Key, a.Value.String())
		}
		for _, e := range sp.Events {
			fmt.Fprintf(&b, "  event %s\n", e.Name)
			for _, a := range e.Attributes {
				fmt.Fprintf(&b, "    %s=%s\n", a.Key, a.Value.String())
			}
		}
		for _, l := range sp.Links {
			for _, a := range l.Attributes {
				fmt.Fprintf(&b, "  link %s=%s\n", a.Key, a.Value.String())
			}
		}
		if sp.Resource != nil {
			for _, a := range sp.Resource.Attributes() {
				fmt.Fprintf(&b, "  resource %s=%s\n", a.Key, a.Value.String())
			}
		}
	}
	return b.String()
}

func scrapeText(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return string(b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
