package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/webhook"
)

// benchPayload is one realistic webhook (a participant leaving), unique per
// n so that deduplication keeps every item.
func benchPayload(n int) []byte {
	return fmt.Appendf(nil, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"group_participants_update","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"groups":[{"timestamp":"%d","group_id":"Y2FwaV9ncm91cDoxOTUwNTU1MDA3OToxMjAzNjMzOTQzMjAdOTY0MTUZD","type":"group_participants_remove","removed_participants":[{"wa_id":"1650555%04d"}],"initiated_by":"participant"}]}}]}]}`, 1750101000+n, n%10000)
}

// BenchmarkIngestWebhooks measures signed webhooks through the ingest (HTTP,
// signature, split, publish, ack) and, in the same run, raw JetStream
// publishes of the same items with the same concurrency: the ceiling.
// Reported: webhooks/s, js_publishes/s, ratio (goal ≥ 0.5), p50_ms, p99_ms.
func BenchmarkIngestWebhooks(b *testing.B) {
	const clients = 16
	bd := setup(b)
	payloads := make([][]byte, b.N)
	sigs := make([]string, b.N)
	items := make([]webhook.Item, b.N)
	for i := range payloads {
		payloads[i] = benchPayload(i)
		sigs[i] = sign(payloads[i])
		parsed, err := webhook.Parse(payloads[i])
		if err != nil || len(parsed) != 1 {
			b.Fatalf("payload %d parses to %d items: %v", i, len(parsed), err)
		}
		items[i] = parsed[0]
	}
	ctx := context.Background()

	// Baseline: the same items, published straight to JetStream with their ids.
	jsStart := time.Now()
	runConcurrently(b.N, clients, func(i int) time.Duration {
		msg := nats.NewMsg("groups.webhook.106540352242922.group_participants_update")
		msg.Data = payloads[i]
		msg.Header.Set(jetstream.MsgIDHeader, "raw-"+items[i].MsgID)
		if _, err := bd.js.PublishMsg(ctx, msg); err != nil {
			b.Errorf("raw publish: %v", err)
		}
		return 0
	})
	jsRate := float64(b.N) / time.Since(jsStart).Seconds()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	b.ResetTimer()
	start := time.Now()
	lat := runConcurrently(b.N, clients, func(i int) time.Duration {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodPost, bd.url+"/webhook", bytes.NewReader(payloads[i]))
		req.Header.Set("X-Hub-Signature-256", sigs[i])
		resp, err := client.Do(req)
		if err != nil {
			b.Errorf("POST: %v", err)
			return 0
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("POST: status %d", resp.StatusCode)
		}
		return time.Since(t0)
	})
	elapsed := time.Since(start)
	b.StopTimer()

	rate := float64(b.N) / elapsed.Seconds()
	slices.Sort(lat)
	b.ReportMetric(rate, "webhooks/s")
	b.ReportMetric(jsRate, "js_publishes/s")
	b.ReportMetric(rate/jsRate, "ratio")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

func runConcurrently(n, workers int, f func(i int) time.Duration) []time.Duration {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				lat[i] = f(i)
			}
		})
	}
	wg.Wait()
	return lat
}
