package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// classificationCases lists every code of the fact sheet's §5.2 (groups) and
// §5.3 (general Cloud API) tables with the HTTP status Meta's table gives,
// plus the status-only rows and the drift seen in the wild (throttles with
// HTTP 400).
var classificationCases = []struct {
	name   string
	code   int
	status int
	class  Class
	scope  Scope
}{
	// §5.2 groups-specific codes.
	{"message to a group with only the business", 131020, 400, ClassPermanent, ScopeNone},
	{"group unknown or not a member", 131041, 400, ClassPermanent, ScopeNone},
	{"invalid or expired cursor", 131059, 400, ClassPermanent, ScopeNone},
	{"partial success of participant operations", 131201, 206, ClassPartial, ScopeNone},
	{"duplicate participant", 131202, 400, ClassPermanent, ScopeNone},
	{"terms of service not accepted", 131203, 400, ClassPermanent, ScopeNone},
	{"participant limit exceeded", 131204, 400, ClassPermanent, ScopeNone},
	{"group suspended", 131207, 403, ClassPermanent, ScopeNone},
	{"group operations rate limit", 131208, 429, ClassThrottled, ScopeNumber},
	{"picture not square", 131209, 400, ClassPermanent, ScopeNone},
	{"picture too small", 131210, 400, ClassPermanent, ScopeNone},
	{"group create limit reached", 131211, 400, ClassPermanent, ScopeNone},
	{"participant not in group", 131212, 400, ClassPermanent, ScopeNone},
	{"join request does not exist", 131213, 400, ClassPermanent, ScopeNone},
	{"group creation temporarily disabled", 131214, 400, ClassPermanent, ScopeNone},
	{"number not eligible", 131215, 400, ClassPermanent, ScopeNone},

	// §5.3 general codes.
	{"auth exception", 0, 401, ClassCredentials, ScopeNone},
	{"unknown API error", 1, 400, ClassTransient, ScopeNone},
	{"service temporarily unavailable", 2, 503, ClassTransient, ScopeNone},
	{"capability issue despite HTTP 500", 3, 500, ClassPermanent, ScopeNone},
	{"app rate limit", 4, 429, ClassThrottled, ScopeApp},
	{"permission denied", 10, 403, ClassPermanent, ScopeNone},
	{"permission family low end", 200, 403, ClassPermanent, ScopeNone},
	{"permission family middle", 250, 403, ClassPermanent, ScopeNone},
	{"permission family high end", 299, 403, ClassPermanent, ScopeNone},
	{"invalid parameter", 100, 400, ClassPermanent, ScopeNone},
	{"access token expired", 190, 401, ClassCredentials, ScopeNone},
	{"blocked for policy violations", 368, 403, ClassPermanent, ScopeNone},
	{"business account rate limit", 80007, 429, ClassThrottled, ScopeAccount},
	{"throughput exceeded", 130429, 429, ClassThrottled, ScopeNumber},
	{"throughput exceeded with HTTP 400", 130429, 400, ClassThrottled, ScopeNumber},
	{"unknown send failure", 131000, 500, ClassTransient, ScopeNone},
	{"access denied", 131005, 403, ClassPermanent, ScopeNone},
	{"required parameter missing", 131008, 400, ClassPermanent, ScopeNone},
	{"parameter value invalid", 131009, 400, ClassPermanent, ScopeNone},
	{"service unavailable", 131016, 503, ClassTransient, ScopeNone},
	{"message undeliverable", 131026, 400, ClassPermanent, ScopeNone},
	{"account locked", 131031, 403, ClassPermanent, ScopeNone},
	{"outside the 24 h window", 131047, 400, ClassPermanent, ScopeNone},
	{"spam rate limit", 131048, 429, ClassThrottled, ScopeSpam},
	{"withheld for ecosystem engagement", 131049, 400, ClassThrottled, ScopeRecipient},
	{"pair rate limit", 131056, 429, ClassThrottled, ScopeRecipient},
	{"pair rate limit with HTTP 400", 131056, 400, ClassThrottled, ScopeRecipient},

	// Status-only rows.
	{"HTTP 500 without a code", 0, 500, ClassTransient, ScopeNone},
	{"HTTP 502 without a code", 0, 502, ClassTransient, ScopeNone},
	{"HTTP 503 without a code", 0, 503, ClassTransient, ScopeNone},
	{"HTTP 429 without a code", 0, 429, ClassThrottled, ScopeNumber},
	{"unknown code with HTTP 400", 999999, 400, ClassPermanent, ScopeNone},
	{"unknown code with HTTP 503", 999999, 503, ClassTransient, ScopeNone},
	{"unknown code with HTTP 429", 999999, 429, ClassThrottled, ScopeNumber},
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range classificationCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Classify(tc.code, tc.status); got != tc.class {
				t.Fatalf("Classify(%d, %d) = %s, want %s", tc.code, tc.status, got, tc.class)
			}
		})
	}
}

