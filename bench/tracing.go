package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
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
	s, err := e.NewStack(ctx, "tracing", StackConfig{Sim: quietSim()})
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
	// CPU per command of the worker process and of the harness (NATS,
	// simulator, and the OTLP sink): steadier than throughput when other
	// work shares the machine, and it says where tracing's cost lands.
	cpu := map[bool][]float64{}
	harness := map[bool][]float64{}
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
		cpu0, self0 := w[0].CPUTime(), selfCPUTime()
		rate, err := workerRate(ctx, s, t, "trace-"+name, n, group)
		cpu[on] = append(cpu[on], float64(w[0].CPUTime()-cpu0)/float64(time.Microsecond)/float64(n))
		harness[on] = append(harness[on], float64(selfCPUTime()-self0)/float64(time.Microsecond)/float64(n))
		return rate, err
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

	// The observability suite's own measure, in one process with a
	// discarding exporter: what tracing costs the worker itself.
	iters := 4 * e.Size.TracingCommands
	e2e, err := goBench(ctx, "./internal/e2e/", "BenchmarkTracingOverhead", iters)
	if err != nil {
		return err
	}
	r.Add(Figure{Key: "tracing_overhead_ratio", Value: ratio, Goal: &Goal{">=", 0.9}, Baseline: "the same worker process with tracing off, same run",
		How:     fmt.Sprintf("a cmd/worker process (WORKER_CONCURRENCY=%d) exporting every span over OTLP/HTTP to a local sink / with tracing off; %d get_invite_link commands per run, simulator at 0 ms (CPU-bound), best of %d runs each, alternated", conc, n, e.Size.TracingPairs),
		Command: cmdFor("tracing")})
	r.Add(Figure{Key: "tracing_overhead_ratio_in_process", Value: e2e["tracing_overhead_ratio"], Goal: &Goal{">=", 0.9}, Baseline: "the same worker with tracing off, same run",
		How:     fmt.Sprintf("internal/e2e BenchmarkTracingOverhead: worker throughput with every span sampled, batched and handed to a discarding exporter / untraced, in one process (no export cost), simulator at 0 ms, 16 commands at once; median of 4 alternating pairs of %d commands each (CPU per command untraced/traced: %.3f)", iters/8, e2e["cpu_ratio"]),
		Command: fmt.Sprintf("go test -run '^$' -bench BenchmarkTracingOverhead -benchtime %dx ./internal/e2e/", iters)})
	r.Detail("tracing", map[string]any{"off_cmds_per_s": off, "on_cmds_per_s": on, "otlp_requests": sink.requests.Load(), "otlp_bytes": sink.bytes.Load(),
		"worker_cpu_us_per_cmd":  map[string][]float64{"off": cpu[false], "on": cpu[true]},
		"harness_cpu_us_per_cmd": map[string][]float64{"off": harness[false], "on": harness[true]},
		"e2e_benchmark":          e2e})
	return nil
}

// goBench runs one package benchmark (go test -bench, n iterations) and
// returns its reported metrics by unit.
func goBench(ctx context.Context, pkg, name string, n int) (map[string]float64, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+name+"$", "-benchtime", strconv.Itoa(n)+"x", "-count", "1", pkg)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], name) {
			continue
		}
		metrics := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metrics[f[i+1]] = v
			}
		}
		return metrics, nil
	}
	return nil, fmt.Errorf("%s printed no result:\n%s", name, out)
}
