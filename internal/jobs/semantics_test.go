package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	"github.com/groupflow/groupflow/internal/testutil"
)

// corePublishes counts every publish on subject as core NATS subscribers
// see it: unlike the stream, it shows re-publishes that the stream's
// duplicate window then drops.
func corePublishes(t testing.TB, nc *nats.Conn, subject string) func() []*nats.Msg {
	t.Helper()
	var mu sync.Mutex
	var got []*nats.Msg
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func() []*nats.Msg {
		mu.Lock()
		defer mu.Unlock()
		return append([]*nats.Msg(nil), got...)
	}
}

func TestSameIDExecutesOnceAndLateDuplicatesRepublishTheResult(t *testing.T) {
	t.Parallel()
	s := setup(t)
	published := corePublishes(t, s.nc, s.names.Event(phone, events.EventCommandSucceeded))
	s.startWorker(t)

	c := command("dup-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Once only"})
	body, _ := json.Marshal(c)
	subject := s.names.Command(phone, events.CreateGroup)
	// Three sends with different Nats-Msg-Ids, as from a caller retrying
	// outside the duplicate window: only the ledger can tell they are one.
	for i := range 3 {
		s.publishRaw(t, subject, fmt.Sprintf("dup-1#%d", i), body)
	}
	r := s.terminal(t, "dup-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	// Duplicates that came while the command ran are acked (awaiting its
	// webhook) or answered from the ledger once it is done.
	s.waitCommandsConsumed(t)
	before := len(published())

	s.publishRaw(t, subject, "dup-1#late", body)
	s.events.WaitFor(t, "the late duplicate's re-published result", func() bool { return len(published()) > before })

	if n := s.calls(sim.EndpointCreateGroup); n != 1 {
		t.Fatalf("%d create calls for one command id sent 4 times, want 1", n)
	}
	if n := s.groupsWithSubject("Once only"); n != 1 {
		t.Fatalf("%d groups, want 1", n)
	}
	if n := len(s.events.Terminals("dup-1")); n != 1 {
		t.Fatalf("%d terminal events in the stream, want 1", n)
	}
	msgs := published()
	first, last := msgs[0], msgs[len(msgs)-1]
	if string(first.Data) != string(last.Data) || last.Header.Get(jetstream.MsgIDHeader) != events.TerminalEventID("dup-1", "") {
		t.Fatalf("late re-publish differs from the result:\nfirst %s\nlast  %s (msg id %q)", first.Data, last.Data, last.Header.Get(jetstream.MsgIDHeader))
	}
}

// hangAfterCreate is an HTTP transport that makes create_group calls for
// real, then holds their answer until the request's context ends: the call
// took effect, but the client sees its request written and no answer, as
// with a worker stopped mid-call.
type hangAfterCreate struct {
	base   http.RoundTripper
	called chan struct{}
	once   sync.Once
}

func (h *hangAfterCreate) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/groups") {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	h.once.Do(func() { close(h.called) })
	<-req.Context().Done()
	return nil, req.Context().Err()
}

func TestWorkerStoppedMidCallNeverCreatesTwoGroups(t *testing.T) {
	t.Parallel()
	s := setup(t)
	hang := &hangAfterCreate{base: http.DefaultTransport, called: make(chan struct{})}
	gc, err := graph.New(graph.Config{BaseURL: s.simURL, AccessToken: sim.DefaultAccessToken, Timeout: time.Minute,
		HTTPClient: &http.Client{Transport: hang}})
	if err != nil {
		t.Fatal(err)
	}
	_, stopA := s.startWorker(t, func(c *jobs.Config) {
		c.Graph, c.ShutdownTimeout, c.WorkerID = gc, 100*time.Millisecond, "worker-a"
	})
	s.publish(t, command("mid-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Exactly one"}))
	select {
	case <-hang.called:
	case <-time.After(10 * time.Second):
		t.Fatal("worker A never called create")
	}
	stopA() // SIGTERM mid-call: the call cannot finish within the bound
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID = "worker-b" })

	r := s.terminal(t, "mid-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	if n := s.groupsWithSubject("Exactly one"); n != 1 {
		t.Fatalf("%d groups with the subject, want 1", n)
	}
	if n := s.calls(sim.EndpointCreateGroup); n != 1 {
		t.Fatalf("%d create calls, want 1", n)
	}
	if g, ok := s.sim.Group(r.GroupID); !ok || g.Subject != "Exactly one" {
		t.Fatalf("result names group %q (%+v), want the one created", r.GroupID, g)
	}
}

