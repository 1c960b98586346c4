package jobs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/webhook"
)

// Environment of the campaign benchmark (all optional).
const (
	benchInvitesEnv  = "GROUPFLOW_CAMPAIGN_BENCH_INVITES"  // invites, default 100000
	benchRateEnv     = "GROUPFLOW_CAMPAIGN_BENCH_RATE"     // messages/s of the number, default 1000
	benchWebhooksEnv = "GROUPFLOW_CAMPAIGN_BENCH_WEBHOOKS" // "0": the simulator keeps its status webhooks
	benchWorkerEnv   = "GROUPFLOW_CAMPAIGN_BENCH_WORKER"   // set in the worker process
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkCampaign100k runs a 100,000-invite campaign (an NDJSON list in
// the object store) through one worker whose number is limited to 1,000
// messages/s, against the simulator accepting 1,000 messages/s, and
// reports the time from start_invite_campaign to campaign.completed, its
// ratio to the theoretical minimum (invites / rate = 100 s; goal ≤ 1.05),
// and the worker's peak RSS (VmHWM; goal ≤ 150 MB). The worker runs in a
// process of its own (this test binary again), so that its RSS is its
// own, not the NATS server's or the simulator's.
//
// It takes about two minutes, so it runs only when -bench names it:
//
//	go test -run '^$' -bench BenchmarkCampaign100k -benchtime 1x -timeout 10m ./internal/jobs/
//
// GROUPFLOW_CAMPAIGN_BENCH_INVITES and GROUPFLOW_CAMPAIGN_BENCH_RATE size
// it; GROUPFLOW_CAMPAIGN_BENCH_WEBHOOKS=0 keeps the ~2.7 status webhooks
// per send in the simulator.
func BenchmarkCampaign100k(b *testing.B) {
	if f := flag.Lookup("test.bench"); f == nil || !strings.Contains(f.Value.String(), "Campaign100k") {
		b.Skip("takes minutes: run with -bench BenchmarkCampaign100k")
	}
	total, rate := envInt(benchInvitesEnv, 100_000), envInt(benchRateEnv, 1000)
	webhooks := os.Getenv(benchWebhooksEnv) != "0"
	for range b.N {
		runCampaignBench(b, total, rate, webhooks)
	}
}

func runCampaignBench(b *testing.B, total, rate int, webhooks bool) {
	ctx := context.Background()
	nb := setupNATS(b, events.TopologyConfig{AckWait: 30 * time.Second, MaxDeliver: 10})
	quiet := slog.New(slog.DiscardHandler)
	hooks := httptest.NewServer(&webhook.Handler{AppSecret: []byte(sim.DefaultAppSecret),
		Publisher: webhook.JetStreamPublisher{JS: nb.js, Names: nb.names}, Logger: quiet})
	b.Cleanup(hooks.Close)
	s := sim.New(sim.Config{MPS: rate, PairInterval: -1, GroupOpsPerSecond: -1, WebhookConcurrency: 32,
		WebhookURL: hooks.URL, Statuses: &sim.StatusBehavior{Read: 0.8, ReadWithoutDelivered: 0.1}})
	srv := httptest.NewServer(s)
	b.Cleanup(func() { srv.Close(); s.Close() })
	if !webhooks {
		s.SetWebhookURL("")
	}
	gc, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := gc.AddLibraryTemplate(ctx, sim.DefaultWABAID, graph.AddTemplateRequest{Name: inviteTemplate.Name,
		Category: "UTILITY", Language: inviteTemplate.Language, LibraryTemplateName: "group_invite_upon_request"}); err != nil {
		b.Fatal(err)
	}
	var groups []sim.GroupState
	for i := range 200 {
		if _, err := gc.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: fmt.Sprint("Bench ", i)}); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range s.State().Numbers {
		groups = append(groups, n.Groups...)
	}
	st := &stack{natsBundle: nb, sim: s, simURL: srv.URL, graph: gc}
	ref := st.putInvites(b, "bench.ndjson", total, groups)

	completed := make(chan events.CampaignCompleted, 1)
	sub, err := nb.nc.Subscribe(nb.names.Event(phone, events.EventCampaignCompleted), func(m *nats.Msg) {
		var ev struct {
			Data events.CampaignCompleted `json:"data"`
		}
		if json.Unmarshal(m.Data, &ev) == nil && ev.Data.CampaignID == "bench" {
			select {
			case completed <- ev.Data:
			default:
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })

	worker := startBenchWorker(b, nb.url, srv.URL, rate)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	st.publish(b, command("start-bench", events.StartInviteCampaign, "",
		events.StartInviteCampaignParams{CampaignID: "bench", Template: inviteTemplate, InvitesObject: &ref}))
	var done events.CampaignCompleted
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	for waiting := true; waiting; {
		select {
		case done = <-completed:
			waiting = false
		case <-progress.C:
			cs, _ := jobs.ReadCampaign(ctx, nb.kv(b, nb.names.CampaignBucket()), "bench")
			fmt.Fprintf(os.Stderr, "%5.0fs: sent %d, failed %d, unknown %d, queued %d, pending %d\n",
				time.Since(start).Seconds(), cs.Counts.Sent, cs.Counts.Failed, cs.Counts.Unknown, cs.Counts.Queued, cs.Counts.Pending)
		case <-time.After(10 * time.Minute):
			b.Fatal("the campaign did not end within 10 minutes")
		}
	}
	elapsed, harnessCPU := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	rss, workerCPU := worker.stop()

	c := done.Counts
	if c.Sent+c.Unknown+c.Failed != total || c.Failed > 0 {
		b.Fatalf("counts %+v, want all %d sent", c, total)
	}
	sends := st.sends()
	for k, calls := range sends {
		if len(calls) > 1 {
			b.Fatalf("%d sends to %v", len(calls), k)
		}
	}
	throttled := 0
	perSecond := map[int64]int{}
	var first time.Time
	for _, call := range s.Calls() {
		if call.Code == graph.CodeThroughput {
			throttled++
		}
		if call.Endpoint == sim.EndpointSendMessage {
			if first.IsZero() {
				first = call.Time
			}
			perSecond[int64(call.Time.Sub(first)/time.Second)]++
		}
	}
	// The steady rate (the median second) against the limit tells the
	// rate limiter's share of the result from the rest.
	var counts []int
	var line []string
	for i := int64(0); i < int64(len(perSecond)); i++ {
		counts = append(counts, perSecond[i])
		line = append(line, strconv.Itoa(perSecond[i]))
	}
	slices.Sort(counts)
	fmt.Fprintln(os.Stderr, "sends per second:", strings.Join(line, " "))
	minimum := float64(total) / float64(rate)
	b.ReportMetric(elapsed.Seconds(), "s")
	b.ReportMetric(elapsed.Seconds()/minimum, "ratio_to_min")
	b.ReportMetric(float64(rss)/1024, "worker_peak_rss_MB")
	b.ReportMetric(float64(peakRSS())/1024, "harness_peak_rss_MB")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "invites/s")
	if len(counts) > 0 {
		b.ReportMetric(float64(counts[len(counts)/2])/float64(rate), "median_second/limit")
	}
	b.ReportMetric(workerCPU.Seconds()/float64(total)*1e6, "worker_cpu_us/invite")
	b.ReportMetric(harnessCPU.Seconds()/float64(total)*1e6, "harness_cpu_us/invite")
	b.Logf("%d invites at %d/s: %s (minimum %.0fs, ratio %.3f); worker peak RSS %.1f MB; CPU: worker %.1fs, NATS+simulator+ingest %.1fs; %d sends answered 130429; counts %+v",
		total, rate, elapsed.Round(time.Millisecond), minimum, elapsed.Seconds()/minimum, float64(rss)/1024,
		workerCPU.Seconds(), harnessCPU.Seconds(), throttled, c)
}

// benchWorker is the worker process of the benchmark.
type benchWorker struct {
	cmd   *exec.Cmd
	lines <-chan string
}

func startBenchWorker(b *testing.B, natsURL, simURL string, rate int) *benchWorker {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCampaignBenchWorker$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchWorkerEnv+"=1", "BENCH_NATS_URL="+natsURL, "BENCH_SIM_URL="+simURL, "BENCH_RATE="+strconv.Itoa(rate))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	w := &benchWorker{cmd: cmd, lines: lines}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for line := range lines {
		if line == "READY" {
			return w
		}
	}
	b.Fatal("the worker process ended before it was ready")
	return nil
}

// stop ends the worker process and returns its peak RSS in kB and the
// CPU time it used.
func (w *benchWorker) stop() (int64, time.Duration) {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	var rss int64
	var cpu time.Duration
	for line := range w.lines {
		if v, ok := strings.CutPrefix(line, "VmHWM "); ok {
			rss, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "CPU "); ok {
			cpu, _ = time.ParseDuration(v)
		}
	}
	_ = w.cmd.Wait()
	return rss, cpu
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCampaignBenchWorker is the worker process of BenchmarkCampaign100k:
// a rate-limited worker until SIGTERM, then its peak RSS on stdout.
func TestCampaignBenchWorker(t *testing.T) {
	if os.Getenv(benchWorkerEnv) == "" {
		t.Skip("the worker process of BenchmarkCampaign100k")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := f.Close(); err != nil { // the profile is written by now: a failed Close may have lost it
				t.Error(err)
			}
		}()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	nc, err := nats.Connect(os.Getenv("BENCH_NATS_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	names := events.Names{}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 128
	gc, err := graph.New(graph.Config{BaseURL: os.Getenv("BENCH_SIM_URL"), AccessToken: sim.DefaultAccessToken,
		Timeout: 10 * time.Second, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	kv := func(name string) jetstream.KeyValue {
		b, err := js.KeyValue(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rate := float64(envInt("BENCH_RATE", 1000))
	lim, err := ratelimit.New(ratelimit.Config{Workers: kv(names.WorkersBucket()), Throttle: kv(names.ThrottleBucket()),
		Defaults: ratelimit.Limits{Messages: rate, GroupOps: 1000, Reads: 1000}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w, err := jobs.New(ctx, jobs.Config{JS: js, Names: names, Graph: gc, Limiter: lim, Concurrency: envInt("BENCH_CONCURRENCY", 256), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	limDone, runDone := make(chan error, 1), make(chan error, 1)
	lctx, lcancel := context.WithCancel(context.Background())
	go func() { limDone <- lim.Run(lctx) }()
	go func() { runDone <- w.Run(ctx) }()
	// A new worker gets its share of the number's rate once the limiter
	// has settled (about 1.3 s).
	time.Sleep(2 * time.Second)
	fmt.Println("READY")
	if err := <-runDone; err != nil {
		t.Error(err)
	}
	lcancel()
	if err := <-limDone; err != nil { // nil once cancelled
		t.Error(err)
	}
	fmt.Printf("VmHWM %d\nCPU %s\n", peakRSS(), cpuTime())
}

// peakRSS is this process's peak resident set size in kB (VmHWM).
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer func() { _ = f.Close() }() // only read
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}
