package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// terminalCounter counts terminal events as core NATS delivers them.
func terminalCounter(b testing.TB, s *stack) (*atomic.Int64, chan time.Time) {
	var n atomic.Int64
	arrivals := make(chan time.Time, 1<<16)
	sub, err := s.nc.Subscribe(s.names.Event(phone, "command.*"), func(*nats.Msg) {
		n.Add(1)
		select {
		case arrivals <- time.Now():
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	_ = s.nc.Flush()
	return &n, arrivals
}

// BenchmarkWorkerVsPlainLoop compares the worker's commands/s with a plain
// loop making the same Graph call (get invite link) with the same client,
// against the simulator at zero latency. ratio = worker / loop: the queue
// machinery (ledger claim, result record, event publish, ack) against the
// call itself. Goal ≥ 0.5. Like make bench: the loop runs as many calls at
// once as the worker runs commands (benchConcurrency), and the streams
// and buckets are on disk.
func BenchmarkWorkerVsPlainLoop(b *testing.B) {
	s := setup(b, func(o *stackOpts) { o.noWatch, o.fileStore = true, true })
	g := s.newGroup(b, "Bench", "")
	ctx := context.Background()

	// Plain loop: benchConcurrency goroutines calling Graph back to back.
	loop := func(n int) time.Duration {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range benchConcurrency {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, err := s.graph.InviteLink(ctx, g.ID); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if b.Failed() {
			b.FailNow()
		}
		return time.Since(start)
	}

	// The worker, with the same client and a connection of its own (as
	// the cmd/worker process has), whose traffic is counted below.
	done, _ := terminalCounter(b, s)
	wnc, err := nats.Connect(s.url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(wnc.Close)
	wjs, err := jetstream.New(wnc)
	if err != nil {
		b.Fatal(err)
	}
	s.startWorker(b, func(c *jobs.Config) { c.JS, c.Concurrency = wjs, benchConcurrency })
	sent := 0
	work := func(prefix string, n int) time.Duration {
		start := time.Now()
		for i := range n {
			// Asynchronously, as a busy caller would: the publisher's
			// round trips are not the worker's.
			c := command(fmt.Sprintf("%s-%d-%d", prefix, b.N, i), events.GetInviteLink, g.ID, nil)
			body, _ := json.Marshal(c)
			if _, err := s.js.PublishAsync(s.names.Command(phone, c.Type), body, jetstream.WithMsgID(c.ID)); err != nil {
				b.Fatal(err)
			}
		}
		<-s.js.PublishAsyncComplete()
		sent += n
		for done.Load() < int64(sent) {
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}

	// Warm up both (connections, consumers), as make bench does. Then
	// interleave rounds of each, so that the machine's noise falls on
	// both alike.
	loop(200)
	work("warm", 200)
	const rounds = 4
	var loopTime, workerTime, loopCPU, workerCPU time.Duration
	msgs0, seqs0 := wnc.Stats(), streamSeqs(b, s)
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r == rounds-1 {
			n = b.N - (rounds-1)*n // the remainder
		}
		c := processCPU()
		loopTime += loop(n)
		c2 := processCPU()
		workerTime += work(fmt.Sprint("bench-", r), n)
		loopCPU, workerCPU = loopCPU+c2-c, workerCPU+processCPU()-c2
	}
	b.StopTimer()
	msgs, seqs := wnc.Stats(), streamSeqs(b, s)

	loopRate, workerRate := float64(b.N)/loopTime.Seconds(), float64(b.N)/workerTime.Seconds()
	b.ReportMetric(loopRate, "loop_calls/s")
	b.ReportMetric(workerRate, "worker_cmds/s")
	b.ReportMetric(workerRate/loopRate, "ratio")
	// CPU of the whole process (NATS server, worker, simulator, client):
	// what one command costs beside what one plain call costs.
	b.ReportMetric(float64(loopCPU.Microseconds())/float64(b.N), "loop_cpu_µs/call")
	b.ReportMetric(float64(workerCPU.Microseconds())/float64(b.N), "worker_cpu_µs/cmd")
	// What one command costs in messages on the worker's connection
	// (publishes, acks and pull requests out; replies and deliveries in)
	// and in messages stored, per stream.
	per := func(d uint64) float64 { return float64(d) / float64(b.N) }
	b.ReportMetric(per(msgs.OutMsgs-msgs0.OutMsgs), "worker_out_msgs/cmd")
	b.ReportMetric(per(msgs.InMsgs-msgs0.InMsgs), "worker_in_msgs/cmd")
	for name, seq := range seqs {
		b.ReportMetric(per(seq-seqs0[name]), "stored_"+name+"/cmd")
	}
}

// BenchmarkPublishToTerminalLatency measures publish → terminal event at
// light load: one command at a time.
func BenchmarkPublishToTerminalLatency(b *testing.B) {
	s := setup(b, func(o *stackOpts) { o.noWatch = true })
	g := s.newGroup(b, "Latency", "")
	_, arrivals := terminalCounter(b, s)
	s.startWorker(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		sent := time.Now()
		s.publish(b, command(fmt.Sprintf("lat-%d-%d", b.N, i), events.GetInviteLink, g.ID, nil))
		select {
		case at := <-arrivals:
			lat = append(lat, at.Sub(sent))
		case <-time.After(10 * time.Second):
			b.Fatal("no terminal event")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkRateLimitUtilisation runs a backlog of approvals through three
// rate-limited workers (50 group operations/s for one number) and reports
// the share of the limit used and the busiest one-second window. Goal:
// utilisation ≥ 0.95, busiest window ≤ the limit.
func BenchmarkRateLimitUtilisation(b *testing.B) {
	const limit, backlog = 50, 250
	for range b.N {
		s := setup(b)
		g := s.newGroup(b, "Utilisation", graph.JoinApprovalRequired)
		s.startLimitedWorkers(b, 3, ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, ratelimit.DefaultJitter)
		done, _ := terminalCounter(b, s)
		for i := range backlog {
			s.publish(b, command(fmt.Sprint("util-", i), events.ApproveJoinRequests, g.ID,
				events.JoinRequestsParams{JoinRequestIDs: []string{fmt.Sprint("nope-", i)}}))
		}
		for done.Load() < backlog {
			time.Sleep(5 * time.Millisecond)
		}
		var at []time.Time
		for _, c := range s.sim.Calls() {
			if c.Endpoint == sim.EndpointApproveJoin {
				at = append(at, c.Time)
			}
		}
		sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
		worst, j := 0, 0
		for i := range at {
			for j < len(at) && at[j].Sub(at[i]) < time.Second {
				j++
			}
			worst = max(worst, j-i)
		}
		// Calls after the first, over the time they took: the steady rate.
		span := at[len(at)-1].Sub(at[0]).Seconds()
		b.ReportMetric(float64(len(at)-1)/span/limit, "utilisation")
		b.ReportMetric(float64(worst), "busiest_window")
	}
}

// benchConcurrency is the worker's concurrency in the throughput
// benchmark, and the plain loop's: make bench's WORKER_CONCURRENCY.
const benchConcurrency = 16

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// streamSeqs is the last sequence of the streams a command writes to: its
// own stream, the ledger bucket's and the event stream.
func streamSeqs(b *testing.B, s *stack) map[string]uint64 {
	seqs := map[string]uint64{}
	for name, stream := range map[string]string{
		"command": s.names.CommandStream(), "ledger": "KV_" + s.names.LedgerBucket(), "event": s.names.EventStream(),
	} {
		st, err := s.js.Stream(context.Background(), stream)
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		seqs[name] = info.State.LastSeq
	}
	return seqs
}
