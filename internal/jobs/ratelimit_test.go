package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/testutil"
)

// startLimitedWorkers starts n workers, each with its own rate limiter
// (jitter as ratelimit.Config.Jitter) sharing the workers and throttle
// buckets, and waits until every limiter sees all n.
func (s *stack) startLimitedWorkers(t testing.TB, n int, limits ratelimit.Limits, jitter time.Duration) []*ratelimit.Limiter {
	t.Helper()
	var lims []*ratelimit.Limiter
	for i := range n {
		id := fmt.Sprint("limited-", i)
		lim := s.runLimiter(t, ratelimit.Config{
			WorkerID: id, Defaults: limits, Jitter: jitter, Logger: testLogger(t), MaxQueue: 8, // half the slots, as cmd/worker
		})
		lims = append(lims, lim)
		s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Limiter, c.Concurrency = id, lim, 16 })
	}
	s.events.WaitFor(t, "every limiter to see every worker", func() bool {
		for _, l := range lims {
			if l.LiveWorkers() != n {
				return false
			}
		}
		return true
	})
	return lims
}

// runLimiter runs a rate limiter on the stack's workers and throttle
// buckets until the test ends. Workers started after it are cleaned up
// first, so they stop before their limiter does.
func (s *stack) runLimiter(t testing.TB, cfg ratelimit.Config) *ratelimit.Limiter {
	t.Helper()
	cfg.Workers, cfg.Throttle = s.kv(t, s.names.WorkersBucket()), s.kv(t, s.names.ThrottleBucket())
	lim, err := ratelimit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("limiter %s: %v", cfg.WorkerID, err)
		}
	})
	return lim
}

// countParked counts the copies published to the parked subjects.
func (s *stack) countParked(t testing.TB) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	sub, err := s.nc.Subscribe(s.names.AllParked(), func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return &n
}

// publishApprovals publishes n approve_join_requests commands for group,
// ids prefix0 … prefix(n-1), each approving a request nobody made: the
// command still lists and approves. It returns the ids.
func (s *stack) publishApprovals(t testing.TB, prefix, group string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprint(prefix, i)
		s.publish(t, command(ids[i], events.ApproveJoinRequests, group, events.JoinRequestsParams{JoinRequestIDs: []string{fmt.Sprint("nope-", i)}}))
	}
	return ids
}

func TestRateLimitHoldsAcrossWorkersAndThrottlesPauseThemAll(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 10-second backlog")
	}
	t.Parallel()
	const limit, backlog = 50, 500
	s := setup(t)
	g := s.newGroup(t, "Busy", graph.JoinApprovalRequired)
	// The busiest second is counted at the simulator, where arrival times
	// vary by more than the default 25 ms on a 2-core machine running
	// other race-enabled tests (stalls of 50–300 ms seen): the limiters
	// are told so, as an operator would with RATE_LIMIT_JITTER.
	lims := s.startLimitedWorkers(t, 3, ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, 150*time.Millisecond)

	ids := s.publishApprovals(t, "busy-", g.ID, backlog)
	for _, id := range ids {
		s.terminal(t, id)
	}

	var at []time.Time
	for _, c := range s.sim.Calls() {
		if c.Endpoint == sim.EndpointApproveJoin {
			at = append(at, c.Time)
		}
	}
	// Approvals are naturally idempotent: on a loaded machine a lease may
	// expire and a command run twice, which is allowed. Fewer calls than
	// commands is not.
	if len(at) < backlog {
		t.Fatalf("%d approve calls, want at least %d", len(at), backlog)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	worst, j := 0, 0
	for i := range at { // the window [at[i], at[i]+1s)
		for j < len(at) && at[j].Sub(at[i]) < time.Second {
			j++
		}
		worst = max(worst, j-i)
	}
	if worst > limit {
		t.Fatalf("%d approve calls in one second, limit %d", worst, limit)
	}
	t.Logf("busiest second: %d calls of %d allowed; backlog drained in %s", worst, limit, at[len(at)-1].Sub(at[0]).Round(time.Millisecond))

	// A throttling answer pauses the number on all three workers.
	if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: graph.CodeThroughput,
		ThrottleRetryAfter: 30 * time.Second, Endpoints: []string{sim.EndpointApproveJoin}}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("busy-throttled", events.ApproveJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: []string{"nope"}}))
	s.events.WaitFor(t, "every worker to see the pause", func() bool {
		for _, l := range lims {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			err := l.Wait(ctx, phone, ratelimit.GroupOps)
			cancel()
			var te *ratelimit.ThrottledError
			if !errors.As(err, &te) || te.Scope != ratelimit.NumberScope(phone).String() {
				return false
			}
		}
		return true
	})
}

