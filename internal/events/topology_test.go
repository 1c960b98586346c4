package events_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/testutil"
)

func jetStreamAt(t *testing.T, url string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestEnsureCreatesTheTopology(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	cfg := events.TopologyConfig{Names: events.Names{Prefix: "acme"}}

	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("first Ensure: %v", err)
	}
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("second Ensure on an existing topology: %v", err)
	}

	cmds, err := js.Stream(ctx, "ACME_COMMANDS")
	if err != nil {
		t.Fatalf("command stream: %v", err)
	}
	if got := cmds.CachedInfo().Config; got.Retention != jetstream.WorkQueuePolicy || got.Subjects[0] != "acme.cmd.>" || got.Duplicates != 2*time.Minute {
		t.Errorf("command stream config = retention %v subjects %v duplicates %v, want work-queue, acme.cmd.>, 2m", got.Retention, got.Subjects, got.Duplicates)
	}
	if got := cmds.CachedInfo().Config.Storage; got != jetstream.FileStorage {
		t.Errorf("command stream storage %v, want file", got)
	}
	const day = 24 * time.Hour
	// DESIGN §2's retention of each stream and bucket.
	for name, age := range map[string]time.Duration{"ACME_WEBHOOKS": 7 * day, "ACME_EVENTS": 7 * day, "ACME_DLQ": 30 * day} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if got := s.CachedInfo().Config; got.Retention != jetstream.LimitsPolicy || got.MaxAge != age || got.Storage != jetstream.FileStorage {
			t.Errorf("stream %s: retention %v max age %v storage %v, want limits, %v, file", name, got.Retention, got.MaxAge, got.Storage, age)
		}
	}
	// The reads bucket keeps answers 30 s (QUERY_CACHE_TTL's bound), not
	// minutes; workers and throttle (0 here) are not in §2.
	for bucket, ttl := range map[string]time.Duration{"acme_ledger": 7 * day, "acme_correlation": 7 * day, "acme_campaigns": 30 * day,
		"acme_reads": 30 * time.Second, "acme_workers": 0, "acme_throttle": 0} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Errorf("bucket %s: %v", bucket, err)
			continue
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ttl != 0 && st.TTL() != ttl {
			t.Errorf("bucket %s: TTL %v, want %v", bucket, st.TTL(), ttl)
		}
	}
	if _, err := js.ObjectStore(ctx, "acme_campaign_lists"); err != nil {
		t.Errorf("object store: %v", err)
	}
	cons, err := js.Consumer(ctx, "ACME_COMMANDS", "worker-commands")
	if err != nil {
		t.Fatalf("command consumer: %v", err)
	}
	if got := cons.CachedInfo().Config; got.MaxDeliver != 10 || got.AckPolicy != jetstream.AckExplicitPolicy || got.MaxAckPending != 1024 {
		t.Errorf("command consumer = max deliver %d ack %v max ack pending %d, want 10, explicit, 1024", got.MaxDeliver, got.AckPolicy, got.MaxAckPending)
	}
}

func TestEnsureUpdatesChangedSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	if err := events.Ensure(ctx, js, events.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(ctx, js, events.TopologyConfig{ReadsTTL: time.Minute, MaxAckPending: 64}); err != nil {
		t.Fatalf("Ensure with changed settings: %v", err)
	}
	reads, err := js.KeyValue(ctx, "groups_reads")
	if err != nil {
		t.Fatal(err)
	}
	st, err := reads.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Minute {
		t.Errorf("reads TTL = %s after update, want 1m", st.TTL())
	}
	cons, err := js.Consumer(ctx, "GROUPS_COMMANDS", "worker-commands")
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxAckPending; got != 64 {
		t.Errorf("MaxAckPending = %d after update, want 64", got)
	}
}

// The webhook consumer never gives up on an item (Meta had its 200 and
// will not send it again), and a deployment whose consumer still had the
// old limit of 10 deliveries is upgraded in place.
func TestTheWebhookConsumerNeverGivesUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	cfg := events.TopologyConfig{}
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	old := cfg.Consumers()["GROUPS_WEBHOOKS"]
	old.MaxDeliver = 10
	if _, err := js.CreateOrUpdateConsumer(ctx, "GROUPS_WEBHOOKS", old); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, "GROUPS_WEBHOOKS", "worker-webhooks")
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.MaxDeliver; got != -1 {
		t.Fatalf("webhook consumer MaxDeliver = %d, want -1 (no limit)", got)
	}
}

