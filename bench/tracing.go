package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
)

// otlpSink accepts OTLP/HTTP exports and counts them: a collector that
// costs the worker what a real one would (serialising and sending spans).
type otlpSink struct {
	srv             *httptest.Server
	requests, bytes atomic.Int64
}

func newOTLPSink() *otlpSink {
	s := &otlpSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		s.requests.Add(1)
		s.bytes.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	return s
}

// runTracing measures worker throughput with tracing off and on (every
// span sampled and exported over OTLP/HTTP to a local sink), alternating
// runs so drift on the shared machine hits both alike.
func runTracing(ctx context.Context, e *Env, r *Report) error {
	dir, err := e.Scratch("tracing")
	if err != nil {
		return err
	}
	s, err := NewStack(ctx, dir, StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	sink := newOTLPSink()
	defer sink.srv.Close()
	group, err := s.NewGroup(ctx, Phone, "Tracing", "")
	if err != nil {
		return err
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()

	n, conc := e.Size.TracingCommands, e.Size.WorkerConcurrency
	tracingOn := []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + sink.srv.URL + "/v1/traces",
		"OTEL_TRACES_SAMPLER=always_on",
		"OTEL_SERVICE_NAME=groupflow-worker-bench",
	}
	run := func(i int, on bool) (float64, error) {
		env := noLimits
		name := fmt.Sprintf("off%d", i)
		if on {
			env = append(append([]string(nil), noLimits...), tracingOn...)
			name = fmt.Sprintf("on%d", i)
		}
		w, err := s.StartWorkers(ctx, e.Bins.Worker, name, 1, WorkerOpts{Concurrency: conc, Env: env})
		if err != nil {
			return 0, err
		}
		defer StopAll(w)
		if err := warmUp(ctx, s, t, "warm-"+name, group); err != nil {
			return 0, err
		}
		return workerRate(ctx, s, t, "trace-"+name, n, group)
	}
	var off, on []float64
	for i := range e.Size.TracingPairs {
		// Alternate which goes first, so neither always gets the warmer machine.
		order := []bool{false, true}
		if i%2 == 1 {
			order = []bool{true, false}
		}
		for _, tracing := range order {
			rate, err := run(i, tracing)
			if err != nil {
				return err
			}
			if tracing {
				on = append(on, rate)
			} else {
				off = append(off, rate)
			}
		}
	}
	if sink.requests.Load() == 0 {
		return fmt.Errorf("tracing on, but the worker exported no spans")
	}
	// Best of each: interference from other work on the machine only
	// ever slows a run down, so the fastest run is the truest.
	ratio := slices.Max(on) / slices.Max(off)
	r.Add(Figure{Key: "tracing_overhead_ratio", Value: ratio, Goal: &Goal{">=", 0.9}, Baseline: "the same worker with tracing off, same run",
		How:     fmt.Sprintf("worker_cmds_per_s with every span sampled and exported over OTLP/HTTP (a local sink) / with tracing off; %d get_invite_link commands per run, one cmd/worker process (WORKER_CONCURRENCY=%d), simulator at 0 ms, best of %d runs each, alternated", n, conc, e.Size.TracingPairs),
		Command: cmdFor("tracing")})
	r.Detail("tracing", map[string]any{"off_cmds_per_s": off, "on_cmds_per_s": on, "otlp_requests": sink.requests.Load(), "otlp_bytes": sink.bytes.Load()})
	return nil
}
