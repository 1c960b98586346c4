package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestInvalidConfigurationStopsStartUpWithOneLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"WORKER_CONCURRENCY":   "0",
		"GRAPH_API_BASE_URL":   "ftp://proxy:sekr1t-in-url@graph.example", // its password must not show either
		"RATE_LIMIT_OVERRIDES": "123:80/x",
		"NATS_PASSWORD":        "sekr1t-value",
	}
	err := runMain(context.Background(), nil, func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("runMain started with an invalid configuration")
	}
	msg := err.Error()
	for _, want := range []string{"WHATSAPP_ACCESS_TOKEN", "WORKER_CONCURRENCY", "GRAPH_API_BASE_URL", "RATE_LIMIT_OVERRIDES"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "sekr1t") {
		t.Errorf("error is not one secret-free line: %q", msg)
	}
}

func TestUnknownFlagIsAnError(t *testing.T) {
	t.Parallel()
	if err := runMain(context.Background(), []string{"--bogus"}, func(string) string { return "" }); err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %v, want one line", err)
	}
}

// Every variable has a flag that wins over it; --embedded-nats is short
// for --worker-embedded-nats; --help is not an error.
func TestFlagsMirrorTheEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_ACCESS_TOKEN": "tok", "WORKER_CONCURRENCY": "8", "RATE_LIMIT_MESSAGES": "40"}
	getenv := func(k string) string { return env[k] }
	s, err := load([]string{"--worker-concurrency", "3", "--embedded-nats", "--rate-limit-park-after=2s"}, getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.concurrency != 3 || !s.embedded || s.parkAfter != 2*time.Second || s.limits.Messages != 40 {
		t.Fatalf("concurrency %d, embedded %v, park after %v, messages %v: want 3, true, 2s from flags and 40 from the environment",
			s.concurrency, s.embedded, s.parkAfter, s.limits.Messages)
	}
	if err := runMain(context.Background(), []string{"--help"}, getenv); err != nil {
		t.Fatalf("--help: %v", err)
	}
}

