package sim_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// BenchmarkInviteLink measures a cheap endpoint over real HTTP with
// keep-alive connections from parallel clients; it reports requests/s.
func BenchmarkInviteLink(b *testing.B) {
	s := sim.New(sim.Config{WebhookDelay: time.Hour, GroupOpsPerSecond: -1})
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v23.0/106540352242922/groups", strings.NewReader(`{"messaging_product":"whatsapp","subject":"Bench"}`))
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	url := srv.URL + "/v23.0/" + s.State().Numbers[0].Groups[0].ID + "/invite_link"

	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", "Bearer dev-token")
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkServeHTTP measures the handler alone, without the network.
func BenchmarkServeHTTP(b *testing.B) {
	s := sim.New(sim.Config{WebhookDelay: time.Hour, GroupOpsPerSecond: -1})
	defer s.Close()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, authed(httptest.NewRequest(http.MethodPost, "/v23.0/106540352242922/groups", strings.NewReader(`{"messaging_product":"whatsapp","subject":"Bench"}`))))
	path := "/v23.0/" + s.State().Numbers[0].Groups[0].ID + "/invite_link"
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			s.ServeHTTP(w, authed(httptest.NewRequest(http.MethodGet, path, nil)))
			if w.Code != 200 {
				b.Errorf("status %d", w.Code)
				return
			}
		}
	})
}

func authed(r *http.Request) *http.Request {
	r.Header.Set("Authorization", "Bearer dev-token")
	return r
}
