package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// FaultResult is the simulator-faults scenario's outcome.
type FaultResult struct {
	Commands       int            `json:"commands"`
	Numbers        int            `json:"phone_numbers"`
	Workers        string         `json:"workers"`
	MaxDeliver     int            `json:"max_deliver"`
	Faults         map[string]any `json:"faults_configured"`
	Injected       map[string]int `json:"faults_injected"`
	GraphCalls     int            `json:"graph_calls"`
	Outcomes       map[string]int `json:"outcomes"`
	FailureReasons map[string]int `json:"failure_reasons"`
	NotTerminal    int            `json:"not_terminal"`
	Duplicated     int            `json:"duplicated_terminal_events"`
	DLQ            int            `json:"dlq_messages"`
	// DLQNotExhausted are dead letters whose reason is not
	// retries_exhausted; DLQWithoutHistory those without attempts;
	// DLQMismatch commands whose terminal event and DLQ entry disagree.
	DLQNotExhausted   int     `json:"dlq_not_exhausted"`
	DLQWithoutHistory int     `json:"dlq_without_history"`
	DLQMismatch       int     `json:"dlq_mismatch"`
	DLQAttemptsMin    int     `json:"dlq_attempts_min"`
	DLQAttemptsMax    int     `json:"dlq_attempts_max"`
	DoubleSends       int     `json:"double_sends"`
	Seconds           float64 `json:"seconds"`
	Pass              bool    `json:"pass"`
}

// Passed reports whether every invariant held.
func (r FaultResult) Passed() bool { return r.Pass }

// faultNumbers spreads the commands over many numbers: each 130429 pauses
// its number on every worker for at least a second.
const faultNumbers = 25

