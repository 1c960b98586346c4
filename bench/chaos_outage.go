package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/webhook"
)

// OutageResult is the NATS-outage scenario's outcome.
type OutageResult struct {
	OutageS         float64        `json:"nats_down_s"`
	LoadPerS        int            `json:"webhooks_per_s"`
	Webhooks        int            `json:"webhooks"`
	Items           int            `json:"items"`
	Answers         map[string]int `json:"ingest_answers"`
	Answered503     int            `json:"answered_503"`
	Deliveries      int            `json:"delivery_attempts"`
	Redeliveries    int            `json:"redeliveries"`
	GaveUp          int            `json:"gave_up"`
	StreamMessages  int            `json:"stream_messages"`
	Missing         int            `json:"missing"`
	Duplicated      int            `json:"duplicated"`
	Unexpected      int            `json:"unexpected"`
	IngestSurvived  bool           `json:"ingest_survived"`
	DrainedAfterS   float64        `json:"drained_after_restart_s"`
	Seconds         float64        `json:"seconds"`
	Pass            bool           `json:"pass"`
	statusCountLock sync.Mutex
}

// Passed reports whether every webhook item is stored exactly once.
func (r *OutageResult) Passed() bool { return r.Pass }

// runOutageChaos stops NATS for Size.Outage while the simulator sends
// webhooks to a cmd/ingest process at a steady rate. The ingest must
// answer 503 while it cannot store them, the simulator redelivers (as Meta
// does), and afterwards every webhook item must be in the stream exactly
// once.
func runOutageChaos(ctx context.Context, e *Env, r *Report) error {
	t0 := time.Now()
	cfg := quietSim()
	cfg.WebhookMaxAttempts = 100
	cfg.WebhookRetryBackoff = 100 * time.Millisecond
	cfg.WebhookRetryMaxBackoff = time.Second
	cfg.WebhookConcurrency = 16
	cfg.WebhookLogSize = 1 << 20
	// Longer than the ingest's 10 s publish timeout, so its answer is seen.
	cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	s, err := e.NewStack(ctx, "outage", StackConfig{NoWebhookHandler: true, Sim: cfg})
	if err != nil {
		return err
	}
	defer s.Close()
	ing, err := s.StartIngest(ctx, e.Bins.Ingest, "ingest")
	if err != nil {
		return err
	}
	defer ing.Stop(10 * time.Second)

	res := &OutageResult{OutageS: e.Size.Outage.Seconds(), LoadPerS: e.Size.OutageWebhooksPS, Answers: map[string]int{}}
	count := func(k string) {
		res.statusCountLock.Lock()
		res.Answers[k]++
		res.statusCountLock.Unlock()
	}
	target, _ := url.Parse("http://" + ing.Addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error { count(strconv.Itoa(resp.StatusCode)); return nil }
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		count("transport_error")
		w.WriteHeader(http.StatusBadGateway)
	}
	tap := httptest.NewServer(proxy)
	defer tap.Close()
	s.Sim.SetWebhookURL(tap.URL + "/webhook")

	// Members who will write in groups: each message is one webhook.
	type member struct{ wa, group string }
	var members []member
	for g := range 10 {
		id, err := s.NewGroup(ctx, Phone, fmt.Sprint("Outage ", g), "")
		if err != nil {
			return err
		}
		link, err := s.Graph.InviteLink(ctx, id)
		if err != nil {
			return err
		}
		for u := range 3 {
			wa := fmt.Sprintf("1777%03d%04d", g, u)
			if _, err := s.Sim.Join(wa, link); err != nil {
				return fmt.Errorf("join: %w", err)
			}
			members = append(members, member{wa, id})
		}
	}

	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(e.Size.OutageWebhooksPS))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-loadCtx.Done():
				loadDone <- nil
				return
			case <-tick.C:
			}
			m := members[i%len(members)]
			if _, err := s.Sim.UserMessage(m.wa, m.group, fmt.Sprint("message ", i)); err != nil {
				loadDone <- err
				return
			}
		}
	}()
	before := 5 * time.Second
	if e.Size.Name == "smoke" {
		before = 2 * time.Second
	}
	time.Sleep(before)
	e.Log.Info("stopping NATS", "for", e.Size.Outage)
	opts := s.Server.Options()
	s.Server.Shutdown()
	time.Sleep(e.Size.Outage)
	srv, err := natsembed.Start(opts)
	if err != nil {
		stopLoad()
		return fmt.Errorf("restart NATS: %w", err)
	}
	s.Server = srv
	restarted := time.Now()
	time.Sleep(before)
	stopLoad()
	if err := <-loadDone; err != nil {
		return fmt.Errorf("webhook load: %w", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for s.Sim.PendingWebhooks() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d webhooks still pending 5 min after NATS came back", s.Sim.PendingWebhooks())
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.DrainedAfterS = time.Since(restarted).Seconds()

	expected := map[string]bool{}
	for _, rec := range s.Sim.Webhooks() {
		res.Webhooks++
		res.Deliveries += rec.Attempts
		if rec.GaveUp || !rec.Delivered {
			res.GaveUp++
		}
		items, err := webhook.Parse(rec.Body)
		if err != nil {
			return fmt.Errorf("webhook %d does not parse: %w", rec.ID, err)
		}
		for _, it := range items {
			expected[it.MsgID] = true
		}
	}
	res.Redeliveries = res.Deliveries - res.Webhooks
	res.Items = len(expected)
	stored := map[string]int{}
	if err := s.ScanStream(ctx, s.Names.WebhookStream(), "", func(m StreamMsg) {
		res.StreamMessages++
		stored[m.MsgID]++
	}); err != nil {
		return err
	}
	for id := range expected {
		switch stored[id] {
		case 0:
			res.Missing++
		case 1:
		default:
			res.Duplicated++
		}
	}
	for id := range stored {
		if !expected[id] {
			res.Unexpected++
		}
	}
	res.Answered503 = res.Answers["503"]
	res.IngestSurvived = !ing.Exited()
	res.Seconds = time.Since(t0).Seconds()
	res.Pass = res.Answered503 > 0 && res.GaveUp == 0 && res.Missing == 0 && res.Duplicated == 0 && res.Unexpected == 0 && res.IngestSurvived
	r.Detail("nats_outage", res)
	return nil
}
