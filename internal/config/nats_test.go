package config_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/goleak"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The nats-server keeps a few process-wide goroutines after shutdown.
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
	)
}

func TestValidInboxPrefix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"", true}, // nats.go's _INBOX
		{"_INBOX_worker", true},
		{"_INBOX.worker", true},
		{"_INBOX_worker.", false},
		{".worker", false},
		{"_INBOX..worker", false},
		{"_INBOX_*", false},
		{"_INBOX.>", false},
		{"_INBOX worker", false},
		{"_INBOX\tworker", false},
	} {
		if got := config.ValidInboxPrefix(tc.prefix); got != tc.want {
			t.Errorf("ValidInboxPrefix(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}

func TestLoadNATSReadsTheInboxPrefix(t *testing.T) {
	t.Parallel()
	t.Run("Unset keeps nats.go's default", func(t *testing.T) {
		t.Parallel()
		e := config.NewEnv(envOf(nil))
		if n := config.LoadNATS(e); n.InboxPrefix != "" || e.Err() != nil {
			t.Errorf("InboxPrefix = %q (error %v), want empty and no error", n.InboxPrefix, e.Err())
		}
	})
	t.Run("A prefix is taken as given", func(t *testing.T) {
		t.Parallel()
		e := config.NewEnv(envOf(map[string]string{"NATS_INBOX_PREFIX": "_INBOX_worker"}))
		if n := config.LoadNATS(e); n.InboxPrefix != "_INBOX_worker" || e.Err() != nil {
			t.Errorf("InboxPrefix = %q (error %v), want _INBOX_worker and no error", n.InboxPrefix, e.Err())
		}
	})
	t.Run("A wildcard or a trailing dot is refused", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"_INBOX.>", "_INBOX_worker."} {
			e := config.NewEnv(envOf(map[string]string{"NATS_INBOX_PREFIX": p}))
			config.LoadNATS(e)
			if err := e.Err(); err == nil || !strings.Contains(err.Error(), "NATS_INBOX_PREFIX:") {
				t.Errorf("NATS_INBOX_PREFIX=%q: error %v, want one naming NATS_INBOX_PREFIX", p, err)
			}
		}
	})
}

// GROUPFLOW_PREFIX names buckets and streams as well as subjects: a prefix
// NATS takes in a subject but not in a bucket name is refused at start-up,
// naming the variable, not after connecting, by a bucket NATS refuses.
func TestLoadNATSRefusesAPrefixNoBucketCanHave(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"a.b", "a:b", "a/b", "acme*", "é"} {
		e := config.NewEnv(envOf(map[string]string{"GROUPFLOW_PREFIX": p}))
		config.LoadNATS(e)
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), "GROUPFLOW_PREFIX:") {
			t.Errorf("GROUPFLOW_PREFIX=%q: error %v, want one naming GROUPFLOW_PREFIX", p, err)
		}
	}
	for _, p := range []string{"groups", "acme-prod_2", "Acme"} {
		e := config.NewEnv(envOf(map[string]string{"GROUPFLOW_PREFIX": p}))
		if n := config.LoadNATS(e); n.Prefix != p || e.Err() != nil {
			t.Errorf("GROUPFLOW_PREFIX=%q: prefix %q, error %v; want it taken", p, n.Prefix, e.Err())
		}
	}
}

// JetStream keeps at most 5 replicas: more is refused at start-up, naming
// the variable, not after connecting by the topology set-up (and, while NATS
// is down, not at all).
func TestLoadNATSRefusesMoreReplicasThanJetStreamKeeps(t *testing.T) {
	t.Parallel()
	e := config.NewEnv(envOf(map[string]string{"NATS_REPLICAS": "7"}))
	config.LoadNATS(e)
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "NATS_REPLICAS: want 1 to 5") {
		t.Errorf("NATS_REPLICAS=7: error %v, want one naming NATS_REPLICAS", err)
	}
	e = config.NewEnv(envOf(map[string]string{"NATS_REPLICAS": "5"}))
	if n := config.LoadNATS(e); n.Replicas != 5 || e.Err() != nil {
		t.Errorf("NATS_REPLICAS=5: replicas %d, error %v; want 5 and no error", n.Replicas, e.Err())
	}
}

