package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
)

// faultyJS injects one-off failures into a worker's handle on the real
// JetStream: a refusal the client can give at any time (too many async
// publishes stalled, a closed connection) that no server setting provokes
// on cue.
type faultyJS struct {
	jetstream.JetStream
	failAsync func(m *nats.Msg) bool // PublishMsgAsync fails synchronously
	failPub   func(m *nats.Msg) bool // PublishMsg fails
	kvPutHook func(key string)       // before every KV Put (correlation bucket)
}

var errInjected = errors.New("injected NATS failure")

func (f *faultyJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if f.failAsync != nil && f.failAsync(m) {
		return nil, errInjected
	}
	return f.JetStream.PublishMsgAsync(m, opts...)
}

func (f *faultyJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if f.failPub != nil && f.failPub(m) {
		return nil, errInjected
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

type hookKV struct {
	jetstream.KeyValue
	hook func(key string)
}

func (k hookKV) Put(ctx context.Context, key string, v []byte) (uint64, error) {
	k.hook(key)
	return k.KeyValue.Put(ctx, key, v)
}

func (f *faultyJS) KeyValue(ctx context.Context, name string) (jetstream.KeyValue, error) {
	kv, err := f.JetStream.KeyValue(ctx, name)
	if err != nil || f.kvPutHook == nil || !strings.HasSuffix(name, "correlation") {
		return kv, err
	}
	return hookKV{kv, f.kvPutHook}, nil
}

func once(pred func(m *nats.Msg) bool) func(m *nats.Msg) bool {
	var done atomic.Bool
	return func(m *nats.Msg) bool {
		if pred(m) && done.CompareAndSwap(false, true) {
			return true
		}
		return false
	}
}

// An invite whose publish is refused at once (ErrTooManyStalledMsgs, a
// closed connection) while nothing else is in flight is published again by
// the next holder. The checkpoint used to pass it: never sent, never
// terminal, and the campaign never completed.
func TestAnInviteRefusedBeforeItsPublishIsNotSkipped(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 2)
	s.sim.SetWebhookURL("")
	fj := &faultyJS{JetStream: s.js, failAsync: once(func(m *nats.Msg) bool {
		return m.Header.Get(jetstream.MsgIDHeader) == "skip:0"
	})}
	s.startWorker(t, func(c *jobs.Config) { c.JS = fj })
	startCampaign(t, s, "start-skip", events.StartInviteCampaignParams{CampaignID: "skip", Template: inviteTemplate, Invites: invitesFor(20, groups)})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if len(s.campaignEvents(events.EventCampaignCompleted, "skip")) > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "skip")
	_, _, err := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil).Get(context.Background(), "skip:0")
	t.Fatalf("campaign never completed after one failed publish: %+v; ledger of invite 0: %v; sends %d", st, err, len(s.sends()))
}

// A cancel ends the invites nobody claimed with a terminal ledger entry,
// then publishes its event. When that publish fails once, the next holder
// publishes the stored event. It used to find the entry terminal and do
// nothing: the campaign stayed "cancelling" and the cancel command never
// completed.
func TestACancelWhoseInviteEventFailedOnceStillEnds(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 4, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 100 * time.Millisecond}
	})
	s.sim.SetWebhookURL("")
	fj := &faultyJS{JetStream: s.js, failPub: once(func(m *nats.Msg) bool {
		return strings.HasSuffix(m.Subject, "command.failed") && strings.Contains(string(m.Data), `"command_id":"cx:400"`)
	})}
	s.startWorker(t, func(c *jobs.Config) {
		c.JS = fj
		c.Concurrency = 2
		c.Campaigns = jobs.CampaignConfig{Window: 64}
	})
	startCampaign(t, s, "start-cx", events.StartInviteCampaignParams{CampaignID: "cx", Template: inviteTemplate, Invites: invitesFor(2000, groups)})
	for len(s.sends()) < 5 {
		time.Sleep(10 * time.Millisecond)
	}
	s.publish(t, command("cancel-cx", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "cx"}))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if len(s.campaignEvents(events.EventCampaignCompleted, "cx")) > 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "cx")
	e, _, _ := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil).Get(context.Background(), "cx:400")
	pub := e.Result != nil && e.Result.Published
	t.Fatalf("cancelled campaign never ended: %+v; invite 400 ledger state %s published=%v; cancel terminals %d",
		st, e.State, pub, len(s.events.Terminals("cancel-cx")))
}

