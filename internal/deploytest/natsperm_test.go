package deploytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/ingest"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/query"
	"github.com/groupflow/groupflow/internal/webhook"
)

const testPhone = "106540352242922"

// natsUsers are the users of deploy/nats/accounts.conf and the environment
// variables their passwords come from.
var natsUsers = map[string]string{
	"ingest": "GROUPFLOW_NATS_INGEST_PASSWORD",
	"worker": "GROUPFLOW_NATS_WORKER_PASSWORD",
	"caller": "GROUPFLOW_NATS_CALLER_PASSWORD",
	"admin":  "GROUPFLOW_NATS_ADMIN_PASSWORD",
	"sys":    "GROUPFLOW_NATS_SYS_PASSWORD",
}

// inboxPrefixes are the NATS_INBOX_PREFIX each user connects with: the
// ingest's and the worker's from deploy/compose.yaml (the manifest tests
// hold Kubernetes to the same), the caller's as a calling service sets its
// client's custom inbox prefix by accounts.conf. The admin user keeps
// nats.go's _INBOX.
func inboxPrefixes(t *testing.T) map[string]string {
	t.Helper()
	p := map[string]string{"caller": "_INBOX_caller"}
	for _, rs := range composeRuns(t, loadCompose(t)) {
		if rs.binary == "ingest" || rs.binary == "worker" {
			p[rs.binary] = rs.env["NATS_INBOX_PREFIX"].value
		}
	}
	for _, u := range []string{"ingest", "worker"} {
		if p[u] == "" {
			t.Fatalf("deploy/compose.yaml gives the %s no NATS_INBOX_PREFIX", u)
		}
	}
	return p
}

// permServer is a JetStream server running deploy/nats/accounts.conf.
type permServer struct {
	url       string
	passwords map[string]string
	inbox     map[string]string // user → NATS_INBOX_PREFIX
	// refused hears of the first permission violation on a component's
	// connection, so waits for its work fail at once, naming it.
	refused *refusal
}

// refusal records the first permission violation of the components.
type refusal struct {
	once sync.Once
	ch   chan struct{}
	msg  string
}

func (r *refusal) note(user, msg string) {
	r.once.Do(func() {
		r.msg = "the " + user + " user was refused: " + msg
		close(r.ch)
	})
}