// TestDecodeErrorClassifies runs every row through the full decoding path:
// Graph's error body in, class, scope, retry delay and ambiguity out.
func TestDecodeErrorClassifies(t *testing.T) {
	t.Parallel()
	for _, tc := range classificationCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var body []byte
			if tc.code != 0 || tc.status == 401 {
				body = fmt.Appendf(nil, `{"error":{"message":"(#%d) something","type":"OAuthException","code":%d,"error_subcode":2494010,"error_data":{"messaging_product":"whatsapp","details":"why"},"fbtrace_id":"Atrace"}}`, tc.code, tc.code)
			}
			e := decodeError("create_group", tc.status, http.Header{}, body)
			if e.Class != tc.class {
				t.Fatalf("class = %s, want %s (error %v)", e.Class, tc.class, e)
			}
			if got := e.Scope(); got != tc.scope {
				t.Errorf("scope = %q, want %q", got, tc.scope)
			}
			if tc.class == ClassThrottled && e.RetryAfter <= 0 {
				t.Errorf("throttle without RetryAfter: %v", e)
			}
			if tc.class != ClassThrottled && tc.class != ClassTransient && e.RetryAfter != 0 {
				t.Errorf("RetryAfter = %s on a %s error", e.RetryAfter, e.Class)
			}
			// A 5xx may have been executed, unless its code is a refusal.
			if got, want := IsAmbiguous(e), tc.status >= 500 && tc.class != ClassPermanent; got != want {
				t.Errorf("IsAmbiguous = %v, want %v", got, want)
			}
			if got := ClassOf(fmt.Errorf("wrapped: %w", e)); got != tc.class {
				t.Errorf("ClassOf(wrapped) = %s, want %s", got, tc.class)
			}
			if body != nil {
				if e.Code != tc.code || e.FBTraceID != "Atrace" || e.Details != "why" || e.Subcode != 2494010 {
					t.Errorf("fields not decoded: %+v", e)
				}
			}
		})
	}
}

// TestCodeTableIsCovered fails when a code is added to the table without a
// classification case.
func TestCodeTableIsCovered(t *testing.T) {
	t.Parallel()
	covered := map[int]bool{}
	for _, tc := range classificationCases {
		covered[tc.code] = true
	}
	for code := range codeTable {
		if !covered[code] {
			t.Errorf("code %d is classified in codeTable but has no test case", code)
		}
	}
}