// A create whose call timed out without effect looks for the group it may
// have made. Another create_group of the same subject, made meanwhile,
// created one: that group is the other command's, not to be adopted. With
// a slow webhook, B's group is not claimed yet when A reconciles, and A
// must wait for B rather than take it.
func TestAnAmbiguousCreateDoesNotAdoptAnotherCommandsGroup(t *testing.T) {
	t.Parallel()
	for name, hookDelay := range map[string]time.Duration{"prompt webhooks": 0, "webhooks 4 s late": 4 * time.Second} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, func(o *stackOpts) {
				o.sim.Faults = sim.Faults{Timeout: 1, Limit: 1, Endpoints: []string{sim.EndpointCreateGroup}, WebhookExtraDelay: hookDelay}
			})
			s.startWorker(t, func(c *jobs.Config) { c.ReconcileGrace = 300 * time.Millisecond })
			s.publish(t, command("create-a", events.CreateGroup, "", events.CreateGroupParams{Subject: "Order support"}))
			s.waitForCall(t, sim.EndpointCreateGroup) // A's call hangs until the client gives up
			s.publish(t, command("create-b", events.CreateGroup, "", events.CreateGroupParams{Subject: "Order support"}))
			rb := s.terminalWithin(t, "create-b", 20*time.Second)
			ra := s.terminalWithin(t, "create-a", 30*time.Second)
			wantOutcome(t, ra, events.OutcomeSucceeded)
			wantOutcome(t, rb, events.OutcomeSucceeded)
			if ra.GroupID == rb.GroupID {
				t.Fatalf("both commands report group %s", ra.GroupID)
			}
			if n := s.groupsWithSubject("Order support"); n != 2 {
				t.Fatalf("%d groups with the subject, want 2", n)
			}
			if n := s.calls(sim.EndpointCreateGroup); n != 3 {
				t.Fatalf("%d create calls, want 3: A's without effect, B's, A's again", n)
			}
		})
	}
}

// slowAnswerGraph returns create's answer only once the group_create
// webhook has been stored as early (no command linked yet).
type slowAnswerGraph struct {
	jobs.Graph
	corr jetstream.KeyValue
}