// runFaultChaos runs a mix of reads, invites and link resets through two
// workers while the simulator answers 10 % of calls with a 5xx, 5 % with
// 130429 and loses 1 % of answers after acting on them. Every command must
// end with exactly one terminal event; the DLQ must hold exactly the
// commands that exhausted their deliveries, each with its history; no
// invite may reach a recipient twice.
//
// The workers run in the harness process (separate NATS connections,
// Graph clients and rate limiters): cmd/worker has no settings for
// MaxDeliver, the in-process retry budget or the nak delays, which this
// scenario turns down so that some commands do exhaust their deliveries.
func runFaultChaos(ctx context.Context, e *Env, r *Report) error {
	const maxDeliver = 3
	t0 := time.Now()
	s, err := e.NewStack(ctx, "faults", StackConfig{Sim: quietSim(),
		Topology: events.TopologyConfig{MaxDeliver: maxDeliver, AckWait: 10 * time.Second}})
	if err != nil {
		return err
	}
	defer s.Close()
	tpl, err := s.InviteTemplate(ctx)
	if err != nil {
		return err
	}
	phones := make([]string, faultNumbers)
	groups := make([]string, faultNumbers)
	for i := range phones {
		phones[i] = fmt.Sprintf("2000000000%05d", i+1)
		if groups[i], err = s.NewGroup(ctx, phones[i], "Faults", ""); err != nil {
			return err
		}
	}
	n := e.Size.FaultCommands
	cmds := make([]events.Command, n)
	ids := make([]string, n)
	for i := range cmds {
		k := i % faultNumbers
		ids[i] = fmt.Sprint("ft-", i)
		switch i % 5 {
		case 0, 1:
			cmds[i] = Command(ids[i], events.GetInviteLink, phones[k], groups[k], nil)
		case 2, 3:
			cmds[i] = Command(ids[i], events.SendGroupInvite, phones[k], "",
				events.SendGroupInviteParams{To: fmt.Sprintf("1666%07d", i), GroupID: groups[k], Template: tpl})
		default:
			cmds[i] = Command(ids[i], events.ResetInviteLink, phones[k], groups[k], nil)
		}
	}

	faults := sim.Faults{Status5xx: 0.10, Throttle: 0.05, ThrottleCode: graph.CodeThroughput, LostResponse: 0.01}
	if err := s.Sim.SetFaults(faults); err != nil {
		return err
	}
	s.Sim.ResetCalls()
	wctx, stopWorkers := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErrs []error
	var errMu sync.Mutex
	for w := range 2 {
		run, err := inProcessWorker(wctx, s, fmt.Sprint("faults-", w+1))
		if err != nil {
			stopWorkers()
			wg.Wait()
			return err
		}
		wg.Go(func() {
			if err := run(); err != nil {
				errMu.Lock()
				runErrs = append(runErrs, err)
				errMu.Unlock()
			}
		})
	}
	defer func() { stopWorkers(); wg.Wait() }()
	time.Sleep(settle)
	if err := s.Publish(ctx, cmds); err != nil {
		return err
	}
	terms, err := waitTerminalsInStream(ctx, s, ids, 10*time.Minute)
	if err != nil {
		return err
	}
	// Let in-flight dead letters land before reading the DLQ.
	time.Sleep(time.Second)
	stopWorkers()
	wg.Wait()
	if len(runErrs) > 0 {
		return fmt.Errorf("worker: %w", runErrs[0])
	}
	_ = s.Sim.SetFaults(sim.Faults{})

	res := FaultResult{Commands: n, Numbers: faultNumbers, MaxDeliver: maxDeliver,
		Workers:  "2 jobs.Worker in the harness process, separate NATS connections, Graph clients and rate limiters; RetryMaxElapsed 1ms (one try per delivery), nak delay 200ms × delivery",
		Faults:   map[string]any{"status_5xx": faults.Status5xx, "throttle_130429": faults.Throttle, "lost_response": faults.LostResponse},
		Injected: map[string]int{}, Outcomes: map[string]int{}, FailureReasons: map[string]int{}}
	exhausted := map[string]bool{}
	for _, id := range ids {
		got := terms[id]
		if len(got) == 0 {
			res.NotTerminal++
			continue
		}
		if len(got) > 1 {
			res.Duplicated++
		}
		cr := got[0].Result
		res.Outcomes[cr.Outcome]++
		if cr.Error != nil {
			res.FailureReasons[cr.Error.Reason]++
			if cr.Error.Reason == events.ReasonRetriesExhausted {
				exhausted[id] = true
			}
		}
	}
	dead := map[string]bool{}
	res.DLQAttemptsMin = -1
	if err := s.ScanStream(ctx, s.Names.DLQStream(), "", func(m StreamMsg) {
		res.DLQ++
		var dl jobs.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			res.DLQWithoutHistory++
			return
		}
		dead[dl.CommandID] = true
		if dl.Reason != events.ReasonRetriesExhausted {
			res.DLQNotExhausted++
		}
		if len(dl.Attempts) == 0 {
			res.DLQWithoutHistory++
		}
		if res.DLQAttemptsMin < 0 || len(dl.Attempts) < res.DLQAttemptsMin {
			res.DLQAttemptsMin = len(dl.Attempts)
		}
		res.DLQAttemptsMax = max(res.DLQAttemptsMax, len(dl.Attempts))
	}); err != nil {
		return err
	}
	res.DLQAttemptsMin = max(res.DLQAttemptsMin, 0)
	for id := range exhausted {
		if !dead[id] {
			res.DLQMismatch++
		}
	}
	for id := range dead {
		if !exhausted[id] {
			res.DLQMismatch++
		}
	}
	calls := s.Sim.Calls()
	res.GraphCalls = len(calls)
	sends := map[string]int{}
	for _, c := range calls {
		if c.Fault != "" {
			res.Injected[c.Fault]++
		}
		if c.Endpoint == sim.EndpointSendMessage && (c.Status == 200 || c.Fault == "lost_response" && c.Code == 0) {
			var body struct {
				To string `json:"to"`
			}
			_ = json.Unmarshal([]byte(c.Body), &body)
			sends[body.To]++
		}
	}
	for _, k := range sends {
		if k > 1 {
			res.DoubleSends++
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	res.Pass = res.NotTerminal == 0 && res.Duplicated == 0 && res.DLQNotExhausted == 0 && res.DLQWithoutHistory == 0 &&
		res.DLQMismatch == 0 && res.DoubleSends == 0
	r.Detail("simulator_faults", res)
	return nil
}

// inProcessWorker builds a worker with its own NATS connection, Graph
// client and rate limiter, and returns the function that runs it (and its
// limiter) until ctx ends.
func inProcessWorker(ctx context.Context, s *Stack, id string) (func() error, error) {
	nc, err := nats.Connect(s.URL, nats.Name(id), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	kv := func(name string) jetstream.KeyValue {
		if err != nil {
			return nil
		}
		var b jetstream.KeyValue
		b, err = js.KeyValue(ctx, name)
		return b
	}
	workersKV, throttleKV := kv(s.Names.WorkersBucket()), kv(s.Names.ThrottleBucket())
	if err != nil {
		nc.Close()
		return nil, err
	}
	quiet := slog.New(slog.DiscardHandler)
	lim, err := ratelimit.New(ratelimit.Config{Workers: workersKV, Throttle: throttleKV, WorkerID: id,
		Defaults: ratelimit.Limits{Messages: 1e6, GroupOps: 1e6, Reads: 1e6}, Logger: quiet})
	if err != nil {
		nc.Close()
		return nil, err
	}
	gc, err := NewGraphClient(s.SimURL, 32)
	if err != nil {
		nc.Close()
		return nil, err
	}
	w, err := jobs.New(ctx, jobs.Config{JS: js, Names: s.Names, Graph: gc, Limiter: lim, WorkerID: id,
		Concurrency: 32, WebhookTimeout: time.Minute, ShutdownTimeout: 5 * time.Second,
		RetryMaxElapsed: time.Millisecond,
		NakDelay:        func(d uint64) time.Duration { return time.Duration(d) * 200 * time.Millisecond }, //nolint:gosec // G115: d is a delivery count
		Logger:          quiet})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return func() error {
		defer nc.Close()
		limCtx, stopLim := context.WithCancel(context.WithoutCancel(ctx))
		limDone := make(chan error, 1)
		go func() { limDone <- lim.Run(limCtx) }()
		err := w.Run(ctx)
		stopLim()
		if lerr := <-limDone; err == nil {
			err = lerr
		}
		return err
	}, nil
}