// A start_invite_campaign re-sent (or replayed) after its ledger entry
// expired (7 days; the campaign's entry lives 30) is answered with the
// campaign's result. It used to await an end that had already been handed
// out, forever.
func TestAStartReSentAfterItsLedgerEntryExpiredGetsTheResult(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 1)
	s.sim.SetWebhookURL("")
	// Days later, the first terminal event is out of the event stream's
	// duplicate window: shortened here to keep the test fast.
	ctx := context.Background()
	str, err := s.js.Stream(ctx, s.names.EventStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := str.CachedInfo().Config
	cfg.Duplicates = time.Second
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s.startWorker(t, func(c *jobs.Config) { c.Campaigns = jobs.CampaignConfig{FunnelGrace: 100 * time.Millisecond} })
	startCampaign(t, s, "start-exp", events.StartInviteCampaignParams{CampaignID: "exp", Template: inviteTemplate, Invites: invitesFor(3, groups)})
	s.completed(t, "exp", time.Minute)
	s.terminalWithin(t, "start-exp", time.Minute)
	time.Sleep(2 * time.Second) // Finished
	lkv := s.kv(t, s.names.LedgerBucket())
	if err := lkv.Purge(context.Background(), jobs.LedgerKey("start-exp")); err != nil { // what the TTL does
		t.Fatal(err)
	}
	// Re-sent (days later: outside the duplicate window, hence another msg id).
	b := []byte(`{"id":"start-exp","type":"start_invite_campaign","phone_number_id":"` + phone + `","params":{"campaign_id":"exp","template":{"name":"my_group_invite","language":"en"},"invites":[{"to":"` + recipient(0) + `","group_id":"` + groups[0].ID + `"},{"to":"` + recipient(1) + `","group_id":"` + groups[0].ID + `"},{"to":"` + recipient(2) + `","group_id":"` + groups[0].ID + `"}]}}`)
	s.publishRaw(t, s.names.Command(phone, events.StartInviteCampaign), "resend-later", b)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if rs := s.events.Terminals("start-exp"); len(rs) >= 2 {
			var first, again events.CampaignResult
			_ = json.Unmarshal(rs[0].Result, &first)
			_ = json.Unmarshal(rs[1].Result, &again)
			if rs[1].Outcome != events.OutcomeSucceeded || again.CampaignID != "exp" || again.Counts.Sent != first.Counts.Sent || again.Counts.Sent != 3 {
				t.Fatalf("re-sent start: %s %+v, want succeeded with the campaign's counts %+v", rs[1].Outcome, again, first)
			}
			if n := len(s.sends()); n != 3 {
				t.Fatalf("%d sends, want 3: the re-sent start must not invite anyone again", n)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e, _, err := jobs.NewLedger(lkv, nil).Get(context.Background(), "start-exp")
	t.Fatalf("re-sent start command got no terminal event in 20s; ledger state %q (%v)", e.State, err)
}

// Statuses that reach the webhook consumer before the worker has written
// msg.<wamid> → command id (a slow write) still name their command, and
// the campaign counts them: a fresh status no command claims is looked up
// once more a second later. They used to go out without command_id, for
// good (their event id is fixed).
func TestAStatusBeforeItsSendIsRecordedIsCounted(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 2, func(o *stackOpts) {
		o.sim.Statuses = &sim.StatusBehavior{Read: 0}
	})
	fj := &faultyJS{JetStream: s.js, kvPutHook: func(key string) {
		if strings.HasPrefix(key, "msg.") {
			time.Sleep(150 * time.Millisecond) // a slow KV write / GC pause
		}
	}}
	s.startWorker(t, func(c *jobs.Config) { c.JS = fj })
	startCampaign(t, s, "start-st", events.StartInviteCampaignParams{CampaignID: "st", Template: inviteTemplate, Invites: invitesFor(10, groups)})
	done := s.completed(t, "st", time.Minute)
	time.Sleep(3 * time.Second)
	st, _ := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "st")
	orphans := len(s.events.Filter(func(r testutil.Event) bool {
		return r.Type == events.EventMessageStatus && strings.Contains(string(r.Data), `"status":"delivered"`) &&
			!strings.Contains(string(r.Data), `"command_id"`)
	}))
	if st.Counts.Delivered != done.Counts.Sent {
		t.Fatalf("sent %d, delivered counted %d; %d delivered message.status events carry no command_id", done.Counts.Sent, st.Counts.Delivered, orphans)
	}
}

