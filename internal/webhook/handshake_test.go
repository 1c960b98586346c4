package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/webhook"
)

func TestHandshake(t *testing.T) {
	t.Parallel()
	const token = "my-verify-token"
	query := func(mode, tok, challenge string) string {
		v := url.Values{}
		if mode != "" {
			v.Set("hub.mode", mode)
		}
		if tok != "" {
			v.Set("hub.verify_token", tok)
		}
		if challenge != "" {
			v.Set("hub.challenge", challenge)
		}
		return "/webhook?" + v.Encode()
	}
	tests := []struct {
		name       string
		configured string
		method     string
		target     string
		wantCode   int
		wantBody   string
	}{
		{"Right token echoes the challenge", token, http.MethodGet, query("subscribe", token, "1158201444"), http.StatusOK, "1158201444"},
		{"Wrong token", token, http.MethodGet, query("subscribe", "nope", "1158201444"), http.StatusForbidden, ""},
		{"Token prefix", token, http.MethodGet, query("subscribe", token[:5], "1158201444"), http.StatusForbidden, ""},
		{"Missing token", token, http.MethodGet, query("subscribe", "", "1158201444"), http.StatusForbidden, ""},
		{"Wrong mode", token, http.MethodGet, query("unsubscribe", token, "1158201444"), http.StatusForbidden, ""},
		{"Missing mode", token, http.MethodGet, query("", token, "1158201444"), http.StatusForbidden, ""},
		{"Unconfigured token refuses an empty one", "", http.MethodGet, query("subscribe", "", "1158201444"), http.StatusForbidden, ""},
		{"Missing challenge", token, http.MethodGet, query("subscribe", token, ""), http.StatusBadRequest, ""},
		{"Oversized challenge", token, http.MethodGet, query("subscribe", token, strings.Repeat("9", 2000)), http.StatusBadRequest, ""},
		{"POST is not a handshake", token, http.MethodPost, query("subscribe", token, "1"), http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			webhook.Handshake(tt.configured)(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.wantCode {
				t.Fatalf("status = %d, want %d (body %q)", rec.Code, tt.wantCode, rec.Body.String())
			}
			if tt.wantCode != http.StatusOK {
				if strings.Contains(rec.Body.String(), token) {
					t.Fatalf("refusal body %q echoes the verify token", rec.Body.String())
				}
				return
			}
			if got := rec.Body.String(); got != tt.wantBody {
				t.Fatalf("body = %q, want %q", got, tt.wantBody)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Fatalf("Content-Type = %q, want text/plain", ct)
			}
		})
	}
}

func TestHandlerGETIsTheHandshake(t *testing.T) {
	t.Parallel()
	h := &webhook.Handler{VerifyToken: "tok"}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?hub.mode=subscribe&hub.verify_token=tok&hub.challenge=42", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "42" {
		t.Fatalf("GET = %d %q, want 200 \"42\"", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("PUT = %d, want 405", rec.Code)
	}
}
