package query_test

import (
	"context"
	"encoding/json"
	"flag"
	"slices"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/query"
)

// The simulator answers in microseconds; Meta takes a network round trip.
// -graph-latency adds one to every Graph call for a realistic uncached rate.
var graphLatency = flag.Duration("graph-latency", 0, "latency the simulator adds to every Graph call in benchmarks")

// BenchmarkGroupInfo measures group_info over NATS against the simulator,
// cached and uncached in one run: each iteration makes one cached read and
// one read right after an invalidation (so it goes to Graph through the
// limiter and stores its answer). Only the reads are timed; reads/s is
// one client's sequential rate (1 / mean latency), ns/op covers both reads.
//
//	go test -run '^$' -bench GroupInfo -benchtime 2000x ./internal/query/ [-args -graph-latency 20ms]
func BenchmarkGroupInfo(b *testing.B) {
	bb := setup(b, func(o *options) { o.limits = ratelimit.Limits{Reads: 1e6} })
	g := bb.createGroup(b, "Bench", "Benchmark group", events.JoinAutoApprove)
	for _, wa := range []string{"16505550401", "16505550402", "16505550403"} {
		bb.join(b, g, wa)
	}
	ctx := context.Background()
	subject := bb.names.Query(phone, events.QueryGroupInfo)
	req, _ := json.Marshal(query.GroupInfoRequest{GroupID: g.ID})
	ask := func(want string) time.Duration {
		start := time.Now()
		msg, err := bb.nc.Request(subject, req, 10*time.Second)
		d := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if got := msg.Header.Get(query.CacheHeader); got != want {
			b.Fatalf("cache %q, want %q (%s)", got, want, msg.Data)
		}
		return d
	}
	if err := bb.sim.SetFaults(sim.Faults{Latency: *graphLatency}); err != nil {
		b.Fatal(err)
	}
	ask("miss")
	cached := make([]time.Duration, 0, b.N)
	uncached := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		cached = append(cached, ask("hit"))
		b.StopTimer()
		if err := bb.svc.InvalidateGroup(ctx, phone, g.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		uncached = append(uncached, ask("miss"))
	}
	b.StopTimer()
	report := func(name string, ds []time.Duration) {
		var total time.Duration
		for _, d := range ds {
			total += d
		}
		slices.Sort(ds)
		b.ReportMetric(float64(len(ds))/total.Seconds(), name+"_reads/s")
		b.ReportMetric(float64(ds[(len(ds)*99+99)/100-1].Microseconds()), name+"_p99_µs") // nearest rank
	}
	report("cached", cached)
	report("uncached", uncached)
}
