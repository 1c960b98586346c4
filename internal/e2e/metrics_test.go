package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// TestWorkerMetricsAfterARun runs a known mix of commands through the
// stack — with the rate limiter — and reads the worker's /metrics: each
// series of DESIGN §6 is there with the labels and counts the run implies.
func TestWorkerMetricsAfterARun(t *testing.T) {
	s := setup(t, func(o *stackOpts) { o.limiter = true; o.maxDeliver = 2 })
	stop := s.startWorker(t, workerOpts{})
	tok := s.opts.secrets.APIToken
	run := func(c events.Command) events.CommandResult {
		t.Helper()
		if code, body := s.post(t, c, tok); code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %s", c.ID, code, body)
		}
		_, r := s.events.Terminal(t, c.ID)
		return r
	}

	// One async create completed by its webhook, two link reads.
	s.gate.hold()
	if code, body := s.post(t, command("m-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Metered"}), tok); code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, body)
	}
	s.awaitLinked(t, "m-create")
	s.gate.release()
	_, created := s.events.Terminal(t, "m-create")
	if created.Outcome != events.OutcomeSucceeded {
		t.Fatalf("create: %q %+v", created.Outcome, created.Error)
	}
	group := created.GroupID
	run(command("m-link-1", events.GetInviteLink, group, nil))
	run(command("m-link-2", events.GetInviteLink, group, nil))
	// A throttle (130429: the number pauses), then success.
	must(t, s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Limit: 1, Throttle: 1, ThrottleCode: 130429}))
	if r := run(command("m-throttled", events.GetInviteLink, group, nil)); r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("throttled: %q %+v", r.Outcome, r.Error)
	}
	// A permanent failure from Graph: a group of the number's records
	// that Graph does not know.
	s.knownAs(t, "120363999999999999", phone)
	if r := run(command("m-permanent", events.GetInviteLink, "120363999999999999", nil)); r.Outcome != events.OutcomeFailed {
		t.Fatalf("permanent: %q", r.Outcome)
	}
	// Transient on every delivery: dead-lettered.
	must(t, s.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Status5xx: 1}))
	if r := run(command("m-dlq", events.GetInviteLink, group, nil)); r.Error == nil || r.Error.Reason != events.ReasonRetriesExhausted {
		t.Fatalf("dlq: %q %+v", r.Outcome, r.Error)
	}
	must(t, s.sim.SetFaults(sim.Faults{}))
	// An invalid command published past the ingest: rejected.
	bad, _ := json.Marshal(map[string]any{"id": "m-bad", "type": events.CreateGroup, "phone_number_id": phone, "params": map[string]any{}})
	if _, err := s.js.Publish(context.Background(), s.names.Command(phone, events.CreateGroup), bad); err != nil {
		t.Fatal(err)
	}
	if _, r := s.events.Terminal(t, "m-bad"); r.Outcome != events.OutcomeRejected {
		t.Fatalf("invalid command: %q, want rejected", r.Outcome)
	}

	// The terminal event is published before its message is acked: let
	// the last acks land so the lag gauges read settled values.
	s.awaitIdle(t)
	fams := scrape(t, s.workerTel.MetricsHandler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"groupflow_commands_total", map[string]string{"command_type": "create_group", "outcome": "succeeded"}, 1},
		{"groupflow_commands_total", map[string]string{"command_type": "get_invite_link", "outcome": "succeeded"}, 3},
		{"groupflow_commands_total", map[string]string{"command_type": "get_invite_link", "outcome": "failed"}, 1},
		{"groupflow_commands_total", map[string]string{"command_type": "get_invite_link", "outcome": "dead_lettered"}, 1},
		{"groupflow_commands_total", map[string]string{"command_type": "create_group", "outcome": "rejected"}, 1},
		{"groupflow_command_duration_seconds", map[string]string{"command_type": "get_invite_link", "outcome": "succeeded"}, 3},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "create_group", "status": "200", "code": "0"}, 1},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "get_invite_link", "status": "200", "code": "0"}, 3},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "get_invite_link", "status": "429", "code": "130429"}, 1},
		{"groupflow_graph_calls_total", map[string]string{"endpoint": "get_invite_link", "status": "400", "code": "100"}, 1},
		{"groupflow_graph_call_duration_seconds", map[string]string{"endpoint": "create_group", "status": "200"}, 1},
		{"groupflow_throttles_total", map[string]string{"code": "130429", "scope": "number"}, 1},
		{"groupflow_webhooks_total", map[string]string{"field": "group_lifecycle_update", "result": "completed"}, 1},
		{"groupflow_dlq_messages", map[string]string{"stream": s.names.DLQStream()}, 1},
		{"groupflow_consumer_lag", map[string]string{"stream": s.names.CommandStream(), "consumer": s.names.CommandConsumer()}, 0},
		{"groupflow_consumer_ack_pending", map[string]string{"stream": s.names.CommandStream(), "consumer": s.names.CommandConsumer()}, 0},
		{"groupflow_consumer_lag", map[string]string{"stream": s.names.WebhookStream(), "consumer": s.names.WebhookConsumer()}, 0},
		{"groupflow_parked_commands", map[string]string{"stream": s.names.ParkedStream()}, 0},
	} {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// Every delivery of the dead-lettered command failed with a 5xx.
	if n := sum(fams, "groupflow_graph_calls_total", func(l map[string]string) bool {
		return l["endpoint"] == "get_invite_link" && strings.HasPrefix(l["status"], "5")
	}); n < 2 {
		t.Errorf("%v get_invite_link calls answered 5xx, want at least one per delivery (2)", n)
	}
	// Every Graph call waited for the limiter: group ops (create) and
	// reads (links), every wait ending with a token.
	if got := value(t, fams, "groupflow_ratelimit_wait_duration_seconds", map[string]string{"class": "group_ops", "outcome": "acquired"}); got != 1 {
		t.Errorf("group_ops waits = %v, want 1 (the create)", got)
	}
	calls := sum(fams, "groupflow_graph_calls_total", func(l map[string]string) bool { return l["endpoint"] == "get_invite_link" })
	if got := value(t, fams, "groupflow_ratelimit_wait_duration_seconds", map[string]string{"class": "reads", "outcome": "acquired"}); got != calls {
		t.Errorf("reads waits = %v, want one per get_invite_link call (%v)", got, calls)
	}

	// Lag: commands published while no worker runs are pending.
	stop()
	for _, id := range []string{"m-lag-1", "m-lag-2", "m-lag-3"} {
		b, _ := json.Marshal(command(id, events.GetInviteLink, group, nil))
		if _, err := s.js.Publish(context.Background(), s.names.Command(phone, events.GetInviteLink), b); err != nil {
			t.Fatal(err)
		}
	}
	// As the next worker process registers them at start.
	reg, err := s.workerTel.Metrics().ObserveConsumers(jobs.ConsumerLag(s.js, s.names))
	must(t, err)
	defer func() { _ = reg.Unregister() }()
	fams = scrape(t, s.workerTel.MetricsHandler())
	// The stopped worker's last pull request may still be open on the
	// server and take one of them: delivered, not acknowledged.
	cmdConsumer := map[string]string{"stream": s.names.CommandStream(), "consumer": s.names.CommandConsumer()}
	lag, ackPending := value(t, fams, "groupflow_consumer_lag", cmdConsumer), value(t, fams, "groupflow_consumer_ack_pending", cmdConsumer)
	if lag+ackPending != 3 || lag < 2 {
		t.Errorf("consumer lag %v and ack pending %v with 3 commands waiting, want 3 in all, at least 2 of them lag", lag, ackPending)
	}
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the counter or gauge value, or the histogram's sample count,
// of the series of name with labels; it fails the test when there is
// none, listing the series that exist.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
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
		t.Fatalf("no %s on /metrics; groupflow families: %v", name, have)
	}
	var seen []string
	for _, m := range f.GetMetric() {
		l := labelMap(m)
		seen = append(seen, toLabelSet(l).String())
		if matches(l, labels) {
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no %s series with %v; series: %v", name, labels, seen)
	return 0
}

func sum(fams map[string]*dto.MetricFamily, name string, keep func(map[string]string) bool) float64 {
	var n float64
	for _, m := range fams[name].GetMetric() {
		if keep(labelMap(m)) {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func toLabelSet(l map[string]string) model.LabelSet {
	out := model.LabelSet{}
	for k, v := range l {
		out[model.LabelName(k)] = model.LabelValue(v)
	}
	return out
}

// awaitIdle waits until both worker consumers have nothing pending or
// unacknowledged. A guard against hangs, not a timing assertion.
func (s *stack) awaitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		lags, err := jobs.ConsumerLag(s.js, s.names)(context.Background())
		must(t, err)
		idle := true
		for _, l := range lags {
			idle = idle && l.Pending == 0 && l.AckPending == 0
		}
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumers never went idle: %+v", lags)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRejectedCommandsAddNoSeriesPerMadeUpType publishes invalid commands
// whose type is made up, each a different one, as a buggy or hostile
// publisher would: groupflow_commands_total counts them all under one
// command_type, so /metrics does not grow a series (and a histogram of
// them) per invented type.
func TestRejectedCommandsAddNoSeriesPerMadeUpType(t *testing.T) {
	s := setup(t)
	s.startWorker(t, workerOpts{})
	const n = 5
	for i := range n {
		id := fmt.Sprintf("made-up-%d", i)
		body, _ := json.Marshal(map[string]any{"id": id, "type": fmt.Sprintf("made_up_type_%d", i), "phone_number_id": phone, "params": map[string]any{}})
		if _, err := s.js.Publish(context.Background(), s.names.Command(phone, events.CreateGroup), body); err != nil {
			t.Fatal(err)
		}
		if _, r := s.events.Terminal(t, id); r.Outcome != events.OutcomeRejected {
			t.Fatalf("%s: outcome %q, want rejected", id, r.Outcome)
		}
	}
	fams := scrape(t, s.workerTel.MetricsHandler())
	for _, name := range []string{"groupflow_commands_total", "groupflow_command_duration_seconds"} {
		types := map[string]bool{}
		for _, m := range fams[name].GetMetric() {
			types[labelMap(m)["command_type"]] = true
		}
		for typ := range types {
			if !events.IsCommandType(typ) && typ != "unknown" {
				t.Errorf("%s has command_type %q: a label value the publisher made up", name, typ)
			}
		}
	}
	if got := value(t, fams, "groupflow_commands_total", map[string]string{"command_type": "unknown", "outcome": "rejected"}); got != n {
		t.Errorf("rejected commands of unknown type = %v, want %d", got, n)
	}
}

// TestARefusedAccessTokenShowsOnMetrics starts a worker whose access token
// Graph refuses: groupflow_graph_access_token_refused, which the alert
// GroupflowGraphAccessTokenRefused watches, reads 0 before and 1 once a
// command has met the refusal (and waits).
func TestARefusedAccessTokenShowsOnMetrics(t *testing.T) {
	s := setup(t)
	s.startWorker(t, workerOpts{accessToken: "EAAG-not-the-token"})
	if got := value(t, scrape(t, s.workerTel.MetricsHandler()), "groupflow_graph_access_token_refused", nil); got != 0 {
		t.Fatalf("access token refused = %v before any call, want 0", got)
	}
	if code, body := s.post(t, command("refused-1", events.GetInviteLink, "120363000000000001", nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST = %d %s", code, body)
	}
	deadline := time.Now().Add(15 * time.Second) // a guard against hangs
	for value(t, scrape(t, s.workerTel.MetricsHandler()), "groupflow_graph_access_token_refused", nil) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("groupflow_graph_access_token_refused never read 1 while Graph refused the token")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// DESIGN §6 lists campaign invites by outcome among the worker's metrics:
// a campaign's invites are counted as they end, each once.
func TestCampaignInvitesAreCountedByOutcome(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	ctx := context.Background()
	gc, err := graph.New(graph.Config{BaseURL: s.simURL, AccessToken: s.opts.secrets.AccessToken})
	must(t, err)
	_, err = gc.AddLibraryTemplate(ctx, sim.DefaultWABAID, graph.AddTemplateRequest{
		Name: "my_group_invite", Category: "UTILITY", Language: "en", LibraryTemplateName: "group_invite_upon_request"})
	must(t, err)
	group := s.createGroup(t, "metered-group", "Invited to")
	invites := []events.Invite{{To: "15550001001", GroupID: group}, {To: "15550001002", GroupID: group}, {To: "15550001003", GroupID: group}}
	start := command("metered-campaign", events.StartInviteCampaign, "", events.StartInviteCampaignParams{
		CampaignID: "metered", Template: events.TemplateRef{Name: "my_group_invite", Language: "en"}, Invites: invites})
	if code, body := s.post(t, start, s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST start_invite_campaign = %d %s", code, body)
	}
	if _, r := s.events.Terminal(t, "metered-campaign"); r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("campaign: %q %+v", r.Outcome, r.Error)
	}
	fams := scrape(t, s.workerTel.MetricsHandler())
	if got := value(t, fams, "groupflow_campaign_invites_total", map[string]string{"outcome": "sent"}); got != float64(len(invites)) {
		t.Errorf("groupflow_campaign_invites_total{outcome=sent} = %v, want %d", got, len(invites))
	}
}