func (g *slowAnswerGraph) CreateGroup(ctx context.Context, phoneID string, req graph.CreateGroupRequest) (graph.CreateGroupResponse, error) {
	resp, err := g.Graph.CreateGroup(ctx, phoneID, req)
	if err != nil {
		return resp, err
	}
	for {
		if keys, _ := g.corr.Keys(ctx); len(keys) > 0 {
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return resp, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestWebhookBeforeResponse(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, func(c *jobs.Config) {
		c.Graph = &slowAnswerGraph{Graph: s.graph, corr: s.kv(t, s.names.CorrelationBucket())}
	})
	s.publish(t, command("early-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Early bird"}))
	r := s.terminal(t, "early-1")
	wantOutcome(t, r, events.OutcomeSucceeded)
	var res events.CreateGroupResult
	_ = json.Unmarshal(r.Result, &res)
	if res.GroupID == "" || res.InviteLink == "" {
		t.Fatalf("result %s, want the group from the early webhook", r.Result)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(s.events.Terminals("early-1")); n != 1 {
		t.Fatalf("%d terminal events, want 1", n)
	}
}

func TestInvalidCommandsAreRejectedAndTheWorkerGoesOn(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	subject := s.names.Command(phone, events.CreateGroup)
	s.publishRaw(t, subject, "", []byte(`not json`))
	s.publishRaw(t, subject, "", []byte(`{"id":"bad-1","type":"create_group","phone_number_id":"`+phone+`","params":{}}`))
	s.publishRaw(t, s.names.Command(phone, events.DeleteGroup), "", []byte(`{"id":"bad-2","type":"create_group","phone_number_id":"`+phone+`","params":{"subject":"x"}}`))
	s.publish(t, command("good-1", events.GetInviteLink, s.newGroup(t, "Still working", "").ID, nil))

	wantOutcome(t, s.terminal(t, "good-1"), events.OutcomeSucceeded)
	for _, id := range []string{"bad-1", "bad-2"} {
		r := s.terminal(t, id)
		wantOutcome(t, r, events.OutcomeRejected)
		if len(r.ValidationErrors) == 0 {
			t.Errorf("%s: rejected without validation errors", id)
		}
	}
	s.events.WaitFor(t, "the rejection of the body that is not JSON", func() bool {
		return len(s.events.Filter(func(r testutil.Event) bool { return r.Type == events.EventCommandRejected })) == 3
	})
	if n := s.calls(sim.EndpointCreateGroup); n != 1 { // newGroup's own
		t.Fatalf("%d create calls, want none from rejected commands", n-1)
	}
}

func TestHandlerPanicFailsOnlyThatCommand(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, func(c *jobs.Config) {
		c.Handlers = map[string]jobs.Handler{events.ResetInviteLink: jobs.HandlerFunc(func(context.Context, *jobs.Job) (jobs.Result, error) {
			panic("boom")
		})}
	})
	g := s.newGroup(t, "Panics", "")
	s.publish(t, command("panic-1", events.ResetInviteLink, g.ID, nil))
	s.publish(t, command("calm-1", events.GetInviteLink, g.ID, nil))
	wantOutcome(t, s.terminal(t, "calm-1"), events.OutcomeSucceeded)
	r := s.terminal(t, "panic-1")
	wantOutcome(t, r, events.OutcomeFailed)
	dl := s.deadLetters(t, 1)
	if dl[0].CommandID != "panic-1" || len(dl[0].Attempts) != 1 || dl[0].Attempts[0].Outcome != "panic" {
		t.Fatalf("dead letter = %+v, want panic-1 with its panicking attempt", dl[0])
	}
}

// deadLetters waits for n messages in the DLQ stream and returns them.
func (s *stack) deadLetters(t testing.TB, n int) []jobs.DeadLetter {
	t.Helper()
	ctx := context.Background()
	var out []jobs.DeadLetter
	s.events.WaitFor(t, fmt.Sprintf("%d dead letters", n), func() bool {
		str, err := s.js.Stream(ctx, s.names.DLQStream())
		if err != nil {
			return false
		}
		info, err := str.Info(ctx)
		if err != nil || info.State.Msgs < uint64(n) {
			return false
		}
		out = out[:0]
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
			m, err := str.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			var dl jobs.DeadLetter
			if json.Unmarshal(m.Data, &dl) == nil {
				out = append(out, dl)
			}
		}
		return len(out) >= n
	})
	return out
}

func TestExhaustedRetriesGoToTheDLQWithTheirHistory(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Code2: 1, Endpoints: []string{sim.EndpointGetInviteLink}}
	})
	s.startWorker(t, func(c *jobs.Config) { c.RetryMaxElapsed = time.Millisecond })
	g := s.newGroup(t, "Unlucky", "")
	c := command("dlq-1", events.GetInviteLink, g.ID, nil)
	s.publish(t, c)
	r := s.terminal(t, "dlq-1")
	wantOutcome(t, r, events.OutcomeFailed)
	if r.Error.Reason != events.ReasonRetriesExhausted || r.Error.Code != graph.CodeServiceUnavailable || r.Attempts != 4 {
		t.Fatalf("result = %+v (attempts %d), want retries_exhausted with code 2 after 4 deliveries", r.Error, r.Attempts)
	}
	dl := s.deadLetters(t, 1)[0]
	if dl.CommandID != "dlq-1" || len(dl.Attempts) != 4 || dl.Subject != s.names.Command(phone, events.GetInviteLink) {
		t.Fatalf("dead letter = %+v, want dlq-1, its subject and 4 attempts", dl)
	}
	for i, a := range dl.Attempts {
		// A write's 503 may have been executed ("ambiguous"); a read's
		// changed nothing whatever happened: "transient".
		if a.Outcome != "transient" || a.Code != graph.CodeServiceUnavailable || a.Delivery != uint64(i+1) {
			t.Errorf("attempt %d = %+v, want transient code 2 delivery %d", i, a, i+1)
		}
	}
	// The command as it was sent, on the DLQ subject of its number and
	// type: what groupctl dlq replay publishes again.
	sent, _ := json.Marshal(c)
	if string(dl.Command) != string(sent) || dl.CommandType != events.GetInviteLink || dl.PhoneNumberID != phone || dl.Reason != events.ReasonRetriesExhausted {
		t.Errorf("dead letter holds %s (%s, %s, %s), want the command sent, %s", dl.Command, dl.CommandType, dl.PhoneNumberID, dl.Reason, sent)
	}
	str, err := s.js.Stream(context.Background(), s.names.DLQStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := str.GetLastMsgForSubject(context.Background(), s.names.AllDLQ())
	if err != nil || m.Subject != s.names.DLQ(phone, events.GetInviteLink) {
		t.Errorf("dead letter on %v (%v), want %s", m, err, s.names.DLQ(phone, events.GetInviteLink))
	}
}