// campaign.invitee_joined comes once per invitee, also when the join comes
// again after the event stream's duplicate window (a leave and a rejoin,
// Meta's retry hours later). It used to rely on that window alone. The
// window is shortened here to keep the test fast.
func TestARejoinAfterTheDuplicateWindowIsNotAnotherJoin(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 1)
	ctx := context.Background()
	str, err := s.js.Stream(ctx, s.names.EventStream())
	if err != nil {
		t.Fatal(err)
	}
	cfg := str.CachedInfo().Config
	cfg.Duplicates = time.Second
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s.startWorker(t)
	invites := invitesFor(2, groups)
	startCampaign(t, s, "start-rj", events.StartInviteCampaignParams{CampaignID: "rj", Template: inviteTemplate, Invites: invites})
	s.completed(t, "rj", time.Minute)
	gs, _ := s.sim.Group(invites[0].GroupID)
	if _, err := s.sim.Join(recipient(0), gs.InviteLink); err != nil {
		t.Fatal(err)
	}
	s.events.WaitFor(t, "first joined", func() bool { return len(s.campaignEvents(events.EventCampaignInviteeJoined, "rj")) >= 1 })
	time.Sleep(1500 * time.Millisecond)
	if err := s.sim.Leave(recipient(0), invites[0].GroupID); err != nil {
		t.Fatal(err)
	}
	gs, _ = s.sim.Group(invites[0].GroupID)
	if _, err := s.sim.Join(recipient(0), gs.InviteLink); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if n := len(s.campaignEvents(events.EventCampaignInviteeJoined, "rj")); n != 1 {
		st, _ := jobs.ReadCampaign(ctx, s.kv(t, s.names.CampaignBucket()), "rj")
		t.Fatalf("%d campaign.invitee_joined events for one invitee (joined count %d)", n, st.Counts.Joined)
	}
}

// An invite dead-lettered (here by a handler panic, fixed since) and
// replayed from GROUPS_DLQ as groupctl dlq replay does it is counted
// again: its campaign's counts move it from failed to what the replay
// achieved, whether the campaign's holder still lingers after the end or
// let go of it long ago. The replay used to be ignored: counted already.
func TestAReplayedDeadInviteIsRecountedInItsCampaign(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace time.Duration
	}{
		{"While the campaign's funnel is still counted", time.Minute},
		{"After the campaign was let go of", 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const total = 5
			s, groups := campaignStack(t, 1)
			var broken atomic.Bool
			broken.Store(true)
			s.startWorker(t, func(c *jobs.Config) {
				c.Campaigns = jobs.CampaignConfig{FunnelGrace: tc.grace}
				c.Middleware = []jobs.Middleware{func(next jobs.Handler) jobs.Handler {
					return jobs.HandlerFunc(func(ctx context.Context, job *jobs.Job) (jobs.Result, error) {
						if job.Command.ID == "rp:3" && broken.Load() {
							panic("a bug, fixed before the replay")
						}
						return next.Handle(ctx, job)
					})
				}}
			})
			startCampaign(t, s, "start-rp", events.StartInviteCampaignParams{CampaignID: "rp", Template: inviteTemplate, Invites: invitesFor(total, groups)})
			done := s.completed(t, "rp", time.Minute)
			if done.Counts.Sent != total-1 || done.Counts.Failed != 1 || done.Counts.FailedByCode[events.ReasonPermanentError] != 1 {
				t.Fatalf("counts %+v, want invite 3 failed by the panic and the rest sent", done.Counts)
			}
			if tc.grace < time.Second {
				// Let go of: nobody reads its events any more.
				kv := s.kv(t, s.names.CampaignBucket())
				s.events.WaitFor(t, "the campaign let go of", func() bool {
					e, err := kv.Get(context.Background(), "m.rp")
					var st struct{ Finished bool }
					return err == nil && json.Unmarshal(e.Value(), &st) == nil && st.Finished
				})
			}

			broken.Store(false)
			dl := s.deadLetters(t, 1)[0]
			if dl.CommandID != "rp:3" {
				t.Fatalf("dead letter of %s, want rp:3", dl.CommandID)
			}
			s.replayDeadLetter(t, dl, 1)
			s.events.WaitFor(t, "the replay's terminal event", func() bool {
				for _, r := range s.events.Terminals("rp:3") {
					if r.Replay != "" && r.Outcome == events.OutcomeSucceeded {
						return true
					}
				}
				return false
			})
			st := s.waitCampaign(t, "rp", "the replayed invite counted sent", func(st jobs.CampaignStatus) bool {
				return st.Counts.Sent == total
			})
			if c := st.Counts; c.Failed != 0 || len(c.FailedByCode) != 0 || c.Pending != 0 || c.Sent+c.Failed+c.Cancelled+c.Unknown != total {
				t.Fatalf("counts %+v, want all %d sent and nothing failed", c, total)
			}
			if n := len(s.sends()); n != total {
				t.Fatalf("%d sends, want %d: one per invite", n, total)
			}
		})
	}
}

