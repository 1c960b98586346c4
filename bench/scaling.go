package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// runScaling measures throughput with 1, 2 and 4 worker processes against
// a simulator that takes ScalingLatency per call, like Meta's round trip.
// Every worker runs the same concurrency, so the calls in flight — and, as
// long as the machine keeps up, the throughput — grow with the workers.
func runScaling(ctx context.Context, e *Env, r *Report) error {
	cfg := quietSim()
	cfg.Faults = sim.Faults{Latency: e.Size.ScalingLatency}
	s, err := e.NewStack(ctx, "scaling", StackConfig{Sim: cfg})
	if err != nil {
		return err
	}
	defer s.Close()
	group, err := s.NewGroup(ctx, Phone, "Scaling", "")
	if err != nil {
		return err
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()

	type point struct {
		Workers  int     `json:"workers"`
		Commands int     `json:"commands"`
		CmdsPerS float64 `json:"cmds_per_s"`
		Ideal    float64 `json:"ideal_cmds_per_s"`
	}
	var points []point
	conc := e.Size.ScalingConcurrency
	for _, n := range e.Size.ScalingWorkers {
		w, err := s.StartWorkers(ctx, e.Bins.Worker, fmt.Sprintf("w%d", n), n, WorkerOpts{Concurrency: conc, Env: noLimits})
		if err != nil {
			return err
		}
		if err := warmUp(ctx, s, t, fmt.Sprintf("warm%d", n), group); err != nil {
			StopAll(w)
			return err
		}
		m := e.Size.ScalingPerWorker * n
		cmds, ids := inviteLinkCommands(fmt.Sprintf("scale%d", n), m, Phone, group)
		_, done, err := drain(ctx, s, t, cmds, ids, 10*time.Minute)
		StopAll(w)
		if err != nil {
			return err
		}
		// The middle 80 %: every worker busy, publishing and the last
		// stragglers left out.
		points = append(points, point{Workers: n, Commands: m, CmdsPerS: SteadyRate(done, 0.1, 0.9),
			Ideal: float64(n*conc) / e.Size.ScalingLatency.Seconds()})
		e.Log.Info("scaling", "workers", n, "cmds_per_s", points[len(points)-1].CmdsPerS)
	}
	base := points[0].CmdsPerS
	var xs []int
	var ys, ideal []float64
	for _, p := range points {
		xs = append(xs, p.Workers)
		ys = append(ys, p.CmdsPerS)
		ideal = append(ideal, base*float64(p.Workers))
	}
	if err := ScalingChart(e.Out+"/scaling.png", xs, ys, ideal); err != nil {
		return err
	}
	cmd := cmdFor("scaling")
	for _, p := range points[1:] {
		goal := map[int]float64{2: 1.8, 4: 3.4}[p.Workers]
		f := Figure{Key: fmt.Sprintf("scaling_%d_workers", p.Workers), Value: p.CmdsPerS / base, Baseline: "1 worker process, same run",
			How: fmt.Sprintf("throughput of %d cmd/worker processes / 1 process; each WORKER_CONCURRENCY=%d, simulator latency %s per call, rate limits lifted; %d get_invite_link commands per worker, completions between 10 %% and 90 %%",
				p.Workers, conc, e.Size.ScalingLatency, e.Size.ScalingPerWorker),
			Command: cmd}
		if goal > 0 {
			f.Goal = &Goal{">=", goal}
		}
		r.Add(f)
	}
	r.Detail("scaling", map[string]any{"points": points, "concurrency_per_worker": conc, "sim_latency_ms": Ms(e.Size.ScalingLatency), "chart": "scaling.png"})
	return nil
}