// A backlog deeper than the worker may wait for (MaxWait) is delayed, not
// failed: waiting for the number's limit must not use up a command's
// deliveries (MaxDeliver is 4 here) and dead-letter it as retries
// exhausted. Before the re-queue, most of this backlog ended that way.
func TestABacklogDeeperThanTheLimitIsDelayedNotFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 20-second backlog")
	}
	t.Parallel()
	// 16 commands at once at 5/s: a command the share cannot serve within
	// MaxWait (1 s) is handed back, for most of them several times.
	const limit, backlog = 5, 100
	// The nak path (a server without message schedules, or ParkAfter < 0);
	// TestADeepBacklogIsParkedOutOfOtherCommandsWay covers parking.
	s := setup(t, func(o *stackOpts) { o.parkAfter = -1 })
	g := s.newGroup(t, "Deep", graph.JoinApprovalRequired)
	s.startLimitedWorkers(t, 1, ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, ratelimit.DefaultJitter)
	requeues := s.watchRequeues(t)
	ids := s.publishApprovals(t, "deep-", g.ID, backlog)
	// Not in publish order: a command that waited is redelivered later.
	var results []events.CommandResult
	deadline := time.Now().Add(4 * time.Minute)
	for {
		results = results[:0]
		for _, id := range ids {
			if rs := s.events.Terminals(id); len(rs) > 0 {
				results = append(results, rs[0])
			}
		}
		if len(results) == backlog {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d commands terminal after 4 minutes", len(results), backlog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range results {
		// The join requests do not exist: each ends with Meta's answer
		// to its approval (131213), never with exhausted deliveries.
		if r.Error == nil || r.Error.Reason != events.ReasonPermanentError || r.Error.Code != 131213 {
			t.Errorf("%s: %+v, want failed with code 131213 from the approval", r.CommandID, r.Error)
		}
	}
	if n := s.calls(sim.EndpointApproveJoin); n < backlog {
		t.Errorf("%d approve calls, want one per command (%d)", n, backlog)
	}
	// Handing back a command before it is claimed costs a nak and leaves
	// no trace in the ledger; only a delivery whose wait was refused after
	// the claim (a race with the other slots) records a throttled attempt.
	redelivered, throttled := s.redeliveries(t), s.throttledAttempts(t, ids)
	if redelivered < backlog || throttled*2 > redelivered {
		t.Errorf("%d redeliveries, %d of them testutil.Event as throttled attempts: want at least %d redeliveries, most of them handed back before the claim",
			redelivered, throttled, backlog)
	}
	if copies, claimed := requeues(); copies == 0 || claimed > 0 {
		t.Errorf("%d of %d re-queued copies arrived while the delivery they copy still held the claim (want 0 of at least 1)", claimed, copies)
	}
}

// The slots a busy number's share cannot use back off instead of spinning
// through the rest of its backlog: one worker, 10 group operations a
// second, 16 slots and 1,000 approvals queued. Without the back-off the
// worker handed back about 1,000 commands a second; with it, about 30.
func TestSlotsBackOffWhileTheirCommandsAreHandedBack(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) { o.maxDeliv, o.parkAfter = 10, -1 }) // the nak path
	g := s.newGroup(t, "Spin", graph.JoinApprovalRequired)
	s.startLimitedWorkers(t, 1, ratelimit.Limits{GroupOps: 10, Reads: 2000, Messages: 80}, ratelimit.DefaultJitter)
	s.publishApprovals(t, "spin-", g.ID, 1000)
	time.Sleep(3 * time.Second)
	n := s.redeliveries(t)
	t.Logf("%d redeliveries in 3 s", n)
	if n > 300 {
		t.Errorf("%d redeliveries in 3 s with 10 calls/s and 16 slots; want at most 300: the slots the share cannot use must back off", n)
	}
}

// throttledAttempts counts the attempts of commands ids that the limiter
// refused after their claim, from the ledger.
func (s *stack) throttledAttempts(t *testing.T, ids []string) int {
	t.Helper()
	n := 0
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	for _, id := range ids {
		e, _, err := ledger.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("ledger entry of %s: %v", id, err)
		}
		for _, a := range e.Attempts {
			if a.Outcome == "throttled" {
				n++
			}
		}
	}
	return n
}

