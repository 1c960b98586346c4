package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupflow/groupflow/internal/webhook"
)

// postWebhooks POSTs payloads[i], signed with sigs[i], to addr's /webhook
// over clients keep-alive HTTP/1.1 connections, one request at a time on
// each, and records each request's latency in lat[i]. It returns how many
// were not answered 200.
//
// It is the load generator of the ingest figures: real HTTP/1.1 over TCP,
// every response read and parsed by net/http, but without http.Client's
// per-connection read and write goroutines and per-request allocations.
// On a 2-core machine the sender shares the CPUs with the ingest; Meta's
// senders do not, so the cheaper the sender, the closer the figure is to
// the ingest's own throughput. runIngest also measures http.Client in the
// same run, so the difference is visible.
func postWebhooks(ctx context.Context, addr string, payloads [][]byte, sigs []string, clients int, lat []time.Duration) (int64, error) {
	var next, bad atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer func() { _ = c.Close() }()
			stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
			defer stop()
			br, bw := bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
			head := []byte("POST /webhook HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n" + webhook.SignatureHeader + ": ")
			var num []byte
			for {
				i := int(next.Add(1)) - 1
				if i >= len(payloads) {
					return
				}
				t0 := time.Now()
				_, _ = bw.Write(head)
				_, _ = bw.WriteString(sigs[i])
				_, _ = bw.WriteString("\r\nContent-Length: ")
				num = strconv.AppendInt(num[:0], int64(len(payloads[i])), 10)
				_, _ = bw.Write(num)
				_, _ = bw.WriteString("\r\n\r\n")
				_, _ = bw.Write(payloads[i])
				if err := bw.Flush(); err != nil {
					errs <- fmt.Errorf("webhook %d: %w", i, err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- fmt.Errorf("webhook %d: %w", i, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
				lat[i] = time.Since(t0)
				if resp.Close {
					errs <- fmt.Errorf("webhook %d: the ingest closed the connection", i)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return bad.Load(), <-errs
}