// replayDeadLetter does what groupctl dlq replay does with dead letter
// seq: forget the command in the ledger, publish it again with the replay
// header and a message id of its own.
func (s *stack) replayDeadLetter(t testing.TB, dl jobs.DeadLetter, seq uint64) {
	t.Helper()
	ctx := context.Background()
	if err := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil).Forget(ctx, dl.CommandID); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(dl.Subject)
	m.Data = dl.Command
	m.Header.Set(events.ReplayHeader, strconv.FormatUint(seq, 10))
	m.Header.Set(jetstream.MsgIDHeader, dl.CommandID+":replay:"+strconv.FormatUint(seq, 10))
	if _, err := s.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// A cancel reaching a holder that must reopen the campaign's object list,
// replaced since the campaign opened it, ends the invites the previous
// holder reserved as list_changed. It used to fail the stop on the changed
// list, again on every holder: the campaign stayed "cancelling" for good.
// Those invites must not stay counted as queued either.
func TestACancelAfterTheListWasReplacedEnds(t *testing.T) {
	t.Parallel()
	const total = 2000
	s, groups := campaignStack(t, 4, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 100 * time.Millisecond}
	})
	s.sim.SetWebhookURL("")
	ref := s.putInvites(t, "replaced.ndjson", total, groups)
	// A long lease: worker B handles the cancel before it takes the
	// campaign over from A.
	killA := s.startKillableWorker(t, "worker-a", func(c *jobs.Config) {
		c.Concurrency = 2
		c.Campaigns = jobs.CampaignConfig{Window: 64, Lease: 15 * time.Second}
	})
	startCampaign(t, s, "start-rl", events.StartInviteCampaignParams{CampaignID: "rl", Template: inviteTemplate, InvitesObject: &ref})
	st := s.waitCampaign(t, "rl", "a checkpoint past some invites", func(st jobs.CampaignStatus) bool { return st.FannedOut > 0 })
	killA()
	if st.FannedOut >= total {
		t.Fatalf("every invite published before the kill (%+v): nothing left to stop", st)
	}
	s.putInvites(t, "replaced.ndjson", total/2, groups)

	s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Concurrency = "worker-b", 8 })
	s.publish(t, command("cancel-rl", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "rl"}))
	if st := s.waitCampaign(t, "rl", "cancelling", func(st jobs.CampaignStatus) bool { return st.State != "running" }); st.Holder == "worker-b" {
		t.Fatalf("worker B took the campaign over before the cancel (%+v): the test needs the cancel first", st)
	}

	wantOutcome(t, s.terminalWithin(t, "cancel-rl", time.Minute), events.OutcomeSucceeded)
	wantOutcome(t, s.terminalWithin(t, "start-rl", time.Minute), events.OutcomeSucceeded)
	done := s.completed(t, "rl", time.Minute)
	c := done.Counts
	if done.State != events.CampaignStateCancelled || c.Total != total || c.Pending != 0 || c.Queued != 0 ||
		c.Sent+c.Failed+c.Cancelled+c.Unknown+c.Duplicates != total {
		t.Fatalf("campaign.completed %+v, want cancelled with counts adding up to %d, none pending or queued", done, total)
	}
	if c.FailedByCode["list_changed"] == 0 {
		t.Fatalf("counts %+v, want the reserved invites failed as list_changed", c)
	}
}
