package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
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
// (untraced / traced), which a loaded machine disturbs less; allocs/cmd
// and B/cmd are the process's heap allocations per command on each side,
// which it does not disturb at all. It fails if the traced side exported
// fewer spans than its commands make: a dropped span costs nothing.
func BenchmarkTracingOverhead(b *testing.B) {
	sides := [2]*benchSide{newBenchSide(b, false), newBenchSide(b, true)}
	b.Cleanup(func() { pprof.SetGoroutineLabels(context.Background()) })
	const pairs = 4
	per := max(b.N/(2*pairs), 1)
	var ratios []float64
	var sum [2]usage
	b.ResetTimer()
	for p := range pairs {
		var rate [2]float64
		for k := range 2 {
			i := (p + k) % 2 // off then on, then on then off, …
			u := sides[i].run(b, per)
			sum[i].add(u)
			rate[i] = float64(per) / u.wall.Seconds()
		}
		ratios = append(ratios, rate[1]/rate[0])
	}
	b.StopTimer()
	n := float64(pairs * per)
	b.ReportMetric(n/sum[0].wall.Seconds(), "cmds/s_untraced")
	b.ReportMetric(n/sum[1].wall.Seconds(), "cmds/s_traced")
	b.ReportMetric(float64(sum[0].cpu)/n/1e3, "cpu-µs/cmd_untraced")
	b.ReportMetric(float64(sum[1].cpu)/n/1e3, "cpu-µs/cmd_traced")
	b.ReportMetric(float64(sum[0].cpu)/float64(sum[1].cpu), "cpu_ratio")
	b.ReportMetric(float64(sum[0].allocs)/n, "allocs/cmd_untraced")
	b.ReportMetric(float64(sum[1].allocs)/n, "allocs/cmd_traced")
	b.ReportMetric(float64(sum[0].bytes)/n, "B/cmd_untraced")
	b.ReportMetric(float64(sum[1].bytes)/n, "B/cmd_traced")
	// Every span reaches the exporter (none dropped for a full queue):
	// process, Graph call, result publish.
	if got := float64(sum[1].spans) / n; got < 3 {
		b.Errorf("%.2f spans exported per traced command, want at least 3: spans were dropped", got)
	}
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
	labels context.Context // profiler labels of the side's goroutines
	done   atomic.Int64
	spans  atomic.Int64 // exported, on the traced side
}

// newBenchSide sets up one side. Every goroutine of it (its NATS server,
// simulator, worker) carries the profiler label side=traced or
// side=untraced, so the benchmark's CPU profile splits by side:
// go tool pprof -tagfocus 'side=^traced$'.
func newBenchSide(b *testing.B, tracing bool) *benchSide {
	b.Helper()
	label := "untraced"
	if tracing {
		label = "traced"
	}
	labels := pprof.WithLabels(context.Background(), pprof.Labels("side", label))
	pprof.SetGoroutineLabels(labels)
	side := &benchSide{tracer: tracing, labels: labels}
	s := setup(b, func(o *stackOpts) {
		o.bench, o.concurrency = true, 16
		if tracing {
			o.spanExporter = discardExporter{&side.spans}
		} else {
			o.noTracing = true
		}
	})
	if tracing != s.workerTel.TracingEnabled() {
		b.Fatalf("tracing enabled = %v, want %v", s.workerTel.TracingEnabled(), tracing)
	}
	side.s = s
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

// usage is what one run of a side took.
type usage struct {
	wall, cpu     time.Duration
	allocs, bytes uint64 // heap allocations of the whole process
	spans         int64  // exported
}

func (u *usage) add(v usage) {
	u.wall += v.wall
	u.cpu += v.cpu
	u.allocs += v.allocs
	u.bytes += v.bytes
	u.spans += v.spans
}

// run publishes n commands, as a busy caller would (asynchronously), and
// returns how long a fresh worker took to answer them all, and the CPU
// time and heap allocations of the process meanwhile. Starting and
// stopping the worker are not timed.
func (side *benchSide) run(b *testing.B, n int) usage {
	b.StopTimer()
	pprof.SetGoroutineLabels(side.labels) // the worker's goroutines inherit them
	stop := side.s.startWorker(b, workerOpts{})
	start, spans0 := side.done.Load(), side.spans.Load()
	runtime.GC() // neither side pays for the other's garbage
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
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
	u := usage{wall: time.Since(t0), cpu: processCPU() - cpu0}
	b.StopTimer()
	runtime.ReadMemStats(&m1)
	u.allocs, u.bytes = m1.Mallocs-m0.Mallocs, m1.TotalAlloc-m0.TotalAlloc
	stop()
	must(b, side.s.workerTel.ForceFlush(context.Background()))
	u.spans = side.spans.Load() - spans0
	b.StartTimer()
	return u
}

// processCPU is the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardExporter receives batches of spans, counts them and drops them:
// the cost of tracing up to the exporter, without a collector's.
type discardExporter struct{ spans *atomic.Int64 }

func (e discardExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.spans.Add(int64(len(spans)))
	return nil
}
func (discardExporter) Shutdown(context.Context) error { return nil }
