package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/query"
)

// startReads runs a query service wired as cmd/worker wires it (its own
// connection, a limiter of its own for the reads, the stack's ledger)
// until the test ends or stop is called.
func (s *stack) startReads(t testing.TB) (stop func()) {
	t.Helper()
	ctx := context.Background()
	nc, err := nats.Connect(s.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := graph.New(graph.Config{BaseURL: s.simURL, AccessToken: s.opts.secrets.AccessToken, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	workersKV, err := js.KeyValue(ctx, s.names.WorkersBucket())
	if err != nil {
		t.Fatal(err)
	}
	throttleKV, err := js.KeyValue(ctx, s.names.ThrottleBucket())
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.New(ratelimit.Config{Workers: workersKV, Throttle: throttleKV, Logger: s.log,
		Defaults: ratelimit.Limits{Reads: 1000}, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	limCtx, limCancel := context.WithCancel(ctx)
	limDone := make(chan struct{})
	go func() { defer close(limDone); _ = lim.Run(limCtx) }()
	svc, err := query.New(query.Config{Conn: nc, JS: js, Names: s.names, Graph: gc, Limiter: lim, Ledger: s.ledger, Logger: s.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatalf("start query service: %v", err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		if err := svc.Stop(ctx); err != nil {
			t.Errorf("stop query service: %v", err)
		}
		limCancel()
		<-limDone
		nc.Close()
	}
	t.Cleanup(stop)
	return stop
}

// ask sends a query on the stack's connection and decodes its reply into
// v; it returns the reply's cache header.
func (s *stack) ask(t testing.TB, name string, req, v any) string {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var msg *nats.Msg
	deadline := time.Now().Add(15 * time.Second)
	for {
		// A service just started may not have its share of the read
		// rate yet: 429 until it does.
		msg, err = s.nc.Request(s.names.Query(phone, name), data, 10*time.Second)
		if err != nil {
			t.Fatalf("query %s: %v", name, err)
		}
		qe := query.ReplyError(msg)
		if qe == nil {
			break
		}
		if qe.Code != query.CodeThrottled || time.Now().After(deadline) {
			t.Fatalf("query %s: %d %s", name, qe.Code, qe.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		t.Fatalf("query %s: reply %s: %v", name, msg.Data, err)
	}
	return msg.Header.Get(query.CacheHeader)
}

// createGroup creates a group through the stack and returns its id.
func (s *stack) createGroup(t testing.TB, id, subject string) string {
	t.Helper()
	if code, body := s.post(t, command(id, events.CreateGroup, "", events.CreateGroupParams{Subject: subject}), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST create_group = %d %s", code, body)
	}
	_, r := s.events.Terminal(t, id)
	if r.Outcome != events.OutcomeSucceeded || r.GroupID == "" {
		t.Fatalf("create_group: %q %+v", r.Outcome, r.Error)
	}
	return r.GroupID
}

// A cached answer is stale from the moment the event announcing the
// change is out, even when no query service was running to see the
// event (a worker restarting, or every query service between deploys):
// the worker makes it stale before it publishes.
func TestAReadAfterCommandSucceededIsFreshWhenNoQueryServiceSawTheEvent(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	group := s.createGroup(t, "fresh-create", "Fresh")
	stopReads := s.startReads(t)
	var old query.InviteLinkReply
	s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &old)
	if h := s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &old); h != "hit" {
		t.Fatalf("second invite_link: cache %q, want hit (the answer is cached)", h)
	}
	stopReads()

	if code, body := s.post(t, command("fresh-reset", events.ResetInviteLink, group, nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST reset_invite_link = %d %s", code, body)
	}
	_, r := s.events.Terminal(t, "fresh-reset")
	var res events.InviteLinkResult
	if r.Outcome != events.OutcomeSucceeded || json.Unmarshal(r.Result, &res) != nil || res.InviteLink == old.InviteLink {
		t.Fatalf("reset_invite_link: %q %s (old link %q)", r.Outcome, r.Result, old.InviteLink)
	}

	s.startReads(t)
	var got query.InviteLinkReply
	h := s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &got)
	if got.InviteLink != res.InviteLink {
		t.Errorf("invite_link after command.succeeded of reset_invite_link = %q (cache %s), want the new link %q", got.InviteLink, h, res.InviteLink)
	}
}

// The same for a domain event: a join arrives as a webhook, and the
// group.participants_joined it becomes is out only after the group's
// cached answers are stale.
func TestAReadAfterParticipantsJoinedIsFreshWhenNoQueryServiceSawTheEvent(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	group := s.createGroup(t, "joined-create", "Joined")
	stopReads := s.startReads(t)
	var before query.GroupInfoReply
	s.ask(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: group}, &before)
	stopReads()

	g, ok := s.sim.Group(group)
	if !ok {
		t.Fatalf("group %s not in the simulator", group)
	}
	const newcomer = "16505550301"
	if _, err := s.sim.Join(newcomer, g.InviteLink); err != nil {
		t.Fatalf("join: %v", err)
	}
	s.events.WaitFor(t, "group.participants_joined", func() bool {
		return len(s.events.OfType(events.EventGroupParticipantsJoined)) > 0
	})

	s.startReads(t)
	var got query.GroupInfoReply
	h := s.ask(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: group}, &got)
	if len(got.Participants) != len(before.Participants)+1 {
		t.Errorf("group_info after group.participants_joined: %d participants (cache %s), want %d", len(got.Participants), h, len(before.Participants)+1)
	}
}

// What the reviewer saw: a caller that reads as soon as it receives
// command.succeeded raced the query service's own invalidation and could
// get the old answer. The reads here happen in the event's handler, each
// time, with the query service running as it does in production.
func TestAReadInTheHandlerOfCommandSucceededNeverAnswersTheOldLink(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	group := s.createGroup(t, "race-create", "Race")
	s.startReads(t)

	type seen struct{ want, got, cache string }
	results := make(chan seen, 1)
	sub, err := s.nc.Subscribe(s.names.Event(phone, events.EventCommandSucceeded), func(m *nats.Msg) {
		ev, err := events.Unmarshal(m.Data)
		if err != nil {
			t.Errorf("event: %v", err)
			return
		}
		var r events.CommandResult
		var res events.InviteLinkResult
		if json.Unmarshal(ev.Data(), &r) != nil || r.CommandType != events.ResetInviteLink || json.Unmarshal(r.Result, &res) != nil {
			return
		}
		var got query.InviteLinkReply
		h := s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &got)
		results <- seen{res.InviteLink, got.InviteLink, h}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	const rounds = 20
	stale := 0
	for i := range rounds {
		var cached query.InviteLinkReply
		s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &cached) // cache the current link
		id := "race-reset-" + string(rune('a'+i))
		if code, body := s.post(t, command(id, events.ResetInviteLink, group, nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %s", id, code, body)
		}
		select {
		case r := <-results:
			if r.got != r.want {
				stale++
				t.Logf("round %d: read %q (cache %s) in the handler of command.succeeded announcing %q", i, r.got, r.cache, r.want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: no command.succeeded of %s", i, id)
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d reads made on command.succeeded answered the link it replaced", stale, rounds)
	}
}

// What keeping reads fresh costs: one write to the reads bucket for a
// command that changes a group, none for a read.
func TestAChangeCostsOneCacheWriteAndAReadNone(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	var group string
	writes := func() uint64 {
		t.Helper()
		st, err := s.js.Stream(context.Background(), "KV_"+s.names.ReadsBucket())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	// A command's writes are all made once the worker has acknowledged
	// it and the webhook items it brought: the create's webhook item can
	// still be at work after the command's terminal event is out.
	run := func(id, typ string) {
		t.Helper()
		if code, body := s.post(t, command(id, typ, group, nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
			t.Fatalf("POST %s = %d %s", typ, code, body)
		}
		if _, r := s.events.Terminal(t, id); r.Outcome != events.OutcomeSucceeded {
			t.Fatalf("%s: %q %+v", typ, r.Outcome, r.Error)
		}
		s.awaitSettled(t)
	}
	before := writes()
	group = s.createGroup(t, "cost-create", "Cost")
	s.awaitSettled(t)
	if n := writes() - before; n != 4 {
		t.Errorf("create_group and its webhook wrote %d times to the reads bucket, want 4: the group and the number's list, before group.created and before command.succeeded", n)
	}
	before = writes()
	run("cost-get", events.GetInviteLink)
	if n := writes() - before; n != 0 {
		t.Errorf("get_invite_link wrote %d times to the reads bucket, want 0", n)
	}
	before = writes()
	run("cost-reset", events.ResetInviteLink)
	if n := writes() - before; n != 1 {
		t.Errorf("reset_invite_link wrote %d times to the reads bucket, want 1", n)
	}
}

// A failed invalidation holds the event back, never loses it: the
// command's redelivery invalidates and publishes once the reads bucket
// answers again.
func TestAFailedInvalidationDelaysTheEventAndLosesNothing(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, workerOpts{})
	group := s.createGroup(t, "outage-create", "Outage")
	ctx := context.Background()
	if err := s.js.DeleteKeyValue(ctx, s.names.ReadsBucket()); err != nil {
		t.Fatal(err)
	}
	if code, body := s.post(t, command("outage-reset", events.ResetInviteLink, group, nil), s.opts.secrets.APIToken); code != http.StatusAccepted {
		t.Fatalf("POST reset_invite_link = %d %s", code, body)
	}
	s.awaitState(t, "outage-reset", jobs.StateSucceeded)
	s.events.WaitFor(t, "the failed invalidation logged", func() bool {
		return strings.Contains(s.logs.String(), "invalidate cached reads of group")
	})
	if n := len(s.events.Terminals("outage-reset")); n != 0 {
		t.Fatalf("%d terminal events published while the invalidation failed, want none yet", n)
	}

	if err := events.Ensure(ctx, s.js, events.TopologyConfig{Names: s.names, AckWait: 5 * time.Second, MaxDeliver: s.opts.maxDeliver,
		Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("ensure topology: %v", err)
	}
	_, r := s.events.Terminal(t, "outage-reset")
	var res events.InviteLinkResult
	if r.Outcome != events.OutcomeSucceeded || json.Unmarshal(r.Result, &res) != nil || res.InviteLink == "" {
		t.Fatalf("reset_invite_link after the outage: %q %s", r.Outcome, r.Result)
	}
	s.startReads(t)
	var got query.InviteLinkReply
	if s.ask(t, events.QueryInviteLink, query.InviteLinkRequest{GroupID: group}, &got); got.InviteLink != res.InviteLink {
		t.Errorf("invite_link = %q, want the new link %q", got.InviteLink, res.InviteLink)
	}
	if n := len(s.events.Terminals("outage-reset")); n != 1 {
		t.Errorf("%d terminal events of outage-reset, want 1", n)
	}
}
