package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// Binaries are the groupflow programs the harness runs as processes.
type Binaries struct {
	Worker string
	Ingest string
	// Floor is bench/cmd/floorworker (the worker section's floor).
	Floor string
}

// Build compiles cmd/worker, cmd/ingest and bench/cmd/floorworker into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Binaries{}, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", dir+string(os.PathSeparator), "./cmd/worker", "./cmd/ingest", "./bench/cmd/floorworker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binaries{}, fmt.Errorf("build the binaries: %w\n%s", err, out)
	}
	return Binaries{Worker: filepath.Join(dir, "worker"), Ingest: filepath.Join(dir, "ingest"), Floor: filepath.Join(dir, "floorworker")}, nil
}

// ModuleRoot finds the directory of go.mod from the working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("bench: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Proc is a groupflow process started by the harness. Its stderr (the JSON
// log) goes to a file beside the scenario's data.
type Proc struct {
	Name string
	// Addr is the process's HTTP address (health, metrics, or the ingest).
	Addr string
	Log  string

	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu      sync.Mutex
	peakRSS int64 // kB, the last VmHWM read while the process ran
}

// memLimitKB caps each process's virtual memory (4 GiB).
const memLimitKB = 4 << 20

// StartProc starts bin with env (added to a minimal environment) and logs
// to dir/<name>.log.
func StartProc(bin, name, dir, addr string, env []string, args ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	// A cap on the address space keeps a process that runs away with
	// memory (hostile input) from taking the shared machine with it: it
	// dies, and the scenario reports the crash.
	// No context: the process outlives this call; Stop and Kill end it.
	cmd := exec.Command("/bin/sh", append([]string{"-c", `ulimit -v ` + strconv.Itoa(memLimitKB) + ` && exec "$0" "$@"`, bin}, args...)...) //nolint:noctx // see above
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	// The child writes the log through its own descriptor: nothing of ours
	// is buffered in f, so its Close has no data to lose.
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Addr: addr, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is how the process ended (after Done).
func (p *Proc) Err() error { return p.err }

// WaitHealthy polls GET path on Addr until it answers 200.
func (p *Proc) WaitHealthy(ctx context.Context, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.Addr+path, nil)
	if err != nil {
		return err
	}
	for {
		resp, err := c.Do(req)
		if err == nil {
			_ = resp.Body.Close() // only the status matters
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			// p.err is nil after a clean exit, which %w would print as %!w(<nil>).
			return fmt.Errorf("%s exited before it was healthy (%v); log: %s", p.Name, p.err, p.tail()) //nolint:errorlint // see above
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy on %s%s: %w; log: %s", p.Name, p.Addr, path, ctx.Err(), p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tail returns the last lines of the process log, for errors.
func (p *Proc) tail() string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// SamplePeakRSS reads the process's peak resident set (VmHWM) and keeps it.
func (p *Proc) SamplePeakRSS() {
	if p.Exited() {
		return
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return
	}
	defer f.Close() //nolint:errcheck // read-only: Close cannot lose data
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err == nil {
				p.mu.Lock()
				p.peakRSS = max(p.peakRSS, kb)
				p.mu.Unlock()
			}
		}
	}
}

// PeakRSSMB is the largest VmHWM sampled, in MiB.
func (p *Proc) PeakRSSMB() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return float64(p.peakRSS) / 1024
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits up to grace, then kills.
func (p *Proc) Stop(grace time.Duration) {
	p.SamplePeakRSS()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// FreeAddr returns a free 127.0.0.1 address.
func FreeAddr(ctx context.Context) (string, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	// The process about to start must be able to take the address.
	if err := l.Close(); err != nil {
		return "", err
	}
	return addr, nil
}

// WorkerOpts configures worker processes.
type WorkerOpts struct {
	// Concurrency is WORKER_CONCURRENCY.
	Concurrency int
	// Env adds variables (rate limits, OTEL_*).
	Env []string
	// NoSettle skips waiting for the rate limiter's first share.
	NoSettle bool
}

// settle is how long a new worker's limiter takes before it may use its
// share (ratelimit Config.Settle's default, 1s + 25ms jitter + 250ms, with
// a margin).
const settle = 1600 * time.Millisecond

// StartWorker starts one worker process against the stack and waits until
// it is healthy.
func (s *Stack) StartWorker(ctx context.Context, bin, name string, o WorkerOpts) (*Proc, error) {
	addr, err := FreeAddr(ctx)
	if err != nil {
		return nil, err
	}
	env := []string{
		"NATS_URL=" + s.URL,
		"GRAPH_API_BASE_URL=" + s.SimURL,
		"WHATSAPP_ACCESS_TOKEN=" + sim.DefaultAccessToken,
		"WORKER_ADDR=" + addr,
		"WORKER_ID=" + name,
		"WORKER_SHUTDOWN_GRACE=5s",
		"LOG_LEVEL=warn",
	}
	if s.Cluster != nil {
		env = append(env, "NATS_REPLICAS="+strconv.Itoa(max(s.topology.Replicas, 1)))
	}
	if o.Concurrency > 0 {
		env = append(env, "WORKER_CONCURRENCY="+strconv.Itoa(o.Concurrency))
	}
	p, err := StartProc(bin, name, s.Dir, addr, append(env, o.Env...))
	if err != nil {
		return nil, err
	}
	if err := p.WaitHealthy(ctx, "/healthz"); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

// StartWorkers starts n workers named prefix-1…n and waits until all of
// them are registered with the rate limiter and their shares have settled.
func (s *Stack) StartWorkers(ctx context.Context, bin, prefix string, n int, o WorkerOpts) ([]*Proc, error) {
	var procs []*Proc
	for i := range n {
		p, err := s.StartWorker(ctx, bin, fmt.Sprintf("%s-%d", prefix, i+1), o)
		if err != nil {
			StopAll(procs)
			return nil, err
		}
		procs = append(procs, p)
	}
	if err := s.WaitWorkers(ctx, n); err != nil {
		StopAll(procs)
		return nil, err
	}
	if !o.NoSettle {
		time.Sleep(settle)
	}
	return procs, nil
}

// WaitWorkers waits until n workers heartbeat in the workers bucket.
func (s *Stack) WaitWorkers(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		live, err := s.LiveWorkers(ctx)
		if err == nil && live == n {
			return nil
		}
		select {
		case <-ctx.Done():
			// err is nil when the count was read but short; ctx.Err() is the cause.
			return fmt.Errorf("waiting for %d live workers (last count %d, %v): %w", n, live, err, ctx.Err()) //nolint:errorlint // see above
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopAll stops processes with SIGTERM, in parallel.
func StopAll(procs []*Proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(15 * time.Second) })
	}
	wg.Wait()
}

// CPUTime is the CPU time (user + system) the process has used so far.
func (p *Proc) CPUTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / hz
}