func TestEnsureFromSeveralProcessesAtOnce(t *testing.T) {
	t.Parallel()
	url := natsembed.RunTest(t).ClientURL()
	const n = 4
	jss := make([]jetstream.JetStream, n)
	for i := range jss {
		jss[i] = jetStreamAt(t, url) // one connection each, like separate processes
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, js := range jss {
		wg.Go(func() { errs[i] = events.Ensure(context.Background(), js, events.TopologyConfig{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure %d of %d racing: %v", i+1, n, err)
		}
	}
}

func TestEnsureReplicatesOnACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := jetStreamAt(t, natsembed.RunTestCluster(t, 3).ClientURL())
	if err := events.Ensure(ctx, js, events.TopologyConfig{Replicas: 3}); err != nil {
		t.Fatalf("Ensure R3: %v", err)
	}
	s, err := js.Stream(ctx, "GROUPS_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Replicas; got != 3 {
		t.Errorf("command stream replicas = %d, want 3", got)
	}
}

func TestEnsureRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	for _, cfg := range []events.TopologyConfig{
		{Replicas: 7},
		{Names: events.Names{Prefix: "a.b"}},
		{MaxDeliver: 1},
		// Valid in a subject, not in a bucket or stream name.
		{Names: events.Names{Prefix: "a:b"}},
		{Names: events.Names{Prefix: "a/b"}},
		{Names: events.Names{Prefix: "é"}},
	} {
		if err := events.Ensure(ctx, js, cfg); err == nil {
			t.Errorf("Ensure(%+v) succeeded, want a configuration error", cfg)
		}
	}
	// Refused before anything was made, not half way through.
	for name := range js.StreamNames(ctx).Name() {
		t.Errorf("stream %s was made by an Ensure that failed", name)
	}
}

// Stream names are the prefix in upper case: an installation whose prefix
// differs from another's only in case would take over its streams, their
// subjects replaced with its own, and the other's commands would go
// nowhere. Ensure refuses instead.
func TestEnsureLeavesAnotherInstallationsStreams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	acme := events.TopologyConfig{Names: events.Names{Prefix: "acme"}}
	if err := events.Ensure(ctx, js, acme); err != nil {
		t.Fatal(err)
	}
	err := events.Ensure(ctx, js, events.TopologyConfig{Names: events.Names{Prefix: "Acme"}})
	if err == nil || !strings.Contains(err.Error(), "ACME_PARKED") || !strings.Contains(err.Error(), "acme.park.>") {
		t.Errorf("Ensure with prefix Acme next to acme: error %v, want one naming its first stream, ACME_PARKED, and its subjects", err)
	}
	for _, sc := range acme.Streams() {
		s, err := js.Stream(ctx, sc.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, sc.Subjects) {
			t.Errorf("stream %s subjects %v after Ensure of prefix Acme, want %v", sc.Name, got, sc.Subjects)
		}
	}
	c, err := js.Consumer(ctx, "ACME_COMMANDS", "worker-commands")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.FilterSubject; got != "acme.cmd.>" {
		t.Errorf("command consumer filter %s after Ensure of prefix Acme, want acme.cmd.>", got)
	}
}

// A command stream created before parking existed (no parked subjects, no
// message schedules) is brought up to date, with its messages kept: it
// sources the parked stream, whose parked copies come back on their
// command subject at their time.
func TestEnsureLetsAnOlderCommandStreamTakeParkedCopiesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	names := events.Names{}
	old, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: names.CommandStream(), Subjects: []string{names.AllCommands()},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, names.Command("1555", events.GetInviteLink), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(ctx, js, events.TopologyConfig{}); err != nil {
		t.Fatalf("Ensure over the older command stream: %v", err)
	}
	info, err := old.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; c.AllowMsgSchedules || c.AllowRollup || len(c.Sources) != 1 || c.Sources[0].Name != names.ParkedStream() {
		t.Errorf("command stream after Ensure: schedules %v, roll-ups %v, sources %+v; want neither, sourcing %s",
			c.AllowMsgSchedules, c.AllowRollup, c.Sources, names.ParkedStream())
	}
	if info.State.Msgs != 1 {
		t.Errorf("command stream holds %d messages after Ensure, want the 1 it had", info.State.Msgs)
	}
	park(t, js, names.Parked("1555", events.GetInviteLink, 1), names.Due("1555", events.GetInviteLink), time.Now().Add(-time.Second), `{"parked":true}`)
	waitForMsg(t, old, names.Command("1555", events.GetInviteLink), `{"parked":true}`)
}