// startRestrictedServer runs a JetStream server whose only user may publish
// anything but subscribe only to "_INBOX_test.>" and a micro service's
// subjects ("svc.>", "$SRV.>"), so every reply subject the client makes up
// must carry the custom prefix.
func startRestrictedServer(t *testing.T) string {
	t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(),
		Users: []*server.User{{Username: "u", Password: "p", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX_test.>", "svc.>", "$SRV.>"}},
		}}},
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	return s.ClientURL()
}

// violations collects the permission violations reported on a connection.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.errs...)
}

// TestConnectPutsEveryReplyUnderTheInboxPrefix drives each request/reply
// shape groupflow uses through a connection from Connect whose user may
// subscribe to "_INBOX_test.>" only: core requests to a micro service,
// JetStream API calls and publish acks, KV get (direct get) and watch
// (ordered consumer), object put and get, and a pull consumer.
func TestConnectPutsEveryReplyUnderTheInboxPrefix(t *testing.T) {
	t.Parallel()
	url := startRestrictedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var v violations
	n := config.NATS{URL: url, User: "u", Password: "p", InboxPrefix: "_INBOX_test"}
	nc, err := n.Connect("config-test", nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if in := nc.NewInbox(); !strings.HasPrefix(in, "_INBOX_test.") {
		t.Fatalf("NewInbox() = %q, want it under _INBOX_test.", in)
	}
	svc, err := micro.AddService(nc, micro.Config{Name: "echo", Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{Subject: "svc.echo", Handler: micro.HandlerFunc(func(r micro.Request) {
			_ = r.Respond(r.Data())
		})}})
	if err != nil {
		t.Fatalf("micro service: %v", err)
	}
	defer func() { _ = svc.Stop() }()
	if reply, err := nc.RequestWithContext(ctx, "svc.echo", []byte("hi")); err != nil || string(reply.Data) != "hi" {
		t.Fatalf("request to the micro service: %v (reply %v)", err, reply)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WORK", Subjects: []string{"work.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "work.1", []byte("job")); err != nil {
		t.Fatalf("publish with an ack: %v", err)
	}
	if _, err := js.PublishAsync("work.2", []byte("job")); err != nil {
		t.Fatalf("async publish: %v", err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("async publish was not acked")
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "WORK", jetstream.ConsumerConfig{Durable: "w", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	got := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("double ack: %v", err)
		}
		got++
	}
	if got != 2 {
		t.Fatalf("fetched %d messages, want 2 (%v)", got, batch.Error())
	}

	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "b"})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("kv get: %v", err)
	}
	keys, err := kv.Keys(ctx) // an ordered consumer
	if err != nil || len(keys) != 1 {
		t.Fatalf("kv keys = %v, %v; want [k]", keys, err)
	}

	obs, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "o"})
	if err != nil {
		t.Fatalf("create object store: %v", err)
	}
	body := bytes.Repeat([]byte("x"), 300<<10) // several chunks
	if _, err := obs.PutBytes(ctx, "list", body); err != nil {
		t.Fatalf("object put: %v", err)
	}
	if b, err := obs.GetBytes(ctx, "list"); err != nil || !bytes.Equal(b, body) {
		t.Fatalf("object get: %v (got %d bytes, want %d)", err, len(b), len(body))
	}

	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if errs := v.list(); len(errs) > 0 {
		t.Errorf("the server refused a subscription outside _INBOX_test: %q", errs)
	}
}