// redeliveries is how many deliveries of the command consumer were not a
// message's first: deliveries in all, less the messages the stream ever
// stored (re-queued copies included).
func (s *stack) redeliveries(t *testing.T) int {
	t.Helper()
	info := s.commandConsumer(t)
	return int(info.Delivered.Consumer) - int(info.Delivered.Stream) //nolint:gosec // G115: test counts, far below 2^63
}

// commandConsumer is the command consumer's info, as of now.
func (s *stack) commandConsumer(t testing.TB) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	cons, err := s.js.Consumer(ctx, s.names.CommandStream(), s.names.CommandConsumer())
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// watchRequeues watches the command subjects for re-queued copies and, as
// each arrives, reads its command's ledger entry. It returns a function
// that stops watching and reports how many copies it saw and how many
// arrived while the delivery that made them (jobs.RequeuedByHeader) still
// held the command's claim: such a copy finds the command held by its own
// original and waits out a whole lease for nothing.
func (s *stack) watchRequeues(t *testing.T) func() (copies, claimed int) {
	t.Helper()
	ledger := s.kv(t, s.names.LedgerBucket())
	var mu sync.Mutex
	var copies, claimed int
	var stopped bool // no t.Errorf once the test has moved on
	sub, err := s.nc.Subscribe(s.names.AllCommands(), func(m *nats.Msg) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		i := strings.LastIndex(id, "/requeue/")
		if i < 0 {
			return
		}
		var e jobs.Entry
		kve, err := ledger.Get(context.Background(), jobs.LedgerKey(id[:i]))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			err = nil // handed back before it was ever claimed
		case err == nil:
			err = json.Unmarshal(kve.Value(), &e)
		}
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		copies++
		if err != nil {
			t.Errorf("ledger entry of re-queued %s: %v", id, err)
			return
		}
		// A claim token is worker/stream sequence/delivery. Another
		// delivery of the same message holding the claim is not the
		// copy's own original: under load, one whose AckWait ran out
		// while it waited goes on after the message is delivered again,
		// the later delivery re-queues it before any claim, and the
		// ledger lets only one of them on.
		by := m.Header.Get(jobs.RequeuedByHeader)
		if by == "" {
			t.Errorf("re-queued %s does not say which delivery made it", id)
			return
		}
		if strings.HasSuffix(e.Owner, "/"+by) {
			claimed++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := func() (int, int) {
		_ = sub.Unsubscribe()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		return copies, claimed
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A deep backlog of one number's group operations is parked out of the
// consumer's way: a command behind it that its limits let through at once
// (a read) is served long before the backlog is, and the backlog still
// completes, each command once. With naks instead, the backlog filled the
// consumer's MaxAckPending (here 64) and the read waited for all but the
// last 64 approvals.
func TestADeepBacklogIsParkedOutOfOtherCommandsWay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 15-second backlog")
	}
	t.Parallel()
	const limit, backlog = 20, 300
	s := setup(t, func(o *stackOpts) { o.maxDeliv, o.maxAckPending = 10, 64 })
	g := s.newGroup(t, "Parked", graph.JoinApprovalRequired)
	parked := s.countParked(t)
	// The whole backlog waits before the worker starts: published as it
	// works, its last commands could arrive (on a loaded machine) when the
	// limit has room for them, and not be parked at all.
	ids := s.publishApprovals(t, "parked-", g.ID, backlog)
	s.startLimitedWorkers(t, 1, ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, ratelimit.DefaultJitter)
	done := func() int {
		n := 0
		for _, id := range ids {
			if len(s.events.Terminals(id)) > 0 {
				n++
			}
		}
		return n
	}
	s.events.WaitFor(t, "the backlog to start", func() bool { return done() > 0 })
	s.publish(t, command("read-behind", events.GetInviteLink, g.ID, nil))
	if r := s.terminal(t, "read-behind"); r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("the read behind the backlog: %+v", r)
	}
	if n := done(); n > backlog/2 {
		t.Errorf("the read behind the backlog finished after %d of its %d approvals: it waited for the backlog", n, backlog)
	}
	// The last of the backlog is parked, not lost from view: its status
	// reads queued until a worker claims it.
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	last := ids[backlog-1]
	if e, _, err := ledger.Get(context.Background(), last); err != nil || e.State != jobs.StateQueued {
		t.Errorf("ledger entry of %s, parked behind %d others: %+v, %v; want it queued", last, backlog-done(), e, err)
	}

	deadline := time.Now().Add(3 * time.Minute)
	for done() < backlog {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d approvals terminal after 3 minutes", done(), backlog)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, id := range ids {
		rs := s.events.Terminals(id)
		if len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != 131213 {
			t.Errorf("%s: terminal events %+v, want one, failed with code 131213 from the approval", id, rs)
		}
	}
	if n := s.calls(sim.EndpointApproveJoin); n != backlog {
		t.Errorf("%d approve calls, want one per command (%d)", n, backlog)
	}
	// Parking happens before the claim: few commands are refused by the
	// limiter after they were claimed (a throttled attempt in the ledger).
	throttled := s.throttledAttempts(t, ids)
	t.Logf("%d parked copies, %d throttled attempts for %d commands", parked.Load(), throttled, backlog)
	if parked.Load() < backlog/2 || throttled > backlog/10 {
		t.Errorf("%d parked copies and %d throttled attempts for %d commands: want most of the backlog parked, and few refused after their claim",
			parked.Load(), throttled, backlog)
	}
}

