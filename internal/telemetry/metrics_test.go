package telemetry

import (
	"cmp"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// exercise records at least one measurement on every instrument, and sends
// one request through the instrumented HTTP server and client.
func exercise(t *testing.T, tel *Telemetry) {
	t.Helper()
	ctx := context.Background()
	m := tel.Metrics()
	m.CommandDone(ctx, "create_group", "succeeded", 300*time.Millisecond)
	m.CommandDone(ctx, "create_group", "succeeded", 2*time.Second)
	m.CommandDone(ctx, "approve_join_requests", "partially_succeeded", 40*time.Millisecond)
	m.GraphCall(ctx, "create_group", 200, 0, 120*time.Millisecond)
	m.GraphCall(ctx, "send_message", 400, 131056, 80*time.Millisecond)
	m.RateLimitWait(ctx, "group_ops", "acquired", 15*time.Millisecond)
	m.Throttle(ctx, 130429, "number")
	m.Throttle(ctx, 130429, "number")
	m.Throttle(ctx, 131056, "recipient")
	m.Webhook(ctx, "group_lifecycle_update", "completed")
	m.SignatureFailure(ctx, "mismatch")
	m.CampaignInvite(ctx, "sent")
	m.CampaignInvite(ctx, "sent")
	m.CampaignInvite(ctx, "failed")
	m.APIRateLimited(ctx, 2)
	reg, err := m.ObserveDLQ(func(context.Context) ([]StreamDepth, error) {
		return []StreamDepth{{Stream: "GROUPS_DLQ", Messages: 3}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg.Unregister(); err != nil {
			t.Errorf("unregister the DLQ callback: %v", err)
		}
	})
	reg4, err := m.ObserveParked(func(context.Context) ([]StreamDepth, error) {
		return []StreamDepth{{Stream: "GROUPS_COMMANDS", Messages: 250}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg4.Unregister(); err != nil {
			t.Errorf("unregister the parked callback: %v", err)
		}
	})
	reg3, err := m.ObserveAccessToken(func() bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg3.Unregister(); err != nil {
			t.Errorf("unregister the access token callback: %v", err)
		}
	})
	reg2, err := m.ObserveConsumers(func(context.Context) ([]ConsumerLag, error) {
		return []ConsumerLag{
			{Stream: "GROUPS_COMMANDS", Consumer: "worker-commands", Pending: 42, AckPending: 7},
			{Stream: "GROUPS_WEBHOOKS", Consumer: "worker-webhooks", Pending: 0, AckPending: 1},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := reg2.Unregister(); err != nil {
			t.Errorf("unregister the consumer callback: %v", err)
		}
	})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/commands", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(tel.HTTPHandler(mux, "ingest"))
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tel.HTTPTransport(base)}).Post(srv.URL+"/v1/commands", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
}

// scrape GETs /metrics over HTTP and parses the Prometheus text format.
func scrape(t *testing.T, tel *Telemetry) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(tel.MetricsHandler())
	defer srv.Close()
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	resp, err := (&http.Client{Transport: base}).Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// seriesNames lists the names a PromQL query can use: a histogram family x
// is queried as x_bucket, x_sum and x_count.
func seriesNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range fams {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"], names[name] = true, true, true
		default:
			names[name] = true
		}
	}
	return names
}

// sample finds the metric of family name whose labels include want.
func sample(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		var have []string
		for n := range fams {
			if strings.HasPrefix(n, "groupflow") {
				have = append(have, n)
			}
		}
		sort.Strings(have)
		t.Fatalf("no metric family %s on /metrics; groupflow families: %v", name, have)
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no series with labels %v; series: %v", name, want, f.GetMetric())
	return nil
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	exercise(t, b.tel)
	fams := scrape(t, b.tel)

	counters := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"groupflow_commands_total", map[string]string{"command_type": "create_group", "outcome": "succeeded"}, 2},
		{"groupflow_commands_total", map[string]string{"command_type": "approve_join_requests", "outcome": "partially_succeeded"}, 1},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "create_group", "status": "200", "code": "0"}, 1},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "send_message", "status": "400", "code": "131056"}, 1},
		{"groupflow_throttles_total", map[string]string{"code": "130429", "scope": "number"}, 2},
		{"groupflow_throttles_total", map[string]string{"code": "131056", "scope": "recipient"}, 1},
		{"groupflow_webhooks_total", map[string]string{"field": "group_lifecycle_update", "result": "completed"}, 1},
		{"groupflow_webhook_signature_failures_total", map[string]string{"reason": "mismatch"}, 1},
		{"groupflow_campaign_invites_total", map[string]string{"outcome": "sent"}, 2},
		{"groupflow_campaign_invites_total", map[string]string{"outcome": "failed"}, 1},
	}
	for _, c := range counters {
		if got := sample(t, fams, c.name, c.labels).GetCounter().GetValue(); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	h := sample(t, fams, "groupflow_command_duration_seconds", map[string]string{"command_type": "create_group", "outcome": "succeeded"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 2.3 {
		t.Errorf("command duration count %d sum %v, want 2 and 2.3", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, bk := range h.GetBucket() {
		// 0.3 s lands in le=0.5, 2 s in le=2.5: seconds, not milliseconds.
		if bk.GetUpperBound() == 0.5 && bk.GetCumulativeCount() != 1 || bk.GetUpperBound() == 2.5 && bk.GetCumulativeCount() != 2 {
			t.Errorf("bucket le=%v holds %d", bk.GetUpperBound(), bk.GetCumulativeCount())
		}
	}
	if got := sample(t, fams, "groupflow_graph_call_duration_seconds", map[string]string{"endpoint": "create_group", "status": "200"}).GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("graph call duration count = %d, want 1", got)
	}
	if got := sample(t, fams, "groupflow_ratelimit_wait_duration_seconds", map[string]string{"class": "group_ops", "outcome": "acquired"}).GetHistogram().GetSampleCount(); got != 1 {
		t.Errorf("rate-limit wait count = %d, want 1", got)
	}

	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"groupflow_dlq_messages", map[string]string{"stream": "GROUPS_DLQ"}, 3},
		{"groupflow_parked_commands", map[string]string{"stream": "GROUPS_COMMANDS"}, 250},
		{"groupflow_consumer_lag", map[string]string{"stream": "GROUPS_COMMANDS", "consumer": "worker-commands"}, 42},
		{"groupflow_consumer_ack_pending", map[string]string{"stream": "GROUPS_COMMANDS", "consumer": "worker-commands"}, 7},
	}
	for _, g := range gauges {
		if got := sample(t, fams, g.name, g.labels).GetGauge().GetValue(); got != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.want)
		}
	}

	// The resource identifies the process, and the HTTP instrumentation
	// shares the registry.
	sample(t, fams, "target_info", map[string]string{"service_name": "groupflow-test", "service_version": "0.0.0-test"})
	sample(t, fams, "http_server_request_duration_seconds", map[string]string{"http_response_status_code": "202", "http_route": "/v1/commands"})
	sample(t, fams, "http_client_request_duration_seconds", map[string]string{"http_response_status_code": "202"})
	sample(t, fams, "go_goroutines", nil)
}