// TestConnectWithoutThePrefixIsRefusedReplies is the control: the same user
// with nats.go's default _INBOX cannot even receive a reply.
func TestConnectWithoutThePrefixIsRefusedReplies(t *testing.T) {
	t.Parallel()
	url := startRestrictedServer(t)
	var v violations
	nc, err := config.NATS{URL: url, User: "u", Password: "p"}.Connect("config-test", nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err == nil {
		t.Fatal("AccountInfo answered without a subscribe permission on _INBOX.>")
	}
	_ = nc.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for len(v.list()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if errs := v.list(); len(errs) == 0 || !strings.Contains(errs[0], `"_INBOX.`) {
		t.Errorf("violations %q, want one for a subscription under _INBOX.", errs)
	}
}

func TestConnectRefusesAnInvalidInboxPrefix(t *testing.T) {
	t.Parallel()
	_, err := config.NATS{URL: "nats://127.0.0.1:1", InboxPrefix: "_INBOX.>"}.Connect("config-test")
	if err == nil || !strings.Contains(err.Error(), "inbox prefix") {
		t.Fatalf("Connect = %v, want an inbox prefix error", err)
	}
}

func TestLoadNATSChecksTheURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want string // in the error; empty: accepted
	}{
		{"nats://127.0.0.1:4222", ""},
		{"tls://nats.example.com", ""},
		{"ws://h:80", ""},
		{"wss://u:pa55@h:443", ""},
		{"nats://a:4222, nats://b:4222,", ""}, // nats.go skips empty entries too
		// Without a scheme, a host (and port) as nats.go takes it: a
		// Kubernetes service name is a usual NATS_URL.
		{"nats", ""},
		{"127.0.0.1:4222", ""},
		{"alice:pa55@127.0.0.1:4222", ""},
		{"127.0.0.1:x", `entry 1 is not a URL: invalid port ":x" after host`},
		{"http://127.0.0.1:8080", `"http://127.0.0.1:8080" has scheme http`},
		{"nats://a:4222,https://alice:pa55@b", `"https://alice:xxxxx@b" has scheme https`},
		{"nats://:4222", `"nats://:4222" has no host`},
		{"nats://h:x", `entry 1 is not a URL: invalid port ":x" after host`},
		{"nats://h,nats://u:pa%zz55@h", "entry 2 is not a URL"},
		{"nats://a:4222,ws://b:80", "cannot be mixed"},
	} {
		e := config.NewEnv(envOf(map[string]string{"NATS_URL": tc.url}))
		config.LoadNATS(e)
		err := e.Err()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("NATS_URL=%q: error %v, want none", tc.url, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "NATS_URL: ") || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("NATS_URL=%q: error %v, want one naming NATS_URL with %q", tc.url, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "pa55"):
			t.Errorf("NATS_URL=%q: error %v shows the password", tc.url, err)
		}
	}
}

// waitFor waits until the log holds want.
func waitFor(t *testing.T, log *testutil.SyncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the log has no %q after 10 s:\n%s", want, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLogAttemptsSaysWhyTheFirstConnectionFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // nothing listens there until the server starts below

	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	n := config.NATS{URL: fmt.Sprintf("nats://u:s3cret@127.0.0.1:%d", port)}
	nc, err := n.Connect("config-test", n.LogAttempts(log))
	if err != nil {
		t.Fatalf("Connect = %v, want it to retry in the background", err)
	}
	defer nc.Close()
	waitFor(t, &buf, "connection refused")

	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		Users: []*server.User{{Username: "u", Password: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	waitFor(t, &buf, "connected to NATS")
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("the log shows the password:\n%s", buf.String())
	}
	if got := strings.Count(buf.String(), "cannot connect"); got > 2 {
		t.Errorf("%d lines for the same refusal within a few seconds, want at most 2:\n%s", got, buf.String())
	}
}

// TestARefusedPasswordIsTriedAgainUntilTheServerTakesIt: a user not yet
// provisioned, or a password rotated on the server before the client's
// secret, refuses the connection; nats.go gives up for good after the same
// refusal twice, which would leave a process connected to nothing and
// never ready. Connect keeps trying, as it does for an unreachable server.
func TestARefusedPasswordIsTriedAgainUntilTheServerTakesIt(t *testing.T) {
	t.Parallel()
	start := func(port int, password string) *server.Server {
		t.Helper()
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
			Users: []*server.User{{Username: "u", Password: password}}})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("NATS server did not start")
		}
		return s
	}
	old := start(server.RANDOM_PORT, "rotated")
	port := old.Addr().(*net.TCPAddr).Port

	var buf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	n := config.NATS{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), User: "u", Password: "s3cret"}
	nc, err := n.Connect("config-test", n.LogAttempts(log))
	if err != nil {
		t.Fatalf("Connect = %v, want it to retry in the background", err)
	}
	defer nc.Close()
	waitFor(t, &buf, "Authorization Violation")
	time.Sleep(time.Second) // several refusals: nats.go gives up after the second
	if nc.IsClosed() {
		t.Fatal("the connection was closed after the server refused the password: it would never connect")
	}
	old.Shutdown()
	old.WaitForShutdown()

	s := start(port, "s3cret")
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	waitFor(t, &buf, "connected to NATS")
	if !nc.IsConnected() {
		t.Fatalf("status %v after the server took the password, want connected", nc.Status())
	}
	if strings.Contains(buf.String(), "s3cret") {
		t.Errorf("the log shows the password:\n%s", buf.String())
	}
}