// Commands parked until their number's turn are on /metrics as
// groupflow_parked_commands: work that waits, which the command consumer's
// lag does not show (a parked copy is outside its subjects until its
// turn). Commands waiting for a worker are lag, not parked.
func TestParkedCommandsAreOnMetrics(t *testing.T) {
	t.Parallel()
	const waiting, backlog = 3, 12
	s := setup(t, func(o *stackOpts) { o.maxDeliv = 10 })
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "jobs-test", Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	reg, err := tel.Metrics().ObserveParked(jobs.ParkedCommands(s.js, s.names))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Unregister() })
	metricsSrv := httptest.NewServer(tel.MetricsHandler())
	t.Cleanup(metricsSrv.Close)
	series := fmt.Sprintf("groupflow_parked_commands{stream=%q}", s.names.ParkedStream())
	onMetrics := func() string {
		t.Helper()
		resp, err := http.Get(metricsSrv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		page, _ := io.ReadAll(resp.Body)
		for line := range strings.Lines(string(page)) {
			if v, ok := strings.CutPrefix(line, series+" "); ok {
				return strings.TrimSpace(v)
			}
		}
		return "absent"
	}

	const group = "Y2FwaV9ncm91cDoxZD"
	ids := s.publishApprovals(t, "waiting-", group, waiting) // no worker runs yet
	if got := onMetrics(); got != "0" {
		t.Errorf("%s = %s with %d commands waiting for a worker, none parked; want 0", series, got, waiting)
	}
	// The number is paused for an hour, as a 130429 pauses it for less:
	// each of its commands is parked until after the pause.
	lim := s.runLimiter(t, ratelimit.Config{
		WorkerID: "paused", Defaults: ratelimit.Limits{GroupOps: 10, Reads: 20, Messages: 80}, MaxQueue: 2, Logger: testLogger(t),
	})
	if err := lim.Pause(context.Background(), ratelimit.NumberScope(phone), time.Now().Add(time.Hour), "130429"); err != nil {
		t.Fatal(err)
	}
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Limiter, c.Concurrency = "paused", lim, 4 })
	ids = append(ids, s.publishApprovals(t, "parked-", group, backlog)...)
	s.events.WaitFor(t, fmt.Sprintf("all %d commands parked and none left to the consumer", len(ids)), func() bool {
		return s.parkedInStream(t) == len(ids) && s.consumerBacklog(t) == 0
	})
	if got, want := onMetrics(), strconv.Itoa(len(ids)); got != want {
		t.Errorf("%s = %s with every command parked, want %s", series, got, want)
	}

	// Due copies that cannot go back (the command stream's source dropped,
	// as a process of an older version does) are still waiting: counted,
	// so that the not-draining alert sees them.
	ctx := context.Background()
	cs, err := s.js.Stream(ctx, s.names.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := cs.CachedInfo().Config
	cfg.Sources = nil
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	const stuck = 2
	for i := range stuck {
		if _, err := s.js.Publish(ctx, s.names.Due(phone, events.ApproveJoinRequests), []byte(fmt.Sprintf(`{"stuck":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := onMetrics(), strconv.Itoa(len(ids)+stuck); got != want {
		t.Errorf("%s = %s with %d parked and %d due copies the command stream does not take back, want %s", series, got, len(ids), stuck, want)
	}
}

// parkedInStream counts the parked stream's parked copies one subject at
// a time.
func (s *stack) parkedInStream(t testing.TB) int {
	t.Helper()
	ctx := context.Background()
	str, err := s.js.Stream(ctx, s.names.ParkedStream())
	if err != nil {
		t.Fatal(err)
	}
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(s.names.AllParked()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c) //nolint:gosec // G115: test counts, far below 2^63
	}
	return n
}

// consumerBacklog is what the command consumer has not delivered or not
// had acknowledged.
func (s *stack) consumerBacklog(t testing.TB) int {
	t.Helper()
	info := s.commandConsumer(t)
	return int(info.NumPending) + info.NumAckPending //nolint:gosec // G115: test counts, far below 2^63
}

// On a parked stream without message schedules (a server before 2.12
// ignores the setting) a parked copy would never come back: the worker
// says so and hands a backlog back with naks, and every command completes.
func TestAWorkerWithoutSchedulesNaksInsteadOfParking(t *testing.T) {
	t.Parallel()
	const limit, backlog = 5, 30
	s := setup(t, func(o *stackOpts) { o.maxDeliv, o.noSchedules = 10, true })
	g := s.newGroup(t, "Unscheduled", graph.JoinApprovalRequired)
	var logs testutil.SyncBuffer
	lim := s.runLimiter(t, ratelimit.Config{
		WorkerID: "unscheduled", Defaults: ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, MaxQueue: 2,
		Logger: slog.New(slog.DiscardHandler),
	})
	s.startWorker(t, func(c *jobs.Config) {
		c.WorkerID, c.Limiter, c.Concurrency = "unscheduled", lim, 4
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	parked := s.countParked(t)
	for _, id := range s.publishApprovals(t, "unscheduled-", g.ID, backlog) {
		if r := s.terminalWithin(t, id, 2*time.Minute); r.Error == nil || r.Error.Code != 131213 {
			t.Errorf("%s: %+v, want failed with code 131213 from the approval", id, r.Error)
		}
	}
	if n := parked.Load(); n != 0 {
		t.Errorf("%d parked copies on a stream that cannot schedule them", n)
	}
	if s.redeliveries(t) == 0 {
		t.Error("no command was handed back: the backlog never waited, so the test shows nothing")
	}
	if !strings.Contains(logs.String(), "does not schedule messages") {
		t.Errorf("the worker did not say it cannot park; its log:\n%s", logs.String())
	}
}

// On a legacy command stream (made while parked copies waited in it, so
// with roll-ups, until groupctl migrate recreates it) NATS refuses the
// parked stream as a source: a worker parks in the command stream as
// before, where the copies come back, every command completes once, and
// the parked ones are on the metrics under the command stream.
func TestAWorkerParksInALegacyCommandStream(t *testing.T) {
	t.Parallel()
	const limit, backlog = 5, 30
	s := setup(t, func(o *stackOpts) { o.maxDeliv, o.legacy = 10, true })
	g := s.newGroup(t, "Legacy", graph.JoinApprovalRequired)
	lim := s.runLimiter(t, ratelimit.Config{
		WorkerID: "legacy", Defaults: ratelimit.Limits{GroupOps: limit, Reads: 2000, Messages: 80}, MaxQueue: 2,
		Logger: slog.New(slog.DiscardHandler),
	})
	var legacy atomic.Int64
	sub, err := s.nc.Subscribe(s.names.AllLegacyParked(), func(*nats.Msg) { legacy.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	parked := s.countParked(t)
	ids := s.publishApprovals(t, "legacy-", g.ID, backlog)
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Limiter, c.Concurrency = "legacy", lim, 4 })
	observe := jobs.ParkedCommands(s.js, s.names)
	s.events.WaitFor(t, "commands parked in the legacy command stream, on the metrics", func() bool {
		depths, err := observe(context.Background())
		return err == nil && slices.ContainsFunc(depths, func(d telemetry.StreamDepth) bool {
			return d.Stream == s.names.CommandStream() && d.Messages > 0
		})
	})
	for _, id := range ids {
		if r := s.terminalWithin(t, id, 2*time.Minute); r.Error == nil || r.Error.Code != 131213 {
			t.Errorf("%s: %+v, want failed with code 131213 from the approval", id, r.Error)
		}
	}
	for _, id := range ids {
		if rs := s.events.Terminals(id); len(rs) != 1 {
			t.Errorf("%s: %d terminal events, want one", id, len(rs))
		}
	}
	if n := s.calls(sim.EndpointApproveJoin); n != backlog {
		t.Errorf("%d approve calls, want one per command (%d)", n, backlog)
	}
	if legacy.Load() == 0 || parked.Load() != 0 {
		t.Errorf("%d copies parked in the legacy command stream and %d in the parked stream; want all of them in the command stream",
			legacy.Load(), parked.Load())
	}
}