// park publishes body to subject as a copy scheduled for target at at, as
// a worker parks a command.
func park(t *testing.T, js jetstream.JetStream, subject, target string, at time.Time, body string, opts ...jetstream.PublishOpt) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	m.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Nats-Schedule-Target", target)
	if _, err := js.PublishMsg(context.Background(), m, opts...); err != nil {
		t.Fatalf("park a copy on %s: %v", subject, err)
	}
}

// waitForMsg waits until the last message of stream on subject is body.
func waitForMsg(t *testing.T, s jetstream.Stream, subject, body string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.GetLastMsgForSubject(context.Background(), subject)
		if err == nil && string(got.Data) == body {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %s (last: %v, %v)", body, subject, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// legacyCommandStream makes the command stream as Ensure made it while
// parked copies waited in it: with message schedules, roll-ups and the
// parked subjects; and its consumer.
func legacyCommandStream(t *testing.T, js jetstream.JetStream, cfg events.TopologyConfig) jetstream.Stream {
	t.Helper()
	ctx := context.Background()
	n := cfg.Names
	s, err := js.CreateStream(ctx, legacyStreamConfig(n))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, n.CommandStream(), cfg.Consumers()[n.CommandStream()]); err != nil {
		t.Fatal(err)
	}
	return s
}

// legacyStreamConfig is the command stream's configuration as Ensure set
// it while parked copies waited in it.
func legacyStreamConfig(n events.Names) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: n.CommandStream(), Description: "groupflow commands, one consumer shared by all workers",
		Subjects:          []string{n.AllCommands(), n.AllLegacyParked()},
		AllowMsgSchedules: true, AllowRollup: true,
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, Discard: jetstream.DiscardOld,
	}
}

// An installation whose command stream is legacy (parked copies wait in
// it, so it allows roll-ups, which NATS does not turn off) keeps working
// on this version: Ensure leaves the stream's schedules, roll-ups and
// parked subjects as they are, so a copy parked there comes back (NATS
// refuses it the parked stream as a source), makes the parked stream for
// later, and says once, at warning level, what to run.
func TestEnsureKeepsALegacyCommandStreamWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	n := events.Names{}
	cmds := legacyCommandStream(t, js, events.TopologyConfig{})
	var logs testutil.SyncBuffer
	cfg := events.TopologyConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for range 2 { // a restart: once per start-up
		if err := events.Ensure(ctx, js, cfg); err != nil {
			t.Fatalf("Ensure over a legacy command stream: %v", err)
		}
	}
	info, err := cmds.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.Config; !events.LegacyCommandStream(&c) || !slices.Contains(c.Subjects, n.AllLegacyParked()) {
		t.Errorf("legacy command stream after Ensure: schedules %v, subjects %v; want schedules, %s kept",
			c.AllowMsgSchedules, c.Subjects, n.AllLegacyParked())
	}
	if _, err := js.Stream(ctx, n.ParkedStream()); err != nil {
		t.Errorf("parked stream after Ensure: %v", err)
	}
	warnings := 0
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "`groupctl migrate`") {
			warnings++
		}
	}
	if warnings != 2 {
		t.Errorf("%d warnings naming groupctl migrate in two Ensures, want one each; log:\n%s", warnings, logs.String())
	}
	cmd := n.Command("1555", events.GetInviteLink)
	park(t, js, n.LegacyParked("1555", events.GetInviteLink, 7), cmd, time.Now().Add(-time.Second), `{"parked":true}`)
	waitForMsg(t, cmds, cmd, `{"parked":true}`)
}

