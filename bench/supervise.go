package bench

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Supervisor keeps n worker processes running, as an orchestrator would:
// one that exits (crash or SIGKILL) is started again under a new name.
type Supervisor struct {
	s      *Stack
	bin    string
	prefix string
	opts   WorkerOpts
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	procs    []*Proc
	started  int
	restarts int
	peakRSS  float64
	errs     []error
	wg       sync.WaitGroup
}

// Supervise starts n workers and restarts any that exits until Stop.
func (s *Stack) Supervise(ctx context.Context, bin, prefix string, n int, o WorkerOpts) (*Supervisor, error) {
	procs, err := s.StartWorkers(ctx, bin, prefix, n, o)
	if err != nil {
		return nil, err
	}
	sup := &Supervisor{s: s, bin: bin, prefix: prefix, opts: o, procs: procs, started: n}
	sup.ctx, sup.cancel = context.WithCancel(ctx)
	for i := range procs {
		sup.watch(i)
	}
	return sup, nil
}

func (sup *Supervisor) watch(i int) {
	sup.mu.Lock()
	p := sup.procs[i]
	sup.mu.Unlock()
	sup.wg.Go(func() {
		for {
			select {
			case <-sup.ctx.Done():
				return
			case <-p.Done():
			case <-time.After(500 * time.Millisecond):
				p.SamplePeakRSS()
				sup.mu.Lock()
				sup.peakRSS = max(sup.peakRSS, p.PeakRSSMB())
				sup.mu.Unlock()
				continue
			}
			if sup.ctx.Err() != nil {
				return
			}
			sup.mu.Lock()
			sup.started++
			sup.restarts++
			name := fmt.Sprintf("%s-%d", sup.prefix, sup.started)
			sup.mu.Unlock()
			o := sup.opts
			np, err := sup.s.StartWorker(sup.ctx, sup.bin, name, o)
			if err != nil {
				if sup.ctx.Err() != nil {
					return // stopping: not a failure
				}
				sup.mu.Lock()
				sup.errs = append(sup.errs, err)
				sup.mu.Unlock()
				return
			}
			sup.mu.Lock()
			sup.procs[i] = np
			sup.mu.Unlock()
			p = np
		}
	})
}

// Procs returns the running processes.
func (sup *Supervisor) Procs() []*Proc {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	return append([]*Proc(nil), sup.procs...)
}

// Restarts counts the processes started again.
func (sup *Supervisor) Restarts() int {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	return sup.restarts
}

// PeakRSSMB is the largest peak resident set of any process it ran.
func (sup *Supervisor) PeakRSSMB() float64 {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	return sup.peakRSS
}

// Err returns the first failure to restart a worker.
func (sup *Supervisor) Err() error {
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if len(sup.errs) > 0 {
		return sup.errs[0]
	}
	return nil
}

// Stop stops restarting and stops the processes with SIGTERM.
func (sup *Supervisor) Stop() {
	sup.cancel()
	sup.wg.Wait()
	procs := sup.Procs()
	for _, p := range procs {
		p.SamplePeakRSS()
		sup.mu.Lock()
		sup.peakRSS = max(sup.peakRSS, p.PeakRSSMB())
		sup.mu.Unlock()
	}
	StopAll(procs)
}