func TestExpiredCommandSendsNothing(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	c := command("late-1", events.CreateGroup, "", events.CreateGroupParams{Subject: "Too late"})
	past := time.Now().Add(-time.Minute)
	c.Deadline = &past
	s.publish(t, c)
	r := s.terminal(t, "late-1")
	wantFailure(t, r, events.ReasonExpired)
	if n := len(s.sim.Calls()); n != 0 {
		t.Fatalf("%d Graph calls, want none", n)
	}
}

func TestMaxDeliveriesAdvisoryDeadLettersAnAbandonedCommand(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) { o.ackWait, o.maxDeliv = 500*time.Millisecond, 2 })
	ctx := context.Background()
	g := s.newGroup(t, "Abandoned", "")
	s.publish(t, command("abandoned-1", events.GetInviteLink, g.ID, nil))
	// A worker that takes the command and dies, twice: nobody acks.
	cons, err := s.js.Consumer(ctx, s.names.CommandStream(), s.names.CommandConsumer())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for range batch.Messages() {
			got++
		}
		if got != 1 {
			t.Fatalf("fetched %d messages, want 1", got)
		}
	}
	s.startWorker(t)
	r := s.terminal(t, "abandoned-1")
	wantFailure(t, r, events.ReasonRetriesExhausted)
	if dl := s.deadLetters(t, 1)[0]; dl.CommandID != "abandoned-1" {
		t.Fatalf("dead letter = %+v", dl)
	}
	if n := s.calls(sim.EndpointGetInviteLink); n != 0 {
		t.Fatalf("%d Graph calls for an abandoned command, want 0", n)
	}
}

// A delivery whose AckWait ran out while it waited in a busy worker goes
// on, holding the command's claim, after the server delivered the message
// again. The later deliveries find the claim held. The last of them must
// not end the message with a nak: the max-deliveries advisory would
// dead-letter, as retries_exhausted, a command another delivery is still
// running. It is re-queued as a copy, and the command completes once the
// holder lets go.
func TestTheLastDeliveryOfACommandHeldElsewhereIsRequeuedNotDeadLettered(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) { o.maxDeliv = 3 })
	ctx := context.Background()
	g := s.newGroup(t, "Held", "")
	c := command("held-1", events.GetInviteLink, g.ID, nil)
	body, _ := json.Marshal(c)
	subject := s.names.Command(phone, c.Type)

	// The delivery still at work: its claim, renewed as its heartbeat
	// renews it (a short lease, so each delivery that finds it held
	// comes back soon).
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	const token, lease = "stalled-worker/1/1", 2 * time.Second
	if _, _, err := ledger.Claim(ctx, jobs.ClaimRequest{CommandID: c.ID, CommandType: c.Type, PhoneNumberID: phone,
		Subject: subject, Command: body, Token: token, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	renewing, stopRenewing := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			if err := ledger.Renew(renewing, c.ID, token, lease); err != nil && renewing.Err() == nil {
				t.Errorf("renew the holder's claim: %v", err)
			}
			select {
			case <-renewing.Done():
				return
			case <-time.After(lease / 8):
			}
		}
	}()

	// The message's deliveries are over once it is acknowledged (gone
	// from the work queue) or the consumer gives up on it.
	var gaveUp atomic.Bool
	advisories, err := s.nc.Subscribe(fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s",
		s.names.CommandStream(), s.names.CommandConsumer()), func(*nats.Msg) { gaveUp.Store(true) })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = advisories.Unsubscribe() }()
	ack, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: body}, jetstream.WithMsgID(c.ID))
	if err != nil {
		t.Fatal(err)
	}
	s.startWorker(t)
	stream, err := s.js.Stream(ctx, s.names.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	s.events.WaitFor(t, "every delivery of the message to be over", func() bool {
		_, err := stream.GetMsg(ctx, ack.Sequence)
		return errors.Is(err, jetstream.ErrMsgNotFound) || gaveUp.Load()
	})
	stopRenewing()
	<-renewed
	if err := ledger.Release(ctx, c.ID, token, jobs.Attempt{At: time.Now(), Outcome: "cancelled"}); err != nil && !errors.Is(err, jobs.ErrTerminal) {
		t.Fatal(err)
	}
	wantOutcome(t, s.terminal(t, c.ID), events.OutcomeSucceeded)
}

