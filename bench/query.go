package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/query"
)

// queryLatency is the Graph latency of the query figures: a cache is
// worth what it saves of Meta's round trip.
const queryLatency = 20 * time.Millisecond

// runQuery measures group_info reads over NATS, answered by a cmd/worker
// process (which serves the read endpoints), cached and uncached in one
// run: each round reads a group never read before (a miss: through the
// limiter to Graph, then stored in groups_reads) and then reads it again
// (a hit).
func runQuery(ctx context.Context, e *Env, r *Report) error {
	s, err := e.NewStack(ctx, "query", StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	n := e.Size.QueryReads
	groups := make([]string, n)
	for i := range groups {
		if groups[i], err = s.NewGroup(ctx, Phone, fmt.Sprint("Query ", i), ""); err != nil {
			return err
		}
	}
	w, err := s.StartWorkers(ctx, e.Bins.Worker, "reader", 1, WorkerOpts{Env: noLimits})
	if err != nil {
		return err
	}
	defer StopAll(w)
	if err := s.Sim.SetFaults(sim.Faults{Latency: queryLatency}); err != nil {
		return err
	}

	subject := s.Names.Query(Phone, events.QueryGroupInfo)
	ask := func(group, want string) (time.Duration, error) {
		req, _ := json.Marshal(query.GroupInfoRequest{GroupID: group})
		start := time.Now()
		msg, err := s.NC.Request(subject, req, 10*time.Second)
		d := time.Since(start)
		if err != nil {
			return 0, err
		}
		if got := msg.Header.Get(query.CacheHeader); got != want {
			return 0, fmt.Errorf("group_info: cache %q, want %q (%s)", got, want, msg.Data)
		}
		return d, nil
	}
	cached := make([]time.Duration, 0, n)
	uncached := make([]time.Duration, 0, n)
	for _, g := range groups {
		d, err := ask(g, "miss")
		if err != nil {
			return err
		}
		uncached = append(uncached, d)
		if d, err = ask(g, "hit"); err != nil {
			return err
		}
		cached = append(cached, d)
	}
	rate := func(ds []time.Duration) float64 {
		var total time.Duration
		for _, d := range ds {
			total += d
		}
		return float64(len(ds)) / total.Seconds()
	}
	sortDurations(cached)
	sortDurations(uncached)
	cmd := cmdFor("query")
	how := fmt.Sprintf("%d group_info requests of each kind over NATS to one cmd/worker process, one client, one at a time (reads/s = 1 / mean latency); Graph (simulator) latency %s", n, queryLatency)
	r.Add(Figure{Key: "query_cached_reads_per_s", Value: rate(cached), Unit: "reads/s", Baseline: "query_uncached_reads_per_s",
		How: how + "; the second read of a group, answered from groups_reads", Command: cmd})
	r.Add(Figure{Key: "query_uncached_reads_per_s", Value: rate(uncached), Unit: "reads/s", Baseline: "Graph round trip",
		How: how + "; the first read of a group, through the limiter to Graph", Command: cmd})
	r.Add(Figure{Key: "query_cached_p99_ms", Value: Ms(Percentile(cached, 0.99)), Unit: "ms", How: how, Command: cmd})
	r.Add(Figure{Key: "query_uncached_p99_ms", Value: Ms(Percentile(uncached, 0.99)), Unit: "ms", How: how, Command: cmd})
	r.Detail("query", map[string]any{"reads": n, "graph_latency_ms": Ms(queryLatency),
		"cached_p50_ms": Ms(Percentile(cached, 0.5)), "uncached_p50_ms": Ms(Percentile(uncached, 0.5)),
		"also": "go test -run '^$' -bench GroupInfo -benchtime 2000x ./internal/query/ -args -graph-latency 20ms"})
	return nil
}
