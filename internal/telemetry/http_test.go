package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

const (
	accessToken = "EAAGsecretACCESStoken123"
	appProof    = "proofSECRET456"
	apiToken    = "ingestAPItokenSECRET789"
	verifyToken = "verifySECRETtoken"
)

func TestHTTPTransport(t *testing.T) {
	t.Parallel()
	b := setup(t)

	var (
		mu       sync.Mutex
		received []http.Header
	)
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received = append(received, r.Header.Clone())
		calls++
		n := calls
		mu.Unlock()
		if n == 1 { // the first attempt fails, the retry succeeds
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"error":{"code":2,"message":"Service temporarily unavailable"}}`) // a short body fails the client's read
			return
		}
		_, _ = io.WriteString(w, `{"data":[]}`)
	}))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: b.tel.HTTPTransport(base)}

	ctx, cmd := b.tel.Tracer("test").Start(context.Background(), "process command")
	member, _ := baggage.NewMember("customer", "private")
	bag, _ := baggage.New(member)
	ctx = baggage.ContextWithBaggage(ctx, bag)
	ctx = WithEndpoint(ctx, "list_groups", "/v23.0/{phone_number_id}/groups")

	url := srv.URL + "/v23.0/106540352242922/groups?limit=5&access_token=" + accessToken + "&appsecret_proof=" + appProof
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+accessToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
	}
	// A transport error: nobody listens any more.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, closed.URL+"/v23.0/1/messages?access_token="+accessToken, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer "+accessToken)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("call to a closed server succeeded")
	}
	cmd.End()

	spans := b.ended(t)
	var (
		clientSpans []string
		attempts    []tracetest.SpanStub
	)
	for _, s := range spans {
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		clientSpans = append(clientSpans, s.Name)
		attempts = append(attempts, s)
		if s.Parent.SpanID() != cmd.SpanContext().SpanID() {
			t.Errorf("client span %q parent = %s, want the command span", s.Name, s.Parent.SpanID())
		}
		u, _ := attrOf(s, semconv.URLFullKey)
		if !strings.Contains(u.AsString(), "access_token="+Redacted) {
			t.Errorf("url.full = %q, want access_token masked", u.AsString())
		}
	}
	// Named "{method} {url.template}", as the HTTP conventions ask.
	const get, post = "GET /v23.0/{phone_number_id}/groups", "POST /v23.0/{phone_number_id}/groups"
	if got, want := strings.Join(clientSpans, ","), get+","+get+","+post; got != want {
		t.Errorf("client spans = %q, want one per attempt: %s", got, want)
	}
	first, second := attempts[0], attempts[1]
	wantAttrs(t, first, map[attribute.Key]any{
		semconv.HTTPResponseStatusCodeKey: 503,
		AttrEndpoint:                      "list_groups",
		semconv.URLTemplateKey:            "/v23.0/{phone_number_id}/groups",
		semconv.URLFullKey:                srv.URL + "/v23.0/106540352242922/groups?access_token=REDACTED&appsecret_proof=REDACTED&limit=5",
	})
	if first.Status.Code != codes.Error {
		t.Errorf("503 span status = %v, want Error", first.Status.Code)
	}
	wantAttrs(t, second, map[attribute.Key]any{semconv.HTTPResponseStatusCodeKey: 200})
	// No answer: error.type is the failure's class, not the Go type of
	// the dialler's error.
	wantAttrs(t, attempts[2], map[attribute.Key]any{semconv.ErrorTypeKey: ErrorConnection})
	assertNoSecret(t, spans, accessToken, appProof, "private")

	mu.Lock()
	defer mu.Unlock()
	for i, h := range received {
		if got, want := h.Get("Traceparent"), fmt.Sprintf("00-%s-%s-01", attempts[i].SpanContext.TraceID(), attempts[i].SpanContext.SpanID()); got != want {
			t.Errorf("call %d sent traceparent %q, want its span's %q", i, got, want)
		}
		if got := h.Get("Baggage"); got != "" {
			t.Errorf("call %d sent baggage %q to the remote API, want none", i, got)
		}
	}
}

// leakyTransport fails the way a careless proxy or dialer would: with the
// request's URL and credentials in the error text.
type leakyTransport struct{}

func (leakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("proxy refused %s with %s: %w", r.URL, r.Header.Get("Authorization"), errTimeout{})
}

type errTimeout struct{}

func (errTimeout) Error() string   { return "i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

func TestHTTPTransportMasksSecretsInErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rt := b.tel.HTTPTransport(leakyTransport{})
	ctx, parent := b.tel.Tracer("test").Start(context.Background(), "parent")
	req, _ := http.NewRequestWithContext(WithEndpoint(ctx, "send_message", "/v23.0/{phone_number_id}/messages"), http.MethodPost,
		"https://graph.example/v23.0/1/messages?access_token="+accessToken, nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := rt.RoundTrip(req)
	parent.End()
	if err == nil {
		resp.Body.Close()
		t.Fatal("RoundTrip succeeded, want the transport's error")
	}
	if strings.Contains(err.Error(), accessToken) {
		t.Errorf("error text %q contains the access token", err)
	}
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Errorf("masked error %v no longer reports a timeout", err)
	}
	spans := b.ended(t)
	s := spanNamed(t, spans, "POST /v23.0/{phone_number_id}/messages")
	if s.Status.Code != codes.Error || !strings.Contains(s.Status.Description, "proxy refused") {
		t.Errorf("span status = %v %q, want Error with the (masked) transport error", s.Status.Code, s.Status.Description)
	}
	wantAttrs(t, s, map[attribute.Key]any{semconv.ErrorTypeKey: ErrorTimeout})
	assertNoSecret(t, spans, accessToken)
}

func TestHTTPHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tracer := b.tel.Tracer("test")

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commands", func(w http.ResponseWriter, r *http.Request) {
		_, span := tracer.Start(r.Context(), "publish")
		span.End()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("GET /webhook", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge")) // a short body fails the client's read
	})
	api := httptest.NewServer(b.tel.HTTPHandler(mux, "ingest"))
	defer api.Close()
	public := httptest.NewServer(b.tel.PublicHTTPHandler(mux, "webhook"))
	defer public.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: base}

	callerCtx, caller := tracer.Start(context.Background(), "caller")
	caller.End()
	tp := TraceParent(callerCtx)

	do := func(method, url string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(`{"id":"c1"}`))
		req.Header.Set("Traceparent", tp)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
	}
	do(http.MethodPost, api.URL+"/v1/commands")
	do(http.MethodGet, public.URL+"/webhook?hub.mode=subscribe&hub.challenge=42&hub.verify_token="+verifyToken)

	spans := b.ended(t)
	cmd := spanNamed(t, spans, "POST /v1/commands")
	if cmd.SpanKind != trace.SpanKindServer || cmd.Parent.SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("command request span kind %v parent %s, want server continuing the caller %s",
			cmd.SpanKind, cmd.Parent.SpanID(), caller.SpanContext().SpanID())
	}
	wantAttrs(t, cmd, map[attribute.Key]any{semconv.HTTPRouteKey: "/v1/commands", semconv.HTTPResponseStatusCodeKey: 202})
	if pub := spanNamed(t, spans, "publish"); pub.Parent.SpanID() != cmd.SpanContext.SpanID() {
		t.Errorf("handler's span parent = %s, want the request span %s", pub.Parent.SpanID(), cmd.SpanContext.SpanID())
	}

	hook := spanNamed(t, spans, "GET /webhook")
	if hook.Parent.IsValid() || hook.SpanContext.TraceID() == caller.SpanContext().TraceID() {
		t.Errorf("public endpoint span joined the caller's trace (parent %v)", hook.Parent)
	}
	if len(hook.Links) != 1 || hook.Links[0].SpanContext.SpanID() != caller.SpanContext().SpanID() {
		t.Errorf("public endpoint span links = %v, want one link to the caller", hook.Links)
	}
	assertNoSecret(t, spans, apiToken, verifyToken)
}