// startPermServer parses deploy/nats/accounts.conf exactly as the compose
// and Helm servers do (passwords from the environment), keeps its accounts
// and permissions, and only moves the listener and the store for the test.
func startPermServer(t *testing.T) permServer {
	t.Helper()
	ps := permServer{passwords: map[string]string{}, inbox: inboxPrefixes(t), refused: &refusal{ch: make(chan struct{})}}
	for user, env := range natsUsers {
		ps.passwords[user] = randomSecret(t)
		t.Setenv(env, ps.passwords[user]) // read by the config parser
	}
	// A bcrypt hash works in place of the password (what deploy/README.md
	// advises for production): the admin user proves it.
	hash, err := bcrypt.GenerateFromPassword([]byte(ps.passwords["admin"]), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(natsUsers["admin"], string(hash))
	opts, err := server.ProcessConfigFile(deployPath(t, "nats", "accounts.conf"))
	if err != nil {
		t.Fatalf("deploy/nats/accounts.conf does not load: %v", err)
	}
	opts.ServerName = "deploytest"
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	opts.HTTPPort = 0
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	opts.MaxPayload = 8 << 20 // as deploy/nats/nats-server.conf and the Helm values
	opts.NoSigs = true
	opts.NoLog = !testing.Verbose()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server with deploy/nats/accounts.conf: %v", err)
	}
	if testing.Verbose() {
		s.ConfigureLogger()
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(15 * time.Second) {
		t.Fatal("NATS server with deploy/nats/accounts.conf did not start")
	}
	ps.url = s.ClientURL()
	return ps
}

func randomSecret(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// client is one NATS connection as a deploy user; every permission
// violation the server reports on it is recorded.
type client struct {
	user      string
	component bool // doing its normal work: any refusal is a failure
	nc        *nats.Conn
	js        jetstream.JetStream

	mu         sync.Mutex
	violations []string
	wake       chan struct{}
}

func (ps permServer) connect(t *testing.T, user string) *client {
	t.Helper()
	return ps.connectAs(t, user, ps.inbox[user], false)
}

// component connects as user to do that component's normal work.
func (ps permServer) component(t *testing.T, user string) *client {
	t.Helper()
	return ps.connectAs(t, user, ps.inbox[user], true)
}

// connectAs connects as the binaries do: config.LoadNATS from the variables
// a manifest sets, then config.NATS.Connect.
func (ps permServer) connectAs(t *testing.T, user, inboxPrefix string, component bool) *client {
	t.Helper()
	c := &client{user: user, component: component, wake: make(chan struct{})}
	env := map[string]string{
		"NATS_URL": ps.url, "NATS_USER": user, "NATS_PASSWORD": ps.passwords[user],
		"NATS_INBOX_PREFIX": inboxPrefix,
	}
	e := config.NewEnv(func(k string) string { return env[k] })
	cfg := config.LoadNATS(e)
	if err := e.Err(); err != nil {
		t.Fatalf("%s's NATS configuration: %v", user, err)
	}
	nc, err := cfg.Connect("deploytest-"+user,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if !strings.Contains(err.Error(), nats.PERMISSIONS_ERR) &&
				!strings.Contains(strings.ToLower(err.Error()), nats.PERMISSIONS_ERR) {
				return
			}
			if c.component {
				ps.refused.note(user, err.Error())
			}
			c.mu.Lock()
			c.violations = append(c.violations, err.Error())
			close(c.wake)
			c.wake = make(chan struct{})
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return c
}

// allowedOnly fails the test if the server refused anything on c: a
// component doing its normal work must stay inside its permissions.
func (c *client) allowedOnly(t *testing.T) {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Errorf("flush %s: %v", c.user, err)
	}
	// LastError is set before the flush's PONG is read; the handler may
	// run later.
	if err := c.nc.LastError(); err != nil && strings.Contains(err.Error(), nats.PERMISSIONS_ERR) {
		t.Errorf("the %s user needed a permission deploy/nats/accounts.conf does not give: %v", c.user, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.violations {
		t.Errorf("the %s user needed a permission deploy/nats/accounts.conf does not give: %s", c.user, v)
	}
}

// refused waits until the server reports a violation naming subject and
// returns it.
func (c *client) refused(t *testing.T, subject string) string {
	t.Helper()
	return c.refusedWhere(t, subject, func(v string) bool { return strings.Contains(v, `"`+subject+`"`) })
}

// refusedWhere waits until the server reports a violation that match
// accepts (what says which) and returns it.
func (c *client) refusedWhere(t *testing.T, what string, match func(violation string) bool) string {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, v := range c.violations {
			if match(v) {
				c.mu.Unlock()
				return v
			}
		}
		wake := c.wake
		got := append([]string(nil), c.violations...)
		c.mu.Unlock()
		select {
		case <-wake:
		case <-deadline.C:
			t.Fatalf("the %s user was not refused %s; violations reported: %q", c.user, what, got)
		}
	}
}

// TestComponentsRunUnderTheirNATSPermissions runs the real ingest handler,
// a worker wired as cmd/worker wires it, and a caller, each as its own user
// of deploy/nats/accounts.conf, through a whole command: a caller publishes
// create_group, the worker calls the simulator, the simulator's webhook comes
// back through the ingest, and the caller reads the result from its own
// consumer of the event stream; a second command goes through the ingest's
// HTTP API and its status is read back from the ledger. Each connects with
// the inbox prefix its manifest sets (NATS_INBOX_PREFIX), the only replies
// its user may subscribe to. None of them may be refused anything on the
// way. Then each is shown refused outside its rights — the caller also
// cannot listen to the worker's replies nor to _INBOX.>.
func TestComponentsRunUnderTheirNATSPermissions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ps := startPermServer(t)
	names := events.Names{}
	// MaxDeliver 2 so the dead-letter path is reached quickly.
	topology := events.TopologyConfig{Names: names, Replicas: 1, MaxDeliver: 2}
	logger := slog.New(slog.DiscardHandler)

	// The ingest, as cmd/ingest wires it (plus the ledger for GET /v1/commands).
	in := ps.component(t, "ingest")
	if err := events.Ensure(ctx, in.js, topology); err != nil {
		t.Fatalf("ingest: ensure topology: %v", err)
	}
	ledgerKV, err := in.js.KeyValue(ctx, names.LedgerBucket())
	if err != nil {
		t.Fatalf("ingest: open the ledger: %v", err)
	}
	const apiToken = "deploytest-api-token"
	handler, err := ingest.New(ingest.Config{
		Conn: in.nc, JS: in.js, Names: names, APITokens: []string{apiToken},
		Ledger: ingest.JobsLedger(jobs.NewLedger(ledgerKV, time.Now)),
		Logger: logger,
		Webhook: &webhook.Handler{
			AppSecret:   []byte(sim.DefaultAppSecret),
			VerifyToken: "deploytest-verify",
			Publisher:   &webhook.JetStreamPublisher{JS: in.js, Names: names},
			Logger:      logger,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ingestSrv := httptest.NewServer(handler)
	t.Cleanup(ingestSrv.Close)

	// The simulator delivers its webhooks to the ingest.
	simulator := sim.New(sim.Config{WebhookURL: ingestSrv.URL + "/webhook", WebhookDelay: 5 * time.Millisecond,
		GroupOpsPerSecond: -1, MPS: -1, PairInterval: -1, WebhookRetryBackoff: 10 * time.Millisecond})
	simSrv := httptest.NewServer(simulator)
	t.Cleanup(func() { simSrv.Close(); simulator.Close() })

	// An operator's tap on the worker's inbox: what the caller below is
	// refused would carry the worker's ledger reads (command bodies).
	var workerReplies, workerLedgerReads atomic.Int64
	tap, err := ps.connect(t, "admin").nc.Subscribe(inboxOf("worker")+".>", func(m *nats.Msg) {
		workerReplies.Add(1)
		if m.Header.Get(jetstream.StreamHeader) == "KV_"+names.LedgerBucket() {
			workerLedgerReads.Add(1)
		}
	})
	if err != nil {
		t.Fatalf("admin: tap %s.>: %v", inboxOf("worker"), err)
	}
	t.Cleanup(func() { _ = tap.Unsubscribe() })

	// A worker, as cmd/worker wires it: topology, rate limiter, jobs.
	wk := ps.component(t, "worker")
	worker := startWorker(ctx, t, wk, names, topology, simSrv.URL, logger)

	// A caller with a durable consumer of its own on the event stream.
	caller := ps.component(t, "caller")
	evs := followEvents(ctx, t, caller, names)
	evs.refused = ps.refused

	var groupID string
	t.Run("a command published by a caller completes through the webhook", func(t *testing.T) {
		cmd := createGroup("deploytest-nats-1", "Published by a caller")
		b, _ := json.Marshal(cmd)
		msg := &nats.Msg{Subject: names.Command(cmd.PhoneNumberID, cmd.Type), Data: b, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, cmd.ID)
		if _, err := caller.js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("caller: publish command: %v", err)
		}
		end := evs.terminal(ctx, t, cmd.ID)
		if end.typ != events.EventCommandSucceeded {
			t.Fatalf("command %s ended with %s %s, want %s", cmd.ID, end.typ, end.data, events.EventCommandSucceeded)
		}
		var res struct {
			Result events.CreateGroupResult `json:"result"`
		}
		if err := json.Unmarshal(end.data, &res); err != nil || res.Result.GroupID == "" {
			t.Fatalf("terminal event data %s: no group id (%v)", end.data, err)
		}
		groupID = res.Result.GroupID
	})

	t.Run("a caller's roll-up is refused by the command stream", func(t *testing.T) {
		msg := &nats.Msg{Subject: names.Command(testPhone, events.GetInviteLink), Header: nats.Header{}}
		msg.Header.Set("Nats-Rollup", "all")
		if _, err := caller.js.PublishMsg(ctx, msg); err == nil || !strings.Contains(err.Error(), "rollup not permitted") {
			t.Fatalf("caller: publish with Nats-Rollup: all: %v, want it refused as a roll-up", err)
		}
	})

	t.Run("a worker parks a command", func(t *testing.T) {
		msg := &nats.Msg{Subject: names.Parked(testPhone, events.GetInviteLink, 1), Data: []byte(`{}`), Header: nats.Header{}}
		msg.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		msg.Header.Set("Nats-Schedule-Target", names.Due(testPhone, events.GetInviteLink))
		if _, err := wk.js.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("worker: park a command: %v", err)
		}
	})

	t.Run("groupctl submits and waits as a caller, who may not read the ledger", func(t *testing.T) {
		// The README's way for a user other than admin: its inbox prefix.
		// --timeout is long so that a request left unanswered (the ledger
		// the server refuses) would hang the run, not just slow it.
		groupctl := func(args ...string) (string, error) {
			rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
			defer cancel()
			cmd := exec.CommandContext(rctx, binary(t, "groupctl"), append([]string{"--timeout", "1m"}, args...)...)
			cmd.Env = append(os.Environ(), "NATS_URL="+ps.url, "NATS_USER=caller",
				"NATS_PASSWORD="+ps.passwords["caller"], "NATS_INBOX_PREFIX="+ps.inbox["caller"])
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		submit := []string{"submit", "create_group", "--phone", testPhone, "--id", "deploytest-groupctl-1",
			"--subject", "Submitted with groupctl", "--wait"}
		out, err := groupctl(submit...)
		if err != nil || !strings.Contains(out, "command.succeeded") {
			t.Fatalf("groupctl %s as the caller: %v\n%s\nwant its command.succeeded", strings.Join(submit, " "), err, out)
		}
		// Sent again once done: the worker re-publishes the stored result,
		// which the stream's duplicate window drops.
		out, err = groupctl(submit...)
		if err != nil || !strings.Contains(out, "command.succeeded") {
			t.Fatalf("groupctl %s again as the caller: %v\n%s\nwant the stored command.succeeded", strings.Join(submit, " "), err, out)
		}
		// The ledger is the operators': the caller is told so, and where
		// to look instead.
		out, err = groupctl("status", "deploytest-groupctl-1")
		if err == nil || !strings.Contains(out, "may not read the ledger") || !strings.Contains(out, "groupctl events --command deploytest-groupctl-1") {
			t.Fatalf("groupctl status as the caller: %v\n%s\nwant a failure saying it may not read the ledger, and where its events are", err, out)
		}
	})

	t.Run("a caller asks the workers' query service", func(t *testing.T) {
		if groupID == "" {
			t.Skip("no group was created")
		}
		for _, q := range []struct {
			name string
			req  any
			want string
		}{
			{events.QueryCommandStatus, query.CommandStatusRequest{CommandID: "deploytest-nats-1"}, `"deploytest-nats-1"`},
			{events.QueryGroupInfo, query.GroupInfoRequest{GroupID: groupID}, "Published by a caller"},
			{events.QueryGroupInfo, query.GroupInfoRequest{GroupID: groupID}, "Published by a caller"}, // from the cache
		} {
			b, _ := json.Marshal(q.req)
			reply, err := caller.nc.RequestWithContext(ctx, names.Query(testPhone, q.name), b)
			if err != nil {
				t.Fatalf("caller: query %s: %v", q.name, err)
			}
			if e := query.ReplyError(reply); e != nil || !strings.Contains(string(reply.Data), q.want) {
				t.Fatalf("query %s answered %s (error %v), want %s in it", q.name, reply.Data, e, q.want)
			}
		}
	})

	t.Run("an operator discovers the query service", func(t *testing.T) {
		admin := ps.connect(t, "admin")
		reply, err := admin.nc.RequestWithContext(ctx, "$SRV.INFO."+query.ServiceName, nil)
		if err != nil {
			t.Fatalf("admin: $SRV.INFO.%s: %v", query.ServiceName, err)
		}
		if !strings.Contains(string(reply.Data), names.Query("*", events.QueryGroupInfo)) {
			t.Fatalf("service info %s does not list the group_info endpoint", reply.Data)
		}
	})

	t.Run("a command posted to the ingest completes and its status is read from the ledger", func(t *testing.T) {
		cmd := createGroup("deploytest-http-1", "Posted to the ingest")
		b, _ := json.Marshal(cmd)
		status, body := httpDo(ctx, t, http.MethodPost, ingestSrv.URL+"/v1/commands", apiToken, b)
		if status != http.StatusAccepted {
			t.Fatalf("POST /v1/commands = %d %s, want 202", status, body)
		}
		if end := evs.terminal(ctx, t, cmd.ID); end.typ != events.EventCommandSucceeded {
			t.Fatalf("command %s ended with %s %s, want %s", cmd.ID, end.typ, end.data, events.EventCommandSucceeded)
		}
		status, body = httpDo(ctx, t, http.MethodGet, ingestSrv.URL+"/v1/commands/"+cmd.ID, apiToken, nil)
		if status != http.StatusOK || !strings.Contains(body, cmd.ID) {
			t.Fatalf("GET /v1/commands/%s = %d %s, want 200 with the command's status", cmd.ID, status, body)
		}
		status, body = httpDo(ctx, t, http.MethodGet, ingestSrv.URL+"/readyz", "", nil)
		if status != http.StatusOK {
			t.Fatalf("GET /readyz = %d %s, want 200", status, body)
		}
	})

	t.Run("a command whose every delivery fails is dead-lettered", func(t *testing.T) {
		if groupID == "" {
			t.Skip("no group was created")
		}
		if err := simulator.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGetInviteLink}, Code2: 1}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = simulator.SetFaults(sim.Faults{}) })
		// The number's own group: another is refused before any call.
		cmd := events.Command{ID: "deploytest-dlq-1", Type: events.GetInviteLink, PhoneNumberID: testPhone, GroupID: groupID}
		b, _ := json.Marshal(cmd)
		if _, err := caller.js.Publish(ctx, names.Command(cmd.PhoneNumberID, cmd.Type), b, jetstream.WithMsgID(cmd.ID)); err != nil {
			t.Fatalf("caller: publish command: %v", err)
		}
		if end := evs.terminal(ctx, t, cmd.ID); end.typ != events.EventCommandFailed {
			t.Fatalf("command %s ended with %s %s, want %s", cmd.ID, end.typ, end.data, events.EventCommandFailed)
		}
		admin := ps.connect(t, "admin")
		dlq, err := admin.js.Stream(ctx, names.DLQStream())
		if err != nil {
			t.Fatalf("admin: open %s: %v", names.DLQStream(), err)
		}
		if n := dlq.CachedInfo().State.Msgs; n != 1 {
			t.Fatalf("%s holds %d messages, want the one dead letter", names.DLQStream(), n)
		}
	})

	t.Run("the sweeper lists the ledger", func(t *testing.T) {
		if _, err := worker.SweepOnce(ctx); err != nil {
			t.Fatalf("worker: sweep: %v", err)
		}
	})

	t.Run("a campaign over an invite list the caller uploaded fans out into invites", func(t *testing.T) {
		if groupID == "" {
			t.Skip("no group was created")
		}
		tpl := events.TemplateRef{Name: "deploytest_invite", Language: "en"}
		submit(ctx, t, caller, names, "deploytest-tpl-1", events.EnsureInviteTemplate, "",
			events.EnsureInviteTemplateParams{WABAID: sim.DefaultWABAID, Name: tpl.Name, Language: tpl.Language})
		if end := evs.terminal(ctx, t, "deploytest-tpl-1"); end.typ != events.EventCommandSucceeded {
			t.Fatalf("ensure_invite_template ended with %s %s", end.typ, end.data)
		}

		store, err := caller.js.ObjectStore(ctx, names.CampaignListStore())
		if err != nil {
			t.Fatalf("caller: open the object store: %v", err)
		}
		list := fmt.Sprintf("{\"to\":\"15550000001\",\"group_id\":%q}\n{\"to\":\"15550000002\",\"group_id\":%q}\n", groupID, groupID)
		for range 2 { // the second upload replaces the first
			if _, err := store.PutString(ctx, "deploytest-campaign.ndjson", list); err != nil {
				t.Fatalf("caller: upload the invite list: %v", err)
			}
		}
		const campaignID = "deploytest-campaign"
		submit(ctx, t, caller, names, "deploytest-campaign-start", events.StartInviteCampaign, "", events.StartInviteCampaignParams{
			CampaignID: campaignID, Template: tpl,
			InvitesObject: &events.ObjectRef{Bucket: names.CampaignListStore(), Name: "deploytest-campaign.ndjson"},
		})
		done := evs.wait(ctx, t, "campaign.completed", func(e feedEvent) bool {
			return e.typ == events.EventCampaignCompleted && strings.Contains(string(e.data), campaignID)
		})
		var c events.CampaignCompleted
		if err := json.Unmarshal(done.data, &c); err != nil {
			t.Fatal(err)
		}
		if c.Counts.Total != 2 || c.Counts.Sent != 2 {
			t.Fatalf("campaign counts %+v, want both invites sent", c.Counts)
		}
	})

	// Everything above is the normal work of each component: none of it
	// may have needed a permission the file does not give.
	for _, c := range []*client{in, wk, caller} {
		c.allowedOnly(t)
	}

	t.Run("the worker's replies, ledger reads among them, come back under its own inbox prefix", func(t *testing.T) {
		if err := tap.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if n, reads := workerReplies.Load(), workerLedgerReads.Load(); n == 0 || reads == 0 {
			t.Fatalf("%d replies, %d of them ledger reads, under %s.>; want both > 0", n, reads, inboxOf("worker"))
		}
	})

	t.Run("a caller that keeps the default _INBOX gets no reply", func(t *testing.T) {
		bare := ps.connectAs(t, "caller", "", false)
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		b, _ := json.Marshal(query.CommandStatusRequest{CommandID: "deploytest-nats-1"})
		if _, err := bare.nc.RequestWithContext(rctx, names.Query(testPhone, events.QueryCommandStatus), b); err == nil {
			t.Fatal("a query was answered on _INBOX, which the caller user may not subscribe to")
		}
		v := bare.refusedWhere(t, "a subscription under _INBOX.", func(v string) bool {
			return strings.Contains(v, `Subscription to "_INBOX.`)
		})
		t.Logf("server: %s", v)
	})

	t.Run("each component is refused outside its rights", func(t *testing.T) {
		for _, tc := range []struct {
			user, op, subject, why string
		}{
			{"ingest", "pub", "groups.event.1.command.succeeded", "forge an event"},
			{"ingest", "pub", "groups.dlq.1.create_group", "forge a dead letter"},
			{"ingest", "pub", "$KV.groups_ledger.c_x", "write the ledger"},
			{"ingest", "pub", "$JS.API.STREAM.PURGE.GROUPS_COMMANDS", "purge the commands"},
			{"ingest", "pub", "$JS.API.CONSUMER.MSG.NEXT.GROUPS_COMMANDS.worker-commands", "take commands"},
			{"ingest", "sub", "groups.cmd.>", "read commands"},
			{"worker", "pub", "groups.webhook.1.group_lifecycle_update", "forge a webhook"},
			{"worker", "pub", "$JS.API.STREAM.DELETE.GROUPS_EVENTS", "delete the event stream"},
			{"worker", "pub", "$JS.API.STREAM.PURGE.GROUPS_DLQ", "purge the dead letters"},
			{"worker", "pub", "$O.groups_campaign_lists.C.x", "write invite lists"},
			{"caller", "pub", "groups.webhook.1.group_lifecycle_update", "forge a webhook"},
			{"caller", "pub", "groups.event.1.command.succeeded", "forge an event"},
			{"caller", "pub", "groups.dlq.1.create_group", "forge a dead letter"},
			{"caller", "pub", "$KV.groups_ledger.c_x", "write the ledger"},
			{"caller", "pub", "$JS.API.STREAM.INFO.KV_groups_ledger", "open the ledger"},
			{"caller", "pub", "$JS.API.DIRECT.GET.KV_groups_ledger.$KV.groups_ledger.c_x", "read the ledger"},
			{"caller", "pub", "$JS.API.CONSUMER.MSG.NEXT.GROUPS_COMMANDS.worker-commands", "take commands"},
			{"caller", "pub", "$JS.API.STREAM.PURGE.GROUPS_COMMANDS", "purge the commands"},
			{"caller", "pub", "$JS.API.STREAM.CREATE.EVIL", "create a stream"},
			// Parked copies: roll-ups are on in their stream (its schedules
			// need them), so only workers may publish there.
			{"caller", "pub", "groups.park.1.get_invite_link.1", "park a command"},
			{"caller", "pub", "groups.due.1.get_invite_link", "make a parked command due"},
			{"ingest", "pub", "groups.park.1.get_invite_link.1", "park a command"},
			{"ingest", "pub", "groups.due.1.get_invite_link", "make a parked command due"},
			{"caller", "sub", "groups.webhook.>", "read webhooks"},
			{"caller", "sub", "groups.cmd.>", "read other callers' commands"},
			{"caller", "sub", "_INBOX_worker.>", "read the worker's replies (ledger reads, acks)"},
			{"caller", "sub", "_INBOX_ingest.>", "read the ingest's replies"},
			{"caller", "sub", "_INBOX.>", "read replies under the default inbox"},
			{"ingest", "sub", "_INBOX_worker.>", "read the worker's replies"},
			{"ingest", "sub", "_INBOX.>", "read replies under the default inbox"},
			{"worker", "sub", "_INBOX_caller.>", "read a caller's replies"},
			{"worker", "sub", "_INBOX.>", "read replies under the default inbox"},
		} {
			t.Run(tc.user+" cannot "+tc.why, func(t *testing.T) {
				c := ps.connect(t, tc.user)
				var err error
				if tc.op == "sub" {
					_, err = c.nc.SubscribeSync(tc.subject)
				} else {
					// A request, so a denied API call is refused, not answered.
					err = c.nc.PublishRequest(tc.subject, c.nc.NewInbox(), []byte("{}"))
				}
				if err != nil {
					t.Fatalf("%s %s: %v", tc.op, tc.subject, err)
				}
				if err := c.nc.Flush(); err != nil {
					t.Fatal(err)
				}
				if tc.op == "sub" {
					t.Logf("server: %s", c.refused(t, tc.subject))
				} else {
					c.refused(t, tc.subject)
				}
			})
		}
	})
}