func TestSweeperFinishesEachOverdueCommandOnceAcrossWorkers(t *testing.T) {
	t.Parallel()
	s := setup(t)
	for i := range 3 {
		s.startWorker(t, func(c *jobs.Config) {
			c.WorkerID = fmt.Sprint("sweeper-", i)
			c.WebhookTimeout, c.SweepInterval = 300*time.Millisecond, 20*time.Millisecond
		})
	}
	s.sim.SetWebhookURL("") // no webhook will ever come
	var ids []string
	for i := range 5 {
		g := s.newGroup(t, fmt.Sprint("Never deleted ", i), "")
		id := fmt.Sprint("sweep-", i)
		ids = append(ids, id)
		s.publish(t, command(id, events.DeleteGroup, g.ID, nil))
	}
	for _, id := range ids {
		r := s.terminal(t, id)
		wantOutcome(t, r, events.OutcomeFailed)
		if r.Error.Reason != events.ReasonWebhookTimeout {
			t.Fatalf("%s: error %+v, want webhook_timeout", id, r.Error)
		}
	}
	time.Sleep(100 * time.Millisecond) // a few more sweeps by every worker
	for _, id := range ids {
		if n := len(s.events.Terminals(id)); n != 1 {
			t.Fatalf("%s: %d terminal events, want 1", id, n)
		}
	}
}

// blockingGraph blocks every invite link read until its context ends.
type blockingGraph struct {
	jobs.Graph
	inflight atomic.Int32
}

func (g *blockingGraph) InviteLink(ctx context.Context, _ string) (string, error) {
	g.inflight.Add(1)
	<-ctx.Done()
	return "", ctx.Err()
}

func TestShutdownLeavesNothingLostOrClaimed(t *testing.T) {
	t.Parallel()
	s := setup(t)
	block := &blockingGraph{Graph: s.graph}
	_, stopA := s.startWorker(t, func(c *jobs.Config) {
		c.Graph, c.Concurrency, c.ShutdownTimeout, c.WorkerID = block, 2, 100*time.Millisecond, "leaving"
	})
	g := s.newGroup(t, "Shutdown", "")
	var ids []string
	for i := range 6 {
		id := fmt.Sprint("sd-", i)
		ids = append(ids, id)
		s.publish(t, command(id, events.GetInviteLink, g.ID, nil))
	}
	s.events.WaitFor(t, "two calls in flight", func() bool { return block.inflight.Load() == 2 })
	stopA()

	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	for _, id := range ids {
		e, _, err := ledger.Get(context.Background(), id)
		if errors.Is(err, jobs.ErrNotFound) {
			continue
		}
		if err != nil || e.Owner != "" {
			t.Fatalf("%s after shutdown: owner %q, err %v; want no claim left", id, e.Owner, err)
		}
	}
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID = "staying" })
	for _, id := range ids {
		wantOutcome(t, s.terminal(t, id), events.OutcomeSucceeded)
	}
}

// waitCommandsConsumed waits until the command stream is empty: every
// command was acked or terminated.
func (s *stack) waitCommandsConsumed(t testing.TB) {
	t.Helper()
	s.events.WaitFor(t, "every command consumed", func() bool {
		str, err := s.js.Stream(context.Background(), s.names.CommandStream())
		if err != nil {
			return false
		}
		info, err := str.Info(context.Background())
		return err == nil && info.State.Msgs == 0
	})
}
