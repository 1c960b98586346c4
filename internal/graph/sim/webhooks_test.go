package sim_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestWebhookSignature(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.createGroup(t, "Signed", "")
	if b.hooks.badSignatures() != 0 {
		t.Fatalf("%d webhooks had a bad signature", b.hooks.badSignatures())
	}
	m := hmac.New(sha256.New, []byte("k"))
	m.Write([]byte("body"))
	if got, want := sim.Sign("k", []byte("body")), "sha256="+hex.EncodeToString(m.Sum(nil)); got != want {
		t.Fatalf("Sign = %q, want %q", got, want)
	}
	t.Run("A receiver with another secret rejects every webhook", func(t *testing.T) {
		b := setup(t, func(c *sim.Config) { c.AppSecret = "other"; c.WebhookMaxAttempts = 2 })
		b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "x"})
		waitWebhooks(t, b.sim, func(r sim.WebhookRecord) bool { return r.GaveUp })
		if b.hooks.badSignatures() != 2 || len(b.hooks.all()) != 0 {
			t.Fatalf("bad signatures = %d, accepted = %d; want 2 and 0", b.hooks.badSignatures(), len(b.hooks.all()))
		}
	})
}

// waitWebhooks waits until some remembered webhook satisfies pred.
func waitWebhooks(t *testing.T, s *sim.Server, pred func(sim.WebhookRecord) bool) sim.WebhookRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range s.Webhooks() {
			if pred(r) {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no webhook record matched; have %+v", s.Webhooks())
	return sim.WebhookRecord{}
}

func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.hooks.setRespond(func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	b.createGroup(t, "Retried", "")
	rec := waitWebhooks(t, b.sim, func(r sim.WebhookRecord) bool { return r.Delivered })
	if rec.Attempts != 4 || rec.LastStatus != 200 {
		t.Fatalf("record = %+v, want delivered on attempt 4", rec)
	}
	t.Run("Only 200 counts as delivered", func(t *testing.T) {
		b := setup(t, func(c *sim.Config) { c.WebhookMaxAttempts = 3 })
		b.hooks.setRespond(func(int) int { return http.StatusAccepted })
		b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "x"})
		rec := waitWebhooks(t, b.sim, func(r sim.WebhookRecord) bool { return r.GaveUp })
		if rec.Attempts != 3 || rec.Delivered || rec.LastStatus != 202 {
			t.Fatalf("record = %+v, want 3 attempts then give up", rec)
		}
	})
	t.Run("An unreachable endpoint is retried, then given up", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		s := sim.New(sim.Config{WebhookURL: url, WebhookDelay: time.Millisecond, WebhookMaxAttempts: 2, WebhookRetryBackoff: time.Millisecond})
		defer s.Close()
		srv := httptest.NewServer(s)
		defer srv.Close()
		if _, err := s.Join("16505551234", "nope"); err == nil {
			t.Fatal("join by a bad link succeeded")
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/"+phone+"/groups", strings.NewReader(`{"messaging_product":"whatsapp","subject":"x"}`))
		req.Header.Set("Authorization", "Bearer "+sim.DefaultAccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		http.DefaultClient.CloseIdleConnections()
		rec := waitWebhooks(t, s, func(r sim.WebhookRecord) bool { return r.GaveUp })
		if rec.Attempts != 2 || rec.LastError == "" || rec.LastStatus != 0 {
			t.Fatalf("record = %+v", rec)
		}
	})
	t.Run("Without a URL webhooks are recorded only", func(t *testing.T) {
		s := sim.New(sim.Config{WebhookDelay: time.Millisecond})
		defer s.Close()
		if err := s.SetNumber(phone, sim.NumberSettings{}); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		defer srv.Close()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/"+phone+"/groups", strings.NewReader(`{"messaging_product":"whatsapp","subject":"x"}`))
		req.Header.Set("Authorization", "Bearer dev-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		http.DefaultClient.CloseIdleConnections()
		rec := waitWebhooks(t, s, func(r sim.WebhookRecord) bool { return r.GaveUp })
		if rec.Attempts != 0 || rec.Field != "group_lifecycle_update" {
			t.Fatalf("record = %+v", rec)
		}
	})
}

func TestWebhookDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) { c.Faults = sim.Faults{WebhookDuplicate: 1} })
	b.createGroup(t, "Twice", "")
	hooks := b.hooks.waitCount(t, "duplicate", 2, groupEvent("group_create", "", ""))
	if string(hooks[0].Raw) != string(hooks[1].Raw) {
		t.Fatalf("duplicate differs:\n%s\n%s", hooks[0].Raw, hooks[1].Raw)
	}
	dups := 0
	for _, r := range b.sim.Webhooks() {
		if r.Duplicate {
			dups++
		}
	}
	if dups != 1 {
		t.Fatalf("%d records marked duplicate, want 1", dups)
	}
}

func TestWebhookReorder(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) {
		c.WebhookDelay = 10 * time.Millisecond
		c.Faults = sim.Faults{WebhookReorder: 1}
	})
	var sent []string
	for i := range 20 {
		subject := fmt.Sprintf("g%02d", i)
		expectOK(t, b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": subject}), 200)
		sent = append(sent, subject)
	}
	hooks := b.hooks.waitCount(t, "creates", 20, groupEvent("group_create", "", ""))
	var got []string
	for _, h := range hooks {
		got = append(got, firstGroup(h)["subject"].(string))
	}
	if slices.Equal(got, sent) {
		t.Fatalf("webhooks arrived in creation order %v although every one was held back at random", got)
	}
}

func TestWebhookDeliveryStopsOnClose(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *sim.Config) { c.WebhookDelay = time.Hour })
	b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "later"})
	if b.sim.PendingWebhooks() != 1 {
		t.Fatalf("pending = %d, want 1", b.sim.PendingWebhooks())
	}
	b.sim.Close() // goleak in TestMain proves the goroutines end
	b.sim.Close()
}

func TestSetWebhookURL(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	other := newReceiver(t)
	defer other.srv.Close()
	b.sim.SetWebhookURL(other.srv.URL)
	b.call(t, "POST", "/"+phone+"/groups", map[string]any{"messaging_product": "whatsapp", "subject": "moved"})
	other.waitFor(t, "moved", groupEvent("group_create", "subject", "moved"))
}