// An operator who moves a running deployment from NATS_REPLICAS=1 to 3
// restarts the ingest and the workers, which all run Ensure at once. A
// stream being scaled up answers no request until its new peers have a
// leader, and its consumers cannot take more replicas than the stream has
// peers until then: Ensure waits for both instead of failing the start.
func TestEnsureRaisesReplicasOnARunningCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	// The deadline only stops a hung test.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	url := natsembed.RunTestCluster(t, 3).ClientURL()
	if err := events.Ensure(ctx, jetStreamAt(t, url), events.TopologyConfig{Replicas: 1}); err != nil {
		t.Fatalf("Ensure R1: %v", err)
	}
	const processes = 2
	var wg sync.WaitGroup
	errs := make([]error, processes)
	var logs testutil.SyncBuffer
	cfg := events.TopologyConfig{Replicas: 3, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	for i := range processes {
		js := jetStreamAt(t, url) // one connection each, like separate processes
		wg.Go(func() { errs[i] = events.Ensure(ctx, js, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Ensure R3 in process %d of %d: %v", i+1, processes, err)
		}
	}
	if want := `object="stream GROUPS_COMMANDS" setting=replicas from=1 to=3`; !strings.Contains(logs.String(), want) {
		t.Errorf("the log of the scale-up lacks %s:\n%s", want, logs.String())
	}
	js := jetStreamAt(t, url)
	before := logs.String()
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatalf("Ensure R3 again: %v", err)
	}
	if again := strings.TrimPrefix(logs.String(), before); again != "" {
		t.Errorf("Ensure R3 on an R3 topology logged changes:\n%s", again)
	}
	for _, sc := range cfg.Streams() {
		wantReplicas(ctx, t, js, sc.Name, "", 3)
	}
	for _, kc := range cfg.Buckets() {
		wantReplicas(ctx, t, js, "KV_"+kc.Bucket, "", 3)
	}
	wantReplicas(ctx, t, js, "OBJ_groups_campaign_lists", "", 3)
	for stream, cc := range cfg.Consumers() {
		wantReplicas(ctx, t, js, stream, cc.Durable, 3)
	}
}

// wantReplicas checks the configured replicas of a stream, or of one of
// its consumers when consumer is set.
func wantReplicas(ctx context.Context, t *testing.T, js jetstream.JetStream, stream, consumer string, want int) {
	t.Helper()
	var got int
	if consumer == "" {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Errorf("stream %s: %v", stream, err)
			return
		}
		got = s.CachedInfo().Config.Replicas
	} else {
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			t.Errorf("consumer %s on %s: %v", consumer, stream, err)
			return
		}
		got = c.CachedInfo().Config.Replicas
	}
	if got != want {
		t.Errorf("%s %s: %d replicas, want %d", stream, consumer, got, want)
	}
}

// Every process applies its own settings at start-up: one set up unlike
// the others (an ingest without NATS_REPLICAS=3, a worker with another
// GROUPFLOW_MAX_ACK_PENDING) changes them back, which the operator hears of.
// An Ensure that changes nothing says nothing.
func TestEnsureSaysWhichSettingsItChanged(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := events.Ensure(ctx, js, events.TopologyConfig{MaxAckPending: 4096, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(ctx, js, events.TopologyConfig{MaxAckPending: 4096, Logger: log}); err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); got != "" {
		t.Fatalf("creating the topology and ensuring it unchanged logged:\n%s", got)
	}
	if err := events.Ensure(ctx, js, events.TopologyConfig{ReadsTTL: time.Minute, Logger: log}); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	for _, want := range []string{
		`object="consumer worker-commands on GROUPS_COMMANDS" setting=max_ack_pending from=4096 to=1024`,
		`object="consumer worker-webhooks on GROUPS_WEBHOOKS" setting=max_ack_pending from=4096 to=1024`,
		`object="bucket groups_reads" setting=max_age from=30s to=1m0s`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log after changing settings lacks %s:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("%d lines logged, want 3 (one per setting changed):\n%s", n, got)
	}
}

// The consumers' settings are read only for the log of changes: a process
// whose NATS user may not read consumer info (an ingest under an
// accounts.conf from before that log) still sets the topology up.
func TestEnsureNeedsNoConsumerInfoToStart(t *testing.T) {
	t.Parallel()
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "ingest", Password: "p", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"$JS.API.CONSUMER.INFO.>"}},
		}}},
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	js := jetStreamAt(t, srv.ClientURL(), nats.UserInfo("ingest", "p"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // the refusals are the point
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // stops a hang only
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	for i := range 2 { // creates, then updates
		if err := events.Ensure(ctx, js, events.TopologyConfig{Logger: log}); err != nil {
			t.Fatalf("Ensure %d without consumer info: %v", i+1, err)
		}
	}
}

// Any NATS user that may publish commands (a calling service,
// deploy/nats/accounts.conf) could publish one with Nats-Rollup: all and
// purge every queued command. The command stream refuses it.
func TestTheCommandStreamRefusesRollUps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	names := events.Names{}
	if err := events.Ensure(ctx, js, events.TopologyConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"queued-1", "queued-2"} {
		if _, err := js.Publish(ctx, names.Command("1555", events.GetInviteLink), []byte(`{}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, rollup := range []string{"all", "sub"} {
		m := nats.NewMsg(names.Command("1555", events.GetInviteLink))
		m.Data = []byte(`{}`)
		m.Header.Set("Nats-Rollup", rollup)
		if _, err := js.PublishMsg(ctx, m); err == nil {
			t.Errorf("a publish with Nats-Rollup: %s was taken, want it refused", rollup)
		}
	}
	s, err := js.Stream(ctx, names.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != 2 {
		t.Errorf("the command stream holds %d messages after the roll-ups, want the 2 queued commands", got)
	}
}