func TestMetricsRegistriesAreSeparate(t *testing.T) {
	t.Parallel()
	a, b := setup(t), setup(t)
	a.tel.Metrics().Throttle(context.Background(), 4, "app")
	b.tel.Metrics().Throttle(context.Background(), 130429, "number")
	if v := sample(t, scrape(t, a.tel), "groupflow_throttles_total", map[string]string{"code": "4", "scope": "app"}).GetCounter().GetValue(); v != 1 {
		t.Errorf("throttle counted on its own /metrics: %v, want 1", v)
	}
	for _, m := range scrape(t, b.tel)["groupflow_throttles_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" && l.GetValue() == "4" {
				t.Errorf("a measurement in one Telemetry shows on another's /metrics: %v", m)
			}
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	t.Parallel()
	var m *Metrics
	ctx := context.Background()
	m.CommandDone(ctx, "x", "y", time.Second)
	m.GraphCall(ctx, "x", 200, 0, time.Second)
	m.RateLimitWait(ctx, "x", "y", time.Second)
	m.Throttle(ctx, 4, "app")
	m.Webhook(ctx, "x", "y")
	m.SignatureFailure(ctx, "x")
	m.CampaignInvite(ctx, "x")
	if r, err := m.ObserveDLQ(nil); err != nil || r.Unregister() != nil {
		t.Errorf("ObserveDLQ on nil: %v", err)
	}
	if r, err := m.ObserveConsumers(nil); err != nil || r.Unregister() != nil {
		t.Errorf("ObserveConsumers on nil: %v", err)
	}
	if r, err := m.ObserveParked(nil); err != nil || r.Unregister() != nil {
		t.Errorf("ObserveParked on nil: %v", err)
	}
}

// An alert on increase() sees nothing of a counter series' first value:
// Prometheus only counts the difference between samples, so a series that
// appears at 6 (a burst of refused webhooks in one scrape interval) and
// stays there never makes increase() > 0. The counters the alerts in
// deploy/prometheus watch that way must be on /metrics at 0 from the start
// — in the component that counts them only: an ingest's throttle series
// at 0 reads as an ingest that calls Graph, a worker's signature failures
// as a worker that receives webhooks.
func TestAlertedCountersAreExportedAtZeroByTheirComponent(t *testing.T) {
	t.Parallel()
	signature := []string{`groupflow_webhook_signature_failures_total{reason="missing"} 0`, `groupflow_webhook_signature_failures_total{reason="mismatch"} 0`}
	throttle := []string{`groupflow_throttles_total{code="4",scope="app"} 0`, `groupflow_throttles_total{code="80007",scope="account"} 0`}
	for _, c := range []struct {
		name      Component
		want, not []string
	}{
		{ComponentIngest, signature, throttle},
		{ComponentWorker, throttle, signature},
		{"", nil, append(signature, throttle...)},
	} {
		t.Run("Component "+cmp.Or(string(c.name), "unset"), func(t *testing.T) {
			t.Parallel()
			tel, err := Setup(context.Background(), Config{ServiceName: "groupflow-test", Getenv: env(nil), Component: c.name})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
			page := scrapeText(t, tel)
			for _, want := range c.want {
				if !strings.Contains(page, want) {
					t.Errorf("/metrics lacks %s before any event", want)
				}
			}
			for _, not := range c.not {
				if strings.Contains(page, not) {
					t.Errorf("/metrics has %s, another component's", not)
				}
			}
		})
	}
}

func TestUnknownComponentIsRefused(t *testing.T) {
	t.Parallel()
	if _, err := Setup(context.Background(), Config{Getenv: env(nil), Component: "ingester"}); err == nil || !strings.Contains(err.Error(), "Component") {
		t.Errorf("Setup with Component %q = %v, want an error naming Component", "ingester", err)
	}
}

// scrapeText is GET /metrics of tel as text.
func scrapeText(t *testing.T, tel *Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", rec.Code)
	}
	return rec.Body.String()
}
