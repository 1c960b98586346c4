package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/webhook"
)

// IngestToken is the bearer token of ingest processes the harness starts.
const IngestToken = "bench-api-token"

// StartIngest starts a cmd/ingest process against the stack and waits
// until it is healthy.
func (s *Stack) StartIngest(ctx context.Context, bin, name string, env ...string) (*Proc, error) {
	addr, err := FreeAddr(ctx)
	if err != nil {
		return nil, err
	}
	base := []string{
		"NATS_URL=" + s.URL,
		"INGEST_ADDR=" + addr,
		"WHATSAPP_APP_SECRET=" + sim.DefaultAppSecret,
		"WHATSAPP_VERIFY_TOKEN=bench-verify",
		"INGEST_API_TOKENS=" + IngestToken,
		"LOG_LEVEL=error",
	}
	p, err := StartProc(bin, name, s.Dir, addr, append(base, env...))
	if err != nil {
		return nil, err
	}
	if err := p.WaitHealthy(ctx, "/healthz"); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// webhookPayload is one realistic webhook (a participant leaving a group),
// unique per n so the stream's deduplication keeps every item: the payload
// of internal/ingest's BenchmarkIngestWebhooks.
func webhookPayload(n int) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"group_participants_update","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"%d","group_id":"Y2FwaV9ncm91cDoxOTUwNTU1MDA3OToxMjAzNjMzOTQzMjAdOTY0MTUZD","type":"group_participants_remove","removed_participants":[{"wa_id":"1650555%04d"}],"initiated_by":"participant"}]}}]}]}`, 1750101000+n, n%10000)
}

// runConcurrently calls f(0…n-1) from workers goroutines.
func runConcurrently(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
}

