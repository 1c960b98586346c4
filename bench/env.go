package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Size holds the scenario sizes of one run: Full for the report, Smoke
// (seconds) for CI, which runs the same code paths so they cannot rot.
type Size struct {
	Name string

	// JetStream baseline and ingest: webhooks sent, HTTP clients.
	Webhooks, IngestClients int
	// Worker vs plain loop: commands, and the worker's concurrency.
	WorkerCommands, WorkerConcurrency int
	// Latency: commands sent one at a time.
	LatencyCommands int
	// Scaling: commands per worker process, concurrency per worker,
	// simulated Graph latency, worker counts.
	ScalingPerWorker, ScalingConcurrency int
	ScalingLatency                       time.Duration
	ScalingWorkers                       []int
	// Rate limit: seconds of backlog per number.
	RateLimitSeconds float64
	// Fairness: approvals queued for one number (10/s), then reads of
	// another number sent one at a time behind them.
	FairnessBacklog, FairnessReads int
	// Tracing: commands per run, on/off pairs.
	TracingCommands, TracingPairs int
	// Query: reads per kind.
	QueryReads int
	// Campaign: invites, messages/s limit.
	CampaignInvites int
	CampaignMPS     float64
	CampaignWorkers int

	// Chaos sizes.
	ClusterCommands  int
	KillInvites      int
	KillMPS          float64 // the campaign's messages/s limit
	KillEvery        time.Duration
	KillMax          int // 0: until the campaign completes
	FaultCommands    int
	Outage           time.Duration // how long NATS is down
	OutageWebhooksPS int
}

// Full is the size of `make bench` and `make chaos`.
var Full = Size{
	Name:     "full",
	Webhooks: 20000, IngestClients: 16,
	WorkerCommands: 10000, WorkerConcurrency: 16,
	LatencyCommands:  1000,
	ScalingPerWorker: 2000, ScalingConcurrency: 4, ScalingLatency: 20 * time.Millisecond, ScalingWorkers: []int{1, 2, 4},
	RateLimitSeconds: 20,
	FairnessBacklog:  2000, FairnessReads: 50,
	TracingCommands: 4000, TracingPairs: 3,
	QueryReads:      500,
	CampaignInvites: 100000, CampaignMPS: 1000, CampaignWorkers: 4,

	ClusterCommands: 5000, KillInvites: 10000, KillMPS: 300, KillEvery: 3 * time.Second, FaultCommands: 5000,
	Outage: 10 * time.Second, OutageWebhooksPS: 100,
}

// Smoke is the size of `make bench/smoke` and `make chaos/smoke`.
var Smoke = Size{
	Name:     "smoke",
	Webhooks: 500, IngestClients: 8,
	WorkerCommands: 300, WorkerConcurrency: 16,
	LatencyCommands:  30,
	ScalingPerWorker: 100, ScalingConcurrency: 4, ScalingLatency: 20 * time.Millisecond, ScalingWorkers: []int{1, 2},
	RateLimitSeconds: 3,
	FairnessBacklog:  200, FairnessReads: 5,
	TracingCommands: 200, TracingPairs: 1,
	QueryReads:      20,
	CampaignInvites: 300, CampaignMPS: 200, CampaignWorkers: 2,

	ClusterCommands: 300, KillInvites: 400, KillMPS: 200, KillEvery: 1500 * time.Millisecond, KillMax: 2, FaultCommands: 300,
	// Past the ingest's 10 s publish timeout, so 503s are seen here too.
	Outage: 11 * time.Second, OutageWebhooksPS: 30,
}

// SizeByName returns Full or Smoke.
func SizeByName(name string) (Size, error) {
	switch name {
	case "full":
		return Full, nil
	case "smoke":
		return Smoke, nil
	}
	return Size{}, fmt.Errorf("unknown size %q (want full or smoke)", name)
}

// Env is what every scenario gets: the binaries, a scratch directory, the
// output directory (charts) and a progress log.
type Env struct {
	Bins Binaries
	Work string
	Out  string
	Size Size
	Log  *slog.Logger
}

// NewStack starts a stack (NewStack) in a fresh scratch directory for
// section name.
func (e *Env) NewStack(ctx context.Context, name string, cfg StackConfig) (*Stack, error) {
	dir, err := e.Scratch(name)
	if err != nil {
		return nil, err
	}
	return NewStack(ctx, dir, cfg)
}

// Scratch returns a fresh directory for one scenario.
func (e *Env) Scratch(name string) (string, error) {
	dir := filepath.Join(e.Work, name)
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.MkdirAll(dir, 0o755)
}

// Section is one part of the report.
type Section struct {
	Name string
	Run  func(ctx context.Context, e *Env, r *Report) error
}

// Sections are the parts of `make bench`, in order.
func Sections() []Section {
	return []Section{
		{"ingest", runIngest},
		{"worker", runWorker},
		{"latency", runLatency},
		{"scaling", runScaling},
		{"ratelimit", runRateLimit},
		{"fairness", runFairness},
		{"tracing", runTracing},
		{"query", runQuery},
		{"campaign", runCampaign},
	}
}

// cmdFor is the command reproducing one section.
func cmdFor(section string) string {
	return "go run ./bench/cmd/benchreport -only " + section
}

// Set overrides one field from "Name=value" (ints, floats, durations, and
// comma-separated ints for ScalingWorkers). The size is then named custom.
func (s *Size) Set(kv string) error {
	name, val, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("-set %q: want Field=value", kv)
	}
	f := reflect.ValueOf(s).Elem().FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, name) })
	if !f.IsValid() || name == "Name" {
		return fmt.Errorf("-set %q: no size field %s", kv, name)
	}
	var err error
	switch f.Interface().(type) {
	case int:
		var v int
		v, err = strconv.Atoi(val)
		f.SetInt(int64(v))
	case float64:
		var v float64
		v, err = strconv.ParseFloat(val, 64)
		f.SetFloat(v)
	case time.Duration:
		var v time.Duration
		v, err = time.ParseDuration(val)
		f.SetInt(int64(v))
	case []int:
		var vs []int
		for _, p := range strings.Split(val, ",") {
			v, perr := strconv.Atoi(p)
			err = errors.Join(err, perr)
			vs = append(vs, v)
		}
		f.Set(reflect.ValueOf(vs))
	}
	if err != nil {
		return fmt.Errorf("-set %q: %w", kv, err)
	}
	s.Name = "custom"
	return nil
}