func TestDecodeErrorTolerance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		status    int
		header    http.Header
		body      string
		code      int
		class     Class
		details   string
		message   string
		transient bool
	}{
		{
			name: "code and subcode as strings", status: 429,
			body: `{"error":{"message":"(#131056) pair rate limit hit","code":"131056","error_subcode":"0","is_transient":"false"}}`,
			code: 131056, class: ClassThrottled, message: "(#131056) pair rate limit hit",
		},
		{
			name: "error_data as a JSON-encoded string", status: 400,
			body: `{"error":{"code":100,"error_data":"{\"details\":\"bad subject\"}"}}`,
			code: 100, class: ClassPermanent, details: "bad subject",
		},
		{
			name: "error_data as a bare string", status: 400,
			body: `{"error":{"code":100,"error_data":"plain words"}}`,
			code: 100, class: ClassPermanent, details: "plain words",
		},
		{
			name: "a field of an unexpected type keeps the code", status: 400,
			body: `{"error":{"code":131209,"message":{"nested":true},"fbtrace_id":7}}`,
			code: 131209, class: ClassPermanent,
		},
		{
			name: "error as a bare string", status: 400,
			body: `{"error":"invalid_request"}`, class: ClassPermanent, message: "invalid_request",
		},
		{
			name: "HTML from a proxy on 502", status: 502,
			body: "<html><body>Bad Gateway</body></html>", class: ClassTransient,
			message: "Bad Gateway: <html><body>Bad Gateway</body></html>",
		},
		{
			name: "empty 503", status: 503, class: ClassTransient, message: "Service Unavailable",
		},
		{
			name: "unknown code marked transient", status: 400,
			body: `{"error":{"code":424242,"is_transient":true}}`, code: 424242, class: ClassTransient, transient: true,
		},
		{
			name: "known permanent code stays permanent when marked transient", status: 400,
			body: `{"error":{"code":100,"is_transient":"true"}}`, code: 100, class: ClassPermanent, transient: true,
		},
		{
			name: "unknown code while the business use case is exhausted", status: 400,
			header: http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"type":"whatsapp","call_count":100,"estimated_time_to_regain_access":3}]}`}},
			body:   `{"error":{"code":424242}}`, code: 424242, class: ClassThrottled,
		},
		{
			name: "error object inside a 200", status: 200,
			body: `{"error":{"code":424242}}`, code: 424242, class: ClassPermanent,
		},
		{
			name: "partial answer", status: 206,
			body: `{"error":{"code":131201}}`, code: 131201, class: ClassPartial,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := decodeError("list_groups", tc.status, tc.header, []byte(tc.body))
			if e.Code != tc.code || e.Class != tc.class || e.IsTransient != tc.transient {
				t.Fatalf("got code %d class %s transient %v, want code %d class %s transient %v (%v)",
					e.Code, e.Class, e.IsTransient, tc.code, tc.class, tc.transient, e)
			}
			if tc.details != "" && e.Details != tc.details {
				t.Errorf("details = %q, want %q", e.Details, tc.details)
			}
			if tc.message != "" && e.Message != tc.message {
				t.Errorf("message = %q, want %q", e.Message, tc.message)
			}
			if e.HTTPStatus != tc.status || e.Endpoint != "list_groups" {
				t.Errorf("status/endpoint = %d/%q", e.HTTPStatus, e.Endpoint)
			}
		})
	}
}

func TestErrorRetryAfterFromHeaders(t *testing.T) {
	t.Parallel()
	h := http.Header{"Retry-After": {"7"}}
	e := decodeError("send_group_text", 429, h, []byte(`{"error":{"code":130429}}`))
	if e.RetryAfter != 7*time.Second {
		t.Errorf("throttle RetryAfter = %s, want 7s from Retry-After", e.RetryAfter)
	}
	e = decodeError("send_group_text", 503, h, nil)
	if e.RetryAfter != 7*time.Second {
		t.Errorf("transient RetryAfter = %s, want 7s from Retry-After", e.RetryAfter)
	}
	e = decodeError("send_group_text", 429, nil, []byte(`{"error":{"code":80007}}`))
	if e.RetryAfter != time.Minute {
		t.Errorf("80007 without headers: RetryAfter = %s, want the 1m default", e.RetryAfter)
	}
	e = decodeError("send_group_text", 400, h, []byte(`{"error":{"code":100}}`))
	if e.RetryAfter != 0 {
		t.Errorf("permanent error got RetryAfter %s", e.RetryAfter)
	}
}

func TestClassOfAndIsAmbiguous(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		class     Class
		ambiguous bool
	}{
		{"nil", nil, ClassNone, false},
		{"invalid argument", fmt.Errorf("x: %w", ErrInvalidArgument), ClassPermanent, false},
		{"transport error after the request was written", &transportError{endpoint: "x", ambiguous: true, err: errors.New("EOF")}, ClassTransient, true},
		{"transport error before sending", &transportError{endpoint: "x", err: errors.New("dial")}, ClassTransient, false},
		{"malformed 2xx answer", (&Client{}).malformed("x", 200, "no id"), ClassTransient, true},
		{"foreign error", errors.New("boom"), ClassTransient, false},
		{"4xx", &Error{HTTPStatus: 400, Class: ClassPermanent}, ClassPermanent, false},
		{"5xx", &Error{HTTPStatus: 500, Class: ClassTransient}, ClassTransient, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ClassOf(tc.err); got != tc.class {
				t.Errorf("ClassOf = %s, want %s", got, tc.class)
			}
			if got := IsAmbiguous(tc.err); got != tc.ambiguous {
				t.Errorf("IsAmbiguous = %v, want %v", got, tc.ambiguous)
			}
		})
	}
	if !errors.Is((&Client{}).malformed("x", 200, "no id"), ErrMalformedResponse) {
		t.Error("malformed answer does not match ErrMalformedResponse")
	}
}

func TestErrorString(t *testing.T) {
	t.Parallel()
	e := decodeError("create_group", 429, http.Header{"Retry-After": {"2"}},
		[]byte(`{"error":{"message":"(#131056) pair rate limit hit","code":131056,"error_subcode":7,"error_data":{"details":"wait"},"fbtrace_id":"Ab"}}`))
	want := "graph: create_group: http 429: code 131056/7: (#131056) pair rate limit hit: wait (throttled, retry after 2s, fbtrace_id Ab)"
	if got := e.Error(); got != want {
		t.Errorf("Error() =\n %q\nwant\n %q", got, want)
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[Class]string{ClassNone: "none", ClassTransient: "transient", ClassThrottled: "throttled",
		ClassPermanent: "permanent", ClassPartial: "partial", Class(42): "class(42)"} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(c), got, want)
		}
	}
	b, _ := json.Marshal(ScopeSpam)
	if string(b) != `"spam"` {
		t.Errorf("ScopeSpam marshals to %s", b)
	}
	if s := (&Error{Class: ClassPermanent, Code: 131056}).Scope(); s != ScopeNone {
		t.Errorf("a permanent error has scope %q", s)
	}
	if !strings.Contains((&Error{Code: 5}).Error(), "code 5") {
		t.Error("Error() without endpoint or status lost the code")
	}
}