// runIngest measures the JetStream ceiling (publish + consume + ack), raw
// publishes with the ingest's concurrency, and signed webhooks through the
// ingest process, all with the same payloads.
func runIngest(ctx context.Context, e *Env, r *Report) error {
	s, err := e.NewStack(ctx, "ingest", StackConfig{NoWebhookHandler: true})
	if err != nil {
		return err
	}
	defer s.Close()
	ing, err := s.StartIngest(ctx, e.Bins.Ingest, "ingest")
	if err != nil {
		return err
	}
	defer ing.Stop(10 * time.Second)

	n, clients := e.Size.Webhooks, e.Size.IngestClients
	payloads := make([][]byte, n)
	items := make([]webhook.Item, n)
	for i := range payloads {
		payloads[i] = webhookPayload(i)
		parsed, err := webhook.Parse(payloads[i])
		if err != nil || len(parsed) != 1 {
			return fmt.Errorf("payload %d parses to %d items: %w", i, len(parsed), err)
		}
		items[i] = parsed[0]
	}

	// Streams shaped like the webhook stream, for the raw baselines.
	var whCfg jetstream.StreamConfig
	for _, c := range (events.TopologyConfig{}).Streams() {
		if c.Name == s.Names.WebhookStream() {
			whCfg = c
		}
	}
	raw := func(name string) (jetstream.Stream, error) {
		c := whCfg
		c.Name, c.Subjects = name, []string{"bench." + name + ".>"}
		return s.JS.CreateOrUpdateStream(ctx, c)
	}

	// 1. Ceiling: publish (async, as fast as the client goes) while a pull
	// consumer consumes and acks each message; done when the last is acked.
	stream, err := raw("RAWFULL")
	if err != nil {
		return err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 4096})
	if err != nil {
		return err
	}
	var acked atomic.Int64
	allAcked := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := m.Ack(); err == nil && acked.Add(1) == int64(n) {
			close(allAcked)
		}
	}, jetstream.PullMaxMessages(1000))
	if err != nil {
		return err
	}
	start := time.Now()
	for i := range n {
		msg := nats.NewMsg("bench.RAWFULL.106540352242922.group_participants_update")
		msg.Data = payloads[i]
		msg.Header.Set(jetstream.MsgIDHeader, items[i].MsgID)
		if _, err := s.JS.PublishMsgAsync(msg); err != nil {
			cc.Stop()
			return fmt.Errorf("raw publish: %w", err)
		}
	}
	select {
	case <-allAcked:
	case <-time.After(5 * time.Minute):
		cc.Stop()
		return fmt.Errorf("raw consume: %d of %d acked", acked.Load(), n)
	}
	ceiling := float64(n) / time.Since(start).Seconds()
	cc.Stop()

	// 2. Raw publishes with the ingest's concurrency: one synchronous
	// publish per item and client, as the ingest does per webhook.
	if _, err := raw("RAWPUB"); err != nil {
		return err
	}
	var pubErrs atomic.Int64
	self0 := selfCPUTime()
	start = time.Now()
	runConcurrently(n, clients, func(i int) {
		msg := nats.NewMsg("bench.RAWPUB.106540352242922.group_participants_update")
		msg.Data = payloads[i]
		msg.Header.Set(jetstream.MsgIDHeader, items[i].MsgID)
		if _, err := s.JS.PublishMsg(ctx, msg); err != nil {
			pubErrs.Add(1)
		}
	})
	pubRate := float64(n) / time.Since(start).Seconds()
	selfPerPublish := (selfCPUTime() - self0) / time.Duration(n)

	// 3. Signed webhooks through the ingest process, sent first by Go's
	// http.Client, then by the lean sender (postWebhooks) with the next n
	// payloads, so neither meets the other's items in the stream.
	more := make([][]byte, 2*n)
	sigs := make([]string, 2*n)
	for i := range more {
		if i < n {
			more[i] = payloads[i]
		} else {
			more[i] = webhookPayload(i)
		}
		sigs[i] = webhook.Sign([]byte(sim.DefaultAppSecret), more[i])
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	var bad atomic.Int64
	stdLat := make([]time.Duration, n)
	cpu0, self0 := ing.CPUTime(), selfCPUTime()
	start = time.Now()
	runConcurrently(n, clients, func(i int) {
		t0 := time.Now()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ing.Addr+"/webhook", bytes.NewReader(more[i]))
		req.Header.Set(webhook.SignatureHeader, sigs[i])
		resp, err := client.Do(req)
		if err != nil {
			bad.Add(1)
			return
		}
		_ = resp.Body.Close() // only the status matters
		if resp.StatusCode != http.StatusOK {
			bad.Add(1)
		}
		stdLat[i] = time.Since(t0)
	})
	stdRate := float64(n) / time.Since(start).Seconds()
	stdCPU, stdSelf := (ing.CPUTime()-cpu0)/time.Duration(n), (selfCPUTime()-self0)/time.Duration(n)
	client.CloseIdleConnections()

	lat := make([]time.Duration, n)
	cpu0, self0 = ing.CPUTime(), selfCPUTime()
	start = time.Now()
	leanBad, err := postWebhooks(ctx, ing.Addr, more[n:], sigs[n:], clients, lat)
	if err != nil {
		return err
	}
	ingestRate := float64(n) / time.Since(start).Seconds()
	cpuPerWebhook := (ing.CPUTime() - cpu0) / time.Duration(n)
	selfPerWebhook := (selfCPUTime() - self0) / time.Duration(n)
	if bad.Load() > 0 || leanBad > 0 || pubErrs.Load() > 0 {
		return fmt.Errorf("%d webhooks not answered 200, %d raw publishes failed", bad.Load()+leanBad, pubErrs.Load())
	}
	st, err := s.JS.Stream(ctx, s.Names.WebhookStream())
	if err != nil {
		return err
	}
	if got := st.CachedInfo().State.Msgs; got != uint64(2*n) { //nolint:gosec // G115: n is a count of webhooks, never negative
		return fmt.Errorf("webhook stream holds %d items after %d webhooks", got, 2*n)
	}
	sortDurations(lat)
	sortDurations(stdLat)

	cmd := cmdFor("ingest")
	r.Add(Figure{Key: "js_baseline_msgs_per_s", Value: ceiling, Unit: "msgs/s",
		How:     fmt.Sprintf("%d webhook items published async to a stream shaped like GROUPS_WEBHOOKS while a pull consumer acks each; until the last ack", n),
		Command: cmd})
	r.Add(Figure{Key: "js_publish_msgs_per_s", Value: pubRate, Unit: "msgs/s",
		How:     fmt.Sprintf("the same items, one synchronous publish each from %d goroutines (the ingest's shape)", clients),
		Command: cmd})
	r.Add(Figure{Key: "ingest_webhooks_per_s", Value: ingestRate, Unit: "webhooks/s",
		Baseline: "js_publish_msgs_per_s",
		How:      fmt.Sprintf("%d signed webhooks POSTed over %d keep-alive HTTP/1.1 connections to the cmd/ingest process (verify, parse, publish, ack, 200), sent by the harness's lean HTTP/1.1 sender (bench/loadgen.go)", n, clients),
		Command:  cmd})
	r.Add(Figure{Key: "ingest_webhooks_per_s_http_client", Value: stdRate, Unit: "webhooks/s",
		Baseline: "ingest_webhooks_per_s",
		How:      fmt.Sprintf("the same, %d other webhooks sent by Go's http.Client from %d goroutines just before: its read and write goroutines per connection cost the shared CPUs about as much as the ingest itself", n, clients),
		Command:  cmd})
	r.Add(Figure{Key: "ingest_ratio_to_js_publish", Value: ingestRate / pubRate, Goal: &Goal{">=", 0.5}, Baseline: "js_publish_msgs_per_s",
		How: "ingest_webhooks_per_s / js_publish_msgs_per_s", Command: cmd})
	latHow := fmt.Sprintf("each of the %d webhooks above as its client saw it, under that load: POST sent → 200 received", n)
	r.Add(Figure{Key: "ingest_latency_p50_ms", Value: Ms(Percentile(lat, 0.5)), Unit: "ms", How: latHow, Command: cmd})
	r.Add(Figure{Key: "ingest_latency_p99_ms", Value: Ms(Percentile(lat, 0.99)), Unit: "ms", How: latHow, Command: cmd})
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }
	r.Detail("ingest", map[string]any{
		"webhooks": n, "clients": clients,
		"ratio_to_js_ceiling":       ingestRate / ceiling,
		"ingest_cpu_us_per_webhook": us(cpuPerWebhook),
		// The harness process holds NATS and the load generator: per raw
		// publish that is the server plus the NATS client; per webhook, the
		// server plus the HTTP client.
		"harness_cpu_us_per_webhook": us(selfPerWebhook),
		"harness_cpu_us_per_publish": us(selfPerPublish),
		"http_client": map[string]any{
			"webhooks_per_s":             stdRate,
			"ratio_to_js_publish":        stdRate / pubRate,
			"ingest_cpu_us_per_webhook":  us(stdCPU),
			"harness_cpu_us_per_webhook": us(stdSelf),
			"latency_p50_ms":             Ms(Percentile(stdLat, 0.5)),
			"latency_p99_ms":             Ms(Percentile(stdLat, 0.99)),
		},
		"note": "the HTTP load generator runs in the harness process and shares the machine's CPUs with the ingest; the raw publishes need no HTTP. The headline figures use the lean sender (bench/loadgen.go); http_client is Go's http.Client on n other webhooks in the same run",
	})
	return nil
}

// selfCPUTime is the user and system CPU time the harness process has used.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