// submit publishes a command as c, the way callers do.
func submit(ctx context.Context, t *testing.T, c *client, names events.Names, id, typ, group string, params any) {
	t.Helper()
	p, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(events.Command{ID: id, Type: typ, PhoneNumberID: testPhone, GroupID: group, Params: p})
	if _, err := c.js.Publish(ctx, names.Command(testPhone, typ), b, jetstream.WithMsgID(id)); err != nil {
		t.Fatalf("%s: publish %s: %v", c.user, typ, err)
	}
}

func createGroup(id, subject string) events.Command {
	p, _ := json.Marshal(events.CreateGroupParams{Subject: subject})
	return events.Command{ID: id, Type: events.CreateGroup, PhoneNumberID: testPhone, Params: p}
}

func httpDo(ctx context.Context, t *testing.T, method, url, token string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startWorker wires a worker as cmd/worker does and runs it until the test ends.
func startWorker(ctx context.Context, t *testing.T, c *client, names events.Names, topology events.TopologyConfig, graphURL string, logger *slog.Logger) *jobs.Worker {
	t.Helper()
	if err := events.Ensure(ctx, c.js, topology); err != nil {
		t.Fatalf("worker: ensure topology: %v", err)
	}
	workersKV, err := c.js.KeyValue(ctx, names.WorkersBucket())
	if err != nil {
		t.Fatalf("worker: open %s: %v", names.WorkersBucket(), err)
	}
	throttleKV, err := c.js.KeyValue(ctx, names.ThrottleBucket())
	if err != nil {
		t.Fatalf("worker: open %s: %v", names.ThrottleBucket(), err)
	}
	gc, err := graph.New(graph.Config{BaseURL: graphURL, AccessToken: sim.DefaultAccessToken, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	workerID := jobs.NewWorkerID()
	limiter, err := ratelimit.New(ratelimit.Config{Workers: workersKV, Throttle: throttleKV, WorkerID: workerID, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	w, err := jobs.New(ctx, jobs.Config{JS: c.js, Names: names, Graph: gc, Limiter: limiter, WorkerID: workerID,
		Concurrency: 4, WebhookTimeout: time.Minute, ShutdownTimeout: 2 * time.Second, Logger: logger,
		RetryMaxElapsed: time.Millisecond, NakDelay: func(uint64) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatalf("worker: %v", err)
	}
	// The read service every worker process answers queries with.
	qs, err := query.New(query.Config{Conn: c.nc, JS: c.js, Names: names, Graph: gc, Limiter: limiter,
		Ledger: w.Ledger(), Logger: logger})
	if err != nil {
		t.Fatalf("worker: query service: %v", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- w.Run(runCtx) })
	wg.Go(func() { errs <- limiter.Run(runCtx) })
	wg.Go(func() { errs <- qs.Run(runCtx, 2*time.Second) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil && !strings.Contains(err.Error(), context.Canceled.Error()) {
				t.Errorf("worker stopped with: %v", err)
			}
		}
	})
	return w
}

// eventFeed is what a caller reads from its own durable consumer.
type eventFeed struct {
	refused *refusal
	mu      sync.Mutex
	all     []feedEvent
	wake    chan struct{}
}

type feedEvent struct {
	typ, commandID string
	data           []byte
}

func followEvents(ctx context.Context, t *testing.T, c *client, names events.Names) *eventFeed {
	t.Helper()
	cons, err := c.js.CreateOrUpdateConsumer(ctx, names.EventStream(), jetstream.ConsumerConfig{
		Durable: "deploytest-caller", FilterSubject: names.AllEvents(), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("caller: create its event consumer: %v", err)
	}
	f := &eventFeed{wake: make(chan struct{})}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Unmarshal(m.Data())
		if err != nil {
			t.Errorf("event on %s: %v", m.Subject(), err)
			_ = m.Term()
			return
		}
		id, _ := ev.Extensions()["commandid"].(string)
		f.mu.Lock()
		f.all = append(f.all, feedEvent{typ: ev.Type(), commandID: id, data: ev.Data()})
		close(f.wake)
		f.wake = make(chan struct{})
		f.mu.Unlock()
		if err := m.Ack(); err != nil {
			t.Errorf("caller: ack event: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("caller: consume events: %v", err)
	}
	t.Cleanup(cc.Stop)
	return f
}

// wait returns the first event for which match is true, waiting for it
// (up to 30 s, or until a component is refused a permission).
func (f *eventFeed) wait(ctx context.Context, t *testing.T, what string, match func(feedEvent) bool) feedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		f.mu.Lock()
		wake := f.wake
		for _, e := range f.all {
			if match(e) {
				f.mu.Unlock()
				return e
			}
		}
		f.mu.Unlock()
		select {
		case <-wake:
		case <-f.refused.ch:
			t.Fatalf("no %s: %s", what, f.refused.msg)
		case <-ctx.Done():
			t.Fatalf("no %s: %v", what, ctx.Err())
		}
	}
}

// terminal waits for the terminal event of command id.
func (f *eventFeed) terminal(ctx context.Context, t *testing.T, id string) feedEvent {
	t.Helper()
	return f.wait(ctx, t, "terminal event for command "+id, func(e feedEvent) bool {
		return e.commandID == id && events.IsTerminal(e.typ)
	})
}
