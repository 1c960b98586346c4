package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
)

// BenchmarkTracingOverhead measures what tracing costs the worker: the
// same load (get_invite_link against the simulator at zero latency, 16
// commands at once) through a worker with tracing off and one with
// tracing on — every span sampled, batched and handed to an exporter that
// discards it.
//
// The two run in turn, in pairs whose order alternates, so that a busy
// machine's drift hits both alike; tracing_overhead_ratio is the median
// over the pairs of traced throughput / untraced throughput (goal ≥ 0.9).
// cpu_ratio is the same comparison in process CPU time per command
// (untraced / traced), which a loaded machine disturbs less.
func BenchmarkTracingOverhead(b *testing.B) {
	sides := [2]*benchSide{newBenchSide(b, false), newBenchSide(b, true)}
	const pairs = 4
	per := max(b.N/(2*pairs), 1)
	var ratios []float64
	var took, cpu [2]time.Duration
	b.ResetTimer()
	for p := range pairs {
		var rate [2]float64
		for k := range 2 {
			i := (p + k) % 2 // off then on, then on then off, …
			d, c := sides[i].run(b, per)
			took[i] += d
			cpu[i] += c
			rate[i] = float64(per) / d.Seconds()
		}
		ratios = append(ratios, rate[1]/rate[0])
	}
	b.StopTimer()
	n := float64(pairs * per)
	b.ReportMetric(n/took[0].Seconds(), "cmds/s_untraced")
	b.ReportMetric(n/took[1].Seconds(), "cmds/s_traced")
	b.ReportMetric(float64(cpu[0])/n/1e3, "cpu-µs/cmd_untraced")
	b.ReportMetric(float64(cpu[1])/n/1e3, "cpu-µs/cmd_traced")
	b.ReportMetric(float64(cpu[0])/float64(cpu[1]), "cpu_ratio")
	slices.Sort(ratios)
	b.ReportMetric((ratios[(pairs-1)/2]+ratios[pairs/2])/2, "tracing_overhead_ratio")
}

// benchSide is a stack, a group to read the link of, and a counter of
// terminal events.
type benchSide struct {
	s      *stack
	pub    jetstream.JetStream // paces the caller's async publishes
	group  string
	seq    int
	tracer bool
	done   atomic.Int64
}

func newBenchSide(b *testing.B, tracing bool) *benchSide {
	b.Helper()
	s := setup(b, func(o *stackOpts) {
		o.bench, o.concurrency = true, 16
		if tracing {
			o.spanExporter = discardExporter{}
		} else {
			o.noTracing = true
		}
	})
	if tracing != s.workerTel.TracingEnabled() {
		b.Fatalf("tracing enabled = %v, want %v", s.workerTel.TracingEnabled(), tracing)
	}
	side := &benchSide{s: s, tracer: tracing}
	pub, err := jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(256), jetstream.WithPublishAsyncTimeout(30*time.Second))
	must(b, err)
	side.pub = pub
	gc, err := graph.New(graph.Config{BaseURL: s.simURL, AccessToken: s.opts.secrets.AccessToken,
		HTTPClient: &http.Client{Transport: s.transport}})
	must(b, err)
	ctx := context.Background()
	if _, err := gc.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "Bench"}); err != nil {
		b.Fatal(err)
	}
	for g, err := range gc.Groups(ctx, phone, 10) {
		must(b, err)
		side.group = g.ID
		break
	}
	if side.group == "" {
		b.Fatal("the created group is not listed")
	}
	sub, err := s.nc.Subscribe(s.names.Event(phone, "command.*"), func(*nats.Msg) { side.done.Add(1) })
	must(b, err)
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	must(b, s.nc.Flush())
	return side
}

// run publishes n commands, as a busy caller would (asynchronously), and
// returns how long a fresh worker took to answer them all, and the CPU
// time the process spent meanwhile. Starting and stopping the worker are
// not timed.
func (side *benchSide) run(b *testing.B, n int) (wall, cpu time.Duration) {
	b.StopTimer()
	stop := side.s.startWorker(b, workerOpts{})
	start := side.done.Load()
	runtime.GC() // neither side pays for the other's garbage
	b.StartTimer()
	cpu0 := processCPU()
	t0 := time.Now()
	for range n {
		side.seq++
		c := command(fmt.Sprintf("bench-%v-%d", side.tracer, side.seq), events.GetInviteLink, side.group, nil)
		body, _ := json.Marshal(c)
		if _, err := side.pub.PublishAsync(side.s.names.Command(phone, c.Type), body, jetstream.WithMsgID(c.ID)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-side.pub.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		b.Fatalf("%d publishes never acknowledged", side.pub.PublishAsyncPending())
	}
	deadline := time.Now().Add(2 * time.Minute)
	for side.done.Load()-start < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d commands answered", side.done.Load()-start, n)
		}
		time.Sleep(time.Millisecond)
	}
	wall, cpu = time.Since(t0), processCPU()-cpu0
	b.StopTimer()
	stop()
	b.StartTimer()
	return wall, cpu
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardExporter receives batches of spans and drops them: the cost of
// tracing up to the exporter, without a collector's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
