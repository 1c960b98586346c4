package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// Phone is the business number of single-number scenarios.
const Phone = "106540352242922"

// noLimits lifts the rate limits of worker processes far above anything
// the machine can reach, so throughput figures measure the pipeline, not
// the limiter (the ratelimit section measures that).
var noLimits = []string{"RATE_LIMIT_MESSAGES=1000000", "RATE_LIMIT_GROUP_OPS=1000000", "RATE_LIMIT_READS=1000000"}

// quietSim is a simulator without its own throughput limits and with
// quick webhooks.
func quietSim() sim.Config {
	return sim.Config{WebhookDelay: 5 * time.Millisecond, GroupOpsPerSecond: -1, MPS: -1, PairInterval: -1,
		WebhookRetryBackoff: 10 * time.Millisecond}
}

// inviteLinkCommands are n get_invite_link commands for group: one Graph
// read each, the cheapest complete trip through a worker.
func inviteLinkCommands(prefix string, n int, phone, group string) ([]events.Command, []string) {
	cmds := make([]events.Command, n)
	ids := make([]string, n)
	for i := range cmds {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		cmds[i] = Command(ids[i], events.GetInviteLink, phone, group, nil)
	}
	return cmds, ids
}

// drain publishes cmds and waits for all their terminal events; it
// returns the completion times, sorted, and when publishing started.
func drain(ctx context.Context, s *Stack, t *Terminals, cmds []events.Command, ids []string, timeout time.Duration) (time.Time, []time.Time, error) {
	start := time.Now()
	if err := s.Publish(ctx, cmds); err != nil {
		return start, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := t.WaitIDs(wctx, ids); err != nil {
		return start, nil, err
	}
	return start, t.Times(ids), nil
}

// workerRate runs n get_invite_link commands through running workers and
// returns commands/s from the first publish to the last terminal event.
func workerRate(ctx context.Context, s *Stack, t *Terminals, prefix string, n int, group string) (float64, error) {
	cmds, ids := inviteLinkCommands(prefix, n, Phone, group)
	start, done, err := drain(ctx, s, t, cmds, ids, 10*time.Minute)
	if err != nil {
		return 0, err
	}
	return float64(n) / done[len(done)-1].Sub(start).Seconds(), nil
}

// warmUp runs a few commands so connections, consumers and limiter shares
// are in place before anything is timed.
func warmUp(ctx context.Context, s *Stack, t *Terminals, prefix, group string) error {
	cmds, ids := inviteLinkCommands(prefix, 50, Phone, group)
	_, _, err := drain(ctx, s, t, cmds, ids, time.Minute)
	return err
}

// runWorker compares one worker process with a plain loop making the same
// Graph call with the same number of calls in flight, against the
// simulator at zero latency: what the queue machinery (claim in the
// ledger, result record, event publish, ack) costs on top of the call.
func runWorker(ctx context.Context, e *Env, r *Report) error {
	s, err := e.NewStack(ctx, "worker", StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	group, err := s.NewGroup(ctx, Phone, "Bench", "")
	if err != nil {
		return err
	}
	n, conc := e.Size.WorkerCommands, e.Size.WorkerConcurrency

	// The plain loop: conc goroutines calling Graph back to back.
	var failed atomic.Int64
	loopSelf0 := selfCPUTime()
	start := time.Now()
	runConcurrently(n, conc, func(int) {
		if _, err := s.Graph.InviteLink(ctx, group); err != nil {
			failed.Add(1)
		}
	})
	loopRate := float64(n) / time.Since(start).Seconds()
	loopCPU := (selfCPUTime() - loopSelf0) / time.Duration(n)
	if failed.Load() > 0 {
		return fmt.Errorf("plain loop: %d calls failed", failed.Load())
	}

	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()
	w, err := s.StartWorkers(ctx, e.Bins.Worker, "worker", 1, WorkerOpts{Concurrency: conc, Env: noLimits})
	if err != nil {
		return err
	}
	defer StopAll(w)
	if err := warmUp(ctx, s, t, "warm", group); err != nil {
		return err
	}
	cpu0, self0 := w[0].CPUTime(), selfCPUTime()
	rate, err := workerRate(ctx, s, t, "tput", n, group)
	if err != nil {
		return err
	}
	// CPU per command: the worker process, and the harness (NATS server,
	// simulator, publisher and terminal watcher), beside the plain loop's
	// CPU per call (client and simulator).
	workerCPU, harnessCPU := (w[0].CPUTime()-cpu0)/time.Duration(n), (selfCPUTime()-self0)/time.Duration(n)
	w[0].SamplePeakRSS()
	StopAll(w)

	// The floor, on the same stack and consumer once the worker is gone.
	floor, err := StartProc(e.Bins.Floor, "floor", s.Dir, "", []string{"NATS_URL=" + s.URL, "GRAPH_API_BASE_URL=" + s.SimURL,
		"FLOOR_CONCURRENCY=" + strconv.Itoa(conc), "GOGC=400"}) // GOGC as cmd/worker's default
	if err != nil {
		return err
	}
	defer floor.Stop(5 * time.Second)
	if err := warmUp(ctx, s, t, "floor-warm", group); err != nil {
		return fmt.Errorf("the floor (log %s): %w", floor.Log, err)
	}
	fcpu0, fself0 := floor.CPUTime(), selfCPUTime()
	floorRate, err := workerRate(ctx, s, t, "floor", n, group)
	if err != nil {
		return fmt.Errorf("the floor (log %s): %w", floor.Log, err)
	}
	floorCPU, floorHarnessCPU := (floor.CPUTime()-fcpu0)/time.Duration(n), (selfCPUTime()-fself0)/time.Duration(n)

	cmd := cmdFor("worker")
	r.Add(Figure{Key: "simulator_requests_per_s", Value: loopRate, Unit: "req/s", Goal: &Goal{">=", 10000},
		How:     fmt.Sprintf("the plain loop below: %d get_invite_link calls by the graph client from %d goroutines to the simulator over HTTP (0 ms latency): the simulator is not the other figures' bottleneck", n, conc),
		Command: cmd})
	r.Add(Figure{Key: "worker_cmds_per_s", Value: rate, Unit: "cmds/s", Baseline: "plain Graph loop",
		How:     fmt.Sprintf("%d get_invite_link commands published at once to one cmd/worker process (WORKER_CONCURRENCY=%d, rate limits lifted), simulator at 0 ms; first publish → last terminal event", n, conc),
		Command: cmd})
	r.Add(Figure{Key: "worker_ratio_to_plain_graph_loop", Value: rate / loopRate, Goal: &Goal{">=", 0.5}, Baseline: "plain Graph loop",
		How:     fmt.Sprintf("worker_cmds_per_s / the same %d Graph calls from %d goroutines in a loop with the same client settings (%.0f calls/s)", n, conc, loopRate),
		Command: cmd})
	r.Add(Figure{Key: "worker_floor_ratio_to_plain_graph_loop", Value: floorRate / loopRate, Baseline: "plain Graph loop",
		How: fmt.Sprintf("the floor (bench/cmd/floorworker, %d at once, %.0f cmds/s) / the plain loop: %d more commands, on the same stack after the worker stopped, through a process that only pulls, decodes, creates the ledger entry, calls Graph, stores the result, publishes the terminal event and acks, "+
			"in the order the guarantees need and with nothing else (no limiter, tracing, retries or reconciliation)", conc, floorRate, n),
		Command: cmd})
	r.Add(Figure{Key: "worker_ratio_to_floor", Value: rate / floorRate, Baseline: "worker_floor_ratio_to_plain_graph_loop",
		How:     "worker_cmds_per_s / the floor's commands/s: the share of the floor the whole worker (limiter, handlers, reconciliation, tracing hooks, retries) keeps",
		Command: cmd})
	r.Detail("worker", map[string]any{"commands": n, "concurrency": conc, "plain_loop_calls_per_s": loopRate, "worker_peak_rss_mb": w[0].PeakRSSMB(),
		"worker_cpu_us_per_cmd": workerCPU.Microseconds(), "harness_cpu_us_per_cmd": harnessCPU.Microseconds(), "plain_loop_cpu_us_per_call": loopCPU.Microseconds(),
		"floor_cmds_per_s": floorRate, "floor_cpu_us_per_cmd": floorCPU.Microseconds(), "floor_harness_cpu_us_per_cmd": floorHarnessCPU.Microseconds()})
	return nil
}

// runLatency sends commands one at a time (light load) and measures publish
// → terminal event.
func runLatency(ctx context.Context, e *Env, r *Report) error {
	s, err := e.NewStack(ctx, "latency", StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	group, err := s.NewGroup(ctx, Phone, "Latency", "")
	if err != nil {
		return err
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()
	w, err := s.StartWorkers(ctx, e.Bins.Worker, "worker", 1, WorkerOpts{Env: noLimits})
	if err != nil {
		return err
	}
	defer StopAll(w)
	if err := warmUp(ctx, s, t, "warm", group); err != nil {
		return err
	}
	n := e.Size.LatencyCommands
	lat := make([]time.Duration, 0, n)
	for i := range n {
		d, err := timeOne(ctx, s, t, Command(fmt.Sprint("lat-", i), events.GetInviteLink, Phone, group, nil), 30*time.Second)
		if err != nil {
			return err
		}
		lat = append(lat, d)
	}
	sortDurations(lat)
	if err := LatencyChart(e.Out+"/latency.png", lat); err != nil {
		return err
	}
	cmd := cmdFor("latency")
	how := fmt.Sprintf("%d get_invite_link commands, one at a time, one cmd/worker process, simulator at 0 ms; synchronous publish → terminal event seen by a subscriber", n)
	r.Add(Figure{Key: "latency_p50_ms", Value: Ms(Percentile(lat, 0.5)), Unit: "ms", How: how, Command: cmd})
	r.Add(Figure{Key: "latency_p99_ms", Value: Ms(Percentile(lat, 0.99)), Unit: "ms", How: how, Command: cmd})
	r.Detail("latency", map[string]any{"commands": n, "min_ms": Ms(lat[0]), "p90_ms": Ms(Percentile(lat, 0.9)), "max_ms": Ms(lat[len(lat)-1]), "chart": "latency.png"})
	return nil
}

// timeOne publishes c alone and returns the time from its publish to its
// terminal event, waiting at most timeout.
func timeOne(ctx context.Context, s *Stack, t *Terminals, c events.Command, timeout time.Duration) (time.Duration, error) {
	sent := time.Now()
	if err := s.PublishOne(ctx, c); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := t.WaitIDs(wctx, []string{c.ID}); err != nil {
		return 0, err
	}
	at, _ := t.At(c.ID)
	return at.Sub(sent), nil
}