func TestParseAccounts(t *testing.T) {
	t.Parallel()
	got, err := parseAccounts([]string{"111:900", " 222 : 901 ", "111:900"})
	if err != nil || len(got) != 2 || got["111"] != "900" || got["222"] != "901" {
		t.Fatalf("parseAccounts = %v, %v", got, err)
	}
	for _, bad := range [][]string{{"111"}, {"111:"}, {":900"}, {"1 1:900"}, {"111:900", "111:901"}, {"abc:900"}} {
		if _, err := parseAccounts(bad); err == nil {
			t.Errorf("parseAccounts(%q) accepted", bad)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	got, err := parseOverrides([]string{"111:200/20/", "222://5"})
	if err != nil {
		t.Fatal(err)
	}
	if got["111"].Messages != 200 || got["111"].GroupOps != 20 || got["111"].Reads != 0 || got["222"].Reads != 5 {
		t.Fatalf("overrides = %+v", got)
	}
	for _, bad := range []string{"111", "a.b:1", "111:0", "111:1/2/3/4", "abc:10//"} {
		if _, err := parseOverrides([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseOverrides([]string{"123:10//", "123:20//"}); err == nil || !strings.Contains(err.Error(), "number 123") {
		t.Errorf("two limits for one number: error %v, want one naming the number", err)
	}
	if got, err := parseOverrides([]string{"123:10//", " 123 :10//"}); err != nil || len(got) != 1 {
		t.Errorf("the same entry twice = %v, %v; want it taken once", got, err)
	}
}

func TestLoadRefusesWhatCouldNeverTakeEffect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"An override for a number that is not numeric", map[string]string{"RATE_LIMIT_OVERRIDES": "abc:10//"}, `RATE_LIMIT_OVERRIDES: phone number id "abc"`},
		{"Two overrides for one number", map[string]string{"RATE_LIMIT_OVERRIDES": "123:10//,123:20//"}, "RATE_LIMIT_OVERRIDES: number 123 is given two"},
		{"A cache longer than the reads bucket keeps answers", map[string]string{"QUERY_CACHE_TTL": "1h"}, "QUERY_CACHE_TTL: want at most 30s"},
		// The limiter refuses these too, but only once NATS is set up: not
		// at all while NATS is down, and naming its own fields.
		{"A limit that is not a number", map[string]string{"RATE_LIMIT_MESSAGES": "NaN"}, "RATE_LIMIT_MESSAGES: want a number ≥ 1"},
		{"An infinite limit", map[string]string{"RATE_LIMIT_GROUP_OPS": "Inf"}, "RATE_LIMIT_GROUP_OPS: want a number ≥ 1"},
		{"A limit under one a second", map[string]string{"RATE_LIMIT_READS": "0.5"}, "RATE_LIMIT_READS: want a number ≥ 1"},
		{"A jitter as long as the limits' window", map[string]string{"RATE_LIMIT_JITTER": "1s"}, "RATE_LIMIT_JITTER: want less than 1s"},
		{"A worker id no heartbeat key can hold", map[string]string{"WORKER_ID": "worker.1"}, "WORKER_ID: want letters, digits"},
		{"An address without a port", map[string]string{"WORKER_ADDR": "8081"}, "WORKER_ADDR: want host:port"},
		{"A Graph version without its v", map[string]string{"GRAPH_API_VERSION": "23.0"}, `GRAPH_API_VERSION: want a version such as v23.0, got "23.0"`},
		{"A Graph version with a path", map[string]string{"GRAPH_API_VERSION": "v23.0/x"}, `GRAPH_API_VERSION: want a version such as v23.0, got "v23.0/x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.env["WHATSAPP_ACCESS_TOKEN"] = "tok"
			_, err := load(nil, func(k string) string { return tc.env[k] })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestLoadWarnsOfConcurrencyAboveMaxAckPending(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_ACCESS_TOKEN": "tok", "WORKER_CONCURRENCY": "2000"}
	s, err := load(nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(s.warnings) != 1 || !strings.Contains(s.warnings[0], "WORKER_CONCURRENCY=2000 is above GROUPFLOW_MAX_ACK_PENDING=1024") {
		t.Fatalf("warnings %q, want one about WORKER_CONCURRENCY above the default GROUPFLOW_MAX_ACK_PENDING", s.warnings)
	}
	env["GROUPFLOW_MAX_ACK_PENDING"] = "2000"
	if s, err := load(nil, func(k string) string { return env[k] }); err != nil || len(s.warnings) != 0 {
		t.Fatalf("load = %v with warnings %q, want neither when they are equal", err, s.warnings)
	}
}

func TestAnUnreadableSecretFileIsOneProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WHATSAPP_ACCESS_TOKEN_FILE": t.TempDir() + "/missing"}
	_, err := load(nil, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "WHATSAPP_ACCESS_TOKEN_FILE: cannot read") {
		t.Fatalf("load = %v, want the file named", err)
	}
	if strings.Contains(err.Error(), "required") {
		t.Errorf("error %q also calls the token missing", err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil { // the server under test takes the address next
		t.Fatal(err)
	}
	return port
}

// The whole binary: embedded JetStream, topology, worker, health endpoint;
// a command goes in, its result comes out, and SIGTERM (ctx) stops it.
func TestEmbeddedNATSRunsCommandsEndToEnd(t *testing.T) {
	t.Parallel()
	s := sim.New(sim.Config{})
	simSrv := httptest.NewServer(s)
	t.Cleanup(func() { simSrv.Close(); s.Close() })
	natsPort, httpPort := freePort(t), freePort(t)
	env := map[string]string{
		"WHATSAPP_ACCESS_TOKEN":     sim.DefaultAccessToken,
		"GRAPH_API_BASE_URL":        simSrv.URL,
		"WORKER_EMBEDDED_NATS_ADDR": fmt.Sprintf("127.0.0.1:%d", natsPort),
		"WORKER_EMBEDDED_NATS_DIR":  t.TempDir(),
		"WORKER_ADDR":               fmt.Sprintf("127.0.0.1:%d", httpPort),
		"WORKER_SHUTDOWN_GRACE":     "1s",
		"LOG_LEVEL":                 "warn",
		"GROUPFLOW_MAX_ACK_PENDING": "256",
	}
	startMain(t, []string{"--embedded-nats"}, env)
	ctx := context.Background()

	// Wait for readiness: NATS, topology and worker are up.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)

	gc, _ := graph.New(graph.Config{BaseURL: simSrv.URL, AccessToken: sim.DefaultAccessToken})
	const phone = "106540352242922"
	if _, err := gc.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "From the binary"}); err != nil {
		t.Fatal(err)
	}
	groupID := s.State().Numbers[0].Groups[0].ID

	names := events.Names{}
	reads, err := js.KeyValue(ctx, names.ReadsBucket())
	if err != nil {
		t.Fatal(err)
	}
	if st, err := reads.Status(ctx); err != nil || st.TTL() != readsBucketTTL {
		t.Errorf("reads bucket TTL %v (%v), want readsBucketTTL's %s, which caps QUERY_CACHE_TTL", st.TTL(), err, readsBucketTTL)
	}
	for _, name := range []string{names.CommandConsumer(), names.WebhookConsumer()} {
		stream := names.CommandStream()
		if name == names.WebhookConsumer() {
			stream = names.WebhookStream()
		}
		c, err := js.Consumer(ctx, stream, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.CachedInfo().Config.MaxAckPending; got != 256 {
			t.Errorf("%s: MaxAckPending %d, want GROUPFLOW_MAX_ACK_PENDING's 256", name, got)
		}
	}
	r := getInviteLink(t, js, phone, groupID, "bin-1")
	if r.CommandID != "bin-1" || !strings.Contains(string(r.Result), "chat.whatsapp.com") {
		t.Fatalf("result = %+v", r)
	}
	// The worker also answers reads over NATS request-reply.
	reply, err := nc.Request(names.Query(phone, "command_status"), []byte(`{"command_id":"bin-1"}`), 5*time.Second)
	if err != nil {
		t.Fatalf("command_status query: %v", err)
	}
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" || !strings.Contains(string(reply.Data), `"succeeded"`) {
		t.Fatalf("command_status reply = %s (error code %q), want the succeeded ledger entry", reply.Data, code)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	exposition, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	// The series main wires beyond the jobs package's own: Graph calls
	// (client hook), limiter waits, DLQ depth, parked commands and
	// consumer lag (observers).
	for _, want := range []string{
		`groupflow_graph_calls_total{code="0",endpoint="get_invite_link",status="200"}`,
		`groupflow_ratelimit_wait_duration_seconds_count{class="reads",outcome="acquired"}`,
		`groupflow_dlq_messages{stream="GROUPS_DLQ"} 0`,
		`groupflow_parked_commands{stream="GROUPS_PARKED"} 0`,
		`groupflow_consumer_lag{consumer="worker-commands",stream="GROUPS_COMMANDS"}`,
	} {
		if !strings.Contains(string(exposition), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The alerted series at 0 from start-up are the worker's own: the app
	// and account throttles, and none of the ingest's webhook signature
	// failures, which would say the worker receives webhooks.
	for _, want := range []string{
		`groupflow_throttles_total{code="4",scope="app"} 0`,
		`groupflow_throttles_total{code="80007",scope="account"} 0`,
	} {
		if !strings.Contains(string(exposition), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for line := range strings.Lines(string(exposition)) {
		if strings.Contains(line, "groupflow_webhook_signature_failures_total") {
			t.Errorf("the worker's /metrics has the ingest's %s", strings.TrimSpace(line))
		}
	}
}

func TestPrintConfigNeedsNoConfiguration(t *testing.T) {
	t.Parallel()
	s, err := load([]string{"--print-config"}, func(string) string { return "" })
	if err != nil {
		t.Fatalf("--print-config with no environment: %v", err)
	}
	names := map[string]bool{}
	for _, v := range s.printConfig {
		names[v.Name] = true
	}
	for _, want := range []string{"NATS_URL", "WHATSAPP_ACCESS_TOKEN", "WORKER_CONCURRENCY", "RATE_LIMIT_MESSAGES", "WORKER_ADDR"} {
		if !names[want] {
			t.Errorf("--print-config does not list %s", want)
		}
	}
}

// SIGTERM while NATS is unreachable: the command in flight has the
// shutdown grace, then the worker exits without waiting on NATS (a flush,
// a drain, a deregistration, each with a time-out of its own, held it 20 s
// and more past a 2 s grace), and the command, not acknowledged, is still
// the consumer's to deliver once NATS is back. The bound on the exit is
// the grace plus the telemetry flush's 5 s, as deploy/ budgets it.
func TestSIGTERMWhileNATSIsDownExitsWithinTheGrace(t *testing.T) {
	t.Parallel()
	ns := natsembed.RunTest(t)
	s := sim.New(sim.Config{})
	simSrv := httptest.NewServer(s)
	t.Cleanup(func() { simSrv.Close(); s.Close() })
	if err := s.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	const grace = 2 * time.Second
	httpPort := freePort(t)
	env := map[string]string{
		"NATS_URL":              ns.ClientURL(),
		"WHATSAPP_ACCESS_TOKEN": sim.DefaultAccessToken,
		"GRAPH_API_BASE_URL":    simSrv.URL,
		"WORKER_ADDR":           fmt.Sprintf("127.0.0.1:%d", httpPort),
		"WORKER_SHUTDOWN_GRACE": grace.String(),
		"LOG_LEVEL":             "error",
	}
	stop := startMain(t, nil, env)
	ctx := context.Background()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)
	awaitReadyz(t, readyz, http.StatusOK)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	names := events.Names{}
	const phone = "106540352242922"
	// Known as the number's group, as its webhooks would have it: the
	// command's first call is then the one that hangs.
	owners, err := js.KeyValue(ctx, names.OwnerBucket())
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.NewOwners(owners).Learn(ctx, "g", phone); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(events.Command{ID: "in-flight", Type: events.GetInviteLink, PhoneNumberID: phone, GroupID: "g"})
	if _, err := js.Publish(ctx, names.Command(phone, events.GetInviteLink), body, jetstream.WithMsgID("in-flight")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	for len(s.Calls()) == 0 { // the call hangs until the worker gives up
		time.Sleep(10 * time.Millisecond)
	}

	opts := ns.Options()
	ns.Shutdown()
	awaitReadyz(t, readyz, http.StatusServiceUnavailable) // the worker knows
	if err := stop(grace + 5*time.Second); err != nil {
		t.Fatalf("SIGTERM with NATS down (the grace is %s): %v", grace, err)
	}

	// Nothing lost: NATS back, the command is still owed.
	back := natsembed.RunTestWith(t, opts)
	nc, err = nats.Connect(back.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = jetstream.New(nc)
	cons, err := js.Consumer(context.Background(), names.CommandStream(), names.CommandConsumer())
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending+int(info.NumPending) != 1 { //nolint:gosec // G115: one command
		t.Errorf("command consumer after the restart: %d unacknowledged, %d undelivered; want the command in flight still owed", info.NumAckPending, info.NumPending)
	}
}

// getInviteLink publishes a get_invite_link command for group and returns
// its command.succeeded.
func getInviteLink(t *testing.T, js jetstream.JetStream, phone, group, id string) events.CommandResult {
	t.Helper()
	ctx := context.Background()
	names := events.Names{}
	cons, err := js.OrderedConsumer(ctx, names.EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{names.Event(phone, events.EventCommandSucceeded)},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(events.Command{ID: id, Type: events.GetInviteLink, PhoneNumberID: phone, GroupID: group})
	if _, err := js.Publish(ctx, names.Command(phone, events.GetInviteLink), body, jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(15 * time.Second))
	if err != nil {
		t.Fatalf("no command.succeeded: %v", err)
	}
	ev, err := events.Unmarshal(msg.Data())
	if err != nil {
		t.Fatal(err)
	}
	var r events.CommandResult
	if err := json.Unmarshal(ev.Data(), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// startMain runs runMain with args and env until the test ends. stop
// cancels its context, as SIGTERM does, and waits up to within for it to
// return: its error, or one saying it did not.
func startMain(t *testing.T, args []string, env map[string]string) (stop func(within time.Duration) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runMain(ctx, args, func(k string) string { return env[k] }) }()
	var once sync.Once
	var result error
	stop = func(within time.Duration) error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(within):
				result = fmt.Errorf("runMain did not return within %s of its cancellation", within)
			}
		})
		return result
	}
	t.Cleanup(func() {
		if err := stop(15 * time.Second); err != nil {
			t.Errorf("runMain: %v", err)
		}
	})
	return stop
}

// awaitReadyz waits until url answers status.
func awaitReadyz(t *testing.T, url string, status int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url) //nolint:noctx // a probe, bounded by the loop
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer %d within 15 s (last: %v)", url, status, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
