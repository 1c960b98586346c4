package jobs_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
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
	"github.com/groupflow/groupflow/internal/testutil"
)

var inviteTemplate = events.TemplateRef{Name: "my_group_invite", Language: "en"}

// campaignStack is a stack with the invite template approved and groups
// to invite people to.
func campaignStack(t testing.TB, groups int, opts ...func(*stackOpts)) (*stack, []sim.GroupState) {
	t.Helper()
	s := setup(t, append([]func(*stackOpts){func(o *stackOpts) { o.maxDeliv = 10 }}, opts...)...)
	if _, err := s.graph.AddLibraryTemplate(context.Background(), sim.DefaultWABAID, graph.AddTemplateRequest{
		Name: inviteTemplate.Name, Category: "UTILITY", Language: inviteTemplate.Language, LibraryTemplateName: "group_invite_upon_request"}); err != nil {
		t.Fatal(err)
	}
	var gs []sim.GroupState
	for i := range groups {
		gs = append(gs, s.newGroup(t, fmt.Sprintf("Campaign group %d", i), ""))
	}
	return s, gs
}

// invitesFor spreads n recipients over the groups.
func invitesFor(n int, groups []sim.GroupState) []events.Invite {
	out := make([]events.Invite, n)
	for i := range out {
		out[i] = events.Invite{To: recipient(i), GroupID: groups[i%len(groups)].ID}
	}
	return out
}

func recipient(i int) string { return fmt.Sprintf("1555%07d", i) }

// campaignEvents returns the campaign events of one type for a campaign.
func (s *stack) campaignEvents(typ, campaignID string) []testutil.Event {
	return s.events.Filter(func(r testutil.Event) bool {
		if r.Type != typ {
			return false
		}
		var d struct {
			CampaignID string `json:"campaign_id"`
		}
		return json.Unmarshal(r.Data, &d) == nil && d.CampaignID == campaignID
	})
}

// completed waits for the campaign's end and returns campaign.completed.
func (s *stack) completed(t testing.TB, campaignID string, within time.Duration) events.CampaignCompleted {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if evs := s.campaignEvents(events.EventCampaignCompleted, campaignID); len(evs) > 0 {
			var c events.CampaignCompleted
			if err := json.Unmarshal(evs[0].Data, &c); err != nil {
				t.Fatal(err)
			}
			return c
		}
		if time.Now().After(deadline) {
			st, _ := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), campaignID)
			t.Fatalf("campaign %s did not end within %s; it is at %+v", campaignID, within, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inviteOutcomes reads every terminal event of a campaign's invites: invite
// number → outcomes seen (several if one was published twice).
func (s *stack) inviteOutcomes(campaignID string) map[int][]events.CommandResult {
	out := map[int][]events.CommandResult{}
	seen := map[string]bool{}
	for _, r := range s.events.Filter(func(r testutil.Event) bool { return events.IsTerminal(r.Type) }) {
		var cr events.CommandResult
		if json.Unmarshal(r.Data, &cr) != nil || cr.CommandType != events.SendGroupInvite {
			continue
		}
		i := strings.LastIndexByte(cr.CommandID, ':')
		if i < 0 || cr.CommandID[:i] != campaignID || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		n, err := strconv.Atoi(cr.CommandID[i+1:])
		if err != nil {
			continue // not an invite number: not one of the campaign's invites
		}
		out[n] = append(out[n], cr)
	}
	return out
}

// sends returns the simulator's send calls that took effect (answered,
// or performed and their answer lost), by recipient and group.
func (s *stack) sends() map[[2]string][]sim.Call {
	out := map[[2]string][]sim.Call{}
	for _, c := range s.sim.Calls() {
		if c.Endpoint != sim.EndpointSendMessage || (c.Status != 200 && c.Fault != "lost_response") {
			continue
		}
		var body struct {
			To       string `json:"to"`
			Template struct {
				Components []struct {
					Parameters []struct {
						GroupID string `json:"group_id"`
					} `json:"parameters"`
				} `json:"components"`
			} `json:"template"`
		}
		_ = json.Unmarshal([]byte(c.Body), &body)
		group := ""
		for _, comp := range body.Template.Components {
			for _, p := range comp.Parameters {
				group = p.GroupID
			}
		}
		k := [2]string{body.To, group}
		out[k] = append(out[k], c)
	}
	return out
}

// checkCounts checks that the counts add up and agree with the events.
func checkCounts(t testing.TB, c events.CampaignCounts, outcomes map[int][]events.CommandResult, total int) {
	t.Helper()
	if c.Total != total || c.Sent+c.Failed+c.Cancelled+c.Unknown+c.Duplicates+c.Pending != total || c.Pending != 0 {
		t.Fatalf("counts %+v do not add up to %d with nothing pending", c, total)
	}
	var sent, failed, cancelled, unknown int
	for _, rs := range outcomes {
		switch r := rs[0]; {
		case r.Outcome == events.OutcomeSucceeded:
			sent++
		case r.Error != nil && r.Error.Reason == events.ReasonCancelled:
			cancelled++
		case r.Error != nil && r.Error.Reason == events.ReasonOutcomeUnknown:
			unknown++
		default:
			failed++
		}
	}
	// Invites never published have no command and so no terminal event:
	// they can only be cancelled ones.
	if sent != c.Sent || failed != c.Failed || unknown != c.Unknown || cancelled > c.Cancelled {
		t.Fatalf("counts %+v, but the invites' terminal events say sent %d, failed %d, cancelled %d, unknown %d",
			c, sent, failed, cancelled, unknown)
	}
}

// terminalWithin waits for a command's terminal event for up to d: a
// campaign's commands end with the campaign, which takes a while on a
// loaded machine.
func (s *stack) terminalWithin(t testing.TB, commandID string, d time.Duration) events.CommandResult {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if got := s.events.Terminals(commandID); len(got) > 0 {
			return got[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no terminal event of %s within %s", commandID, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startCampaign(t testing.TB, s *stack, commandID string, p events.StartInviteCampaignParams) {
	t.Helper()
	s.publish(t, command(commandID, events.StartInviteCampaign, "", p))
}

func TestCampaignSendsEveryInviteOnce(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 5)
	s.startWorker(t)
	invites := invitesFor(200, groups)
	startCampaign(t, s, "start-small", events.StartInviteCampaignParams{CampaignID: "small", Template: inviteTemplate, Invites: invites})

	done := s.completed(t, "small", 2*time.Minute)
	if done.State != events.CampaignStateCompleted || done.CommandID != "start-small" {
		t.Fatalf("campaign.completed = %+v, want completed for start-small", done)
	}
	outcomes := s.inviteOutcomes("small")
	checkCounts(t, done.Counts, outcomes, len(invites))
	if done.Counts.Sent != len(invites) {
		t.Fatalf("sent %d of %d: %+v", done.Counts.Sent, len(invites), done.Counts)
	}
	for k, calls := range s.sends() {
		if len(calls) != 1 {
			t.Fatalf("%d sends to %v, want 1", len(calls), k)
		}
	}
	r := s.terminalWithin(t, "start-small", time.Minute)
	wantOutcome(t, r, events.OutcomeSucceeded)
	var res events.CampaignResult
	if err := json.Unmarshal(r.Result, &res); err != nil || res.CampaignID != "small" || res.Counts.Sent != len(invites) {
		t.Fatalf("start command result %s, want the campaign's counts", r.Result)
	}
	if n := len(s.campaignEvents(events.EventCampaignStarted, "small")); n != 1 {
		t.Fatalf("%d campaign.started events, want 1", n)
	}
	st, err := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "small")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != events.CampaignStateCompleted || st.Counts.Sent != len(invites) || st.FannedOut != len(invites) {
		t.Fatalf("stored campaign %+v, want completed with every invite sent", st)
	}
}

// startKillableWorker runs a worker on its own NATS connection. kill stops
// it the hard way: the connection goes first, so nothing it was doing is
// testutil.Event, acknowledged or published any more (its claims and its
// campaign lease just run out, as when a process dies), then its context.
func (s *stack) startKillableWorker(t testing.TB, id string, mutate ...func(*jobs.Config)) (kill func()) {
	t.Helper()
	nc, err := nats.Connect(s.url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := jobs.Config{
		JS: js, Names: s.names, Graph: s.graph, Concurrency: 16, WorkerID: id,
		WebhookTimeout: time.Minute, ShutdownTimeout: time.Millisecond,
		NakDelay: func(uint64) time.Duration { return 50 * time.Millisecond },
		Logger:   testLogger(t),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	w, err := jobs.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	kill = func() {
		once.Do(func() {
			nc.Close()
			cancel()
			<-done //nolint:errcheck // an error is expected: its connection is gone
		})
	}
	t.Cleanup(kill)
	return kill
}

func TestCampaignSurvivesAWorkerKilledMidway(t *testing.T) {
	t.Parallel()
	total := 10000
	if testing.Short() {
		total = 2000
	}
	s, groups := campaignStack(t, 125, func(o *stackOpts) {
		// 5% transient faults: code 1 (retried in process: nothing was
		// sent), bare 5xx and lost answers (the send may have happened:
		// at most once makes those outcome_unknown).
		o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Code1: 0.03, Status5xx: 0.015, LostResponse: 0.005}
	})
	// Message statuses are not what this test is about: spare the
	// machine the ~2.7 webhooks per send.
	s.sim.SetWebhookURL("")
	killA := s.startKillableWorker(t, "worker-a")
	invites := invitesFor(total, groups)
	startCampaign(t, s, "start-big", events.StartInviteCampaignParams{CampaignID: "big", Template: inviteTemplate, Invites: invites})

	// Kill worker A once about 40% of the invites went out.
	kv := s.kv(t, s.names.CampaignBucket())
	// A liveness bound, not a speed check: generous enough for a machine
	// loaded by other test binaries (the race detector included).
	deadline := time.Now().Add(4 * time.Minute)
	for len(s.sends()) < total*2/5 {
		if time.Now().After(deadline) {
			st, _ := jobs.ReadCampaign(context.Background(), kv, "big")
			t.Fatalf("only %d invites sent in 4 minutes; campaign at %+v", len(s.sends()), st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	killA()
	killedAt := len(s.sends())
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Concurrency = "worker-b", 16 })

	done := s.completed(t, "big", 3*time.Minute)
	t.Logf("worker A killed after %d sends; final counts %+v", killedAt, done.Counts)
	if done.State != events.CampaignStateCompleted {
		t.Fatalf("state %s, want completed", done.State)
	}

	// Every invite has exactly one terminal event, and the counts agree.
	outcomes := s.inviteOutcomes("big")
	raw := map[string]int{}
	for _, r := range s.events.Filter(func(r testutil.Event) bool { return events.IsTerminal(r.Type) }) {
		raw[r.ID]++
	}
	for n := range total {
		id := events.TerminalEventID(fmt.Sprintf("big:%d", n), "")
		if len(outcomes[n]) != 1 || raw[id] != 1 {
			t.Fatalf("invite %d: %d terminal events in the stream, want 1", n, raw[id])
		}
	}
	checkCounts(t, done.Counts, outcomes, total)
	if done.Counts.Unknown == 0 || done.Counts.Sent < total*9/10 {
		t.Errorf("counts %+v: want most sent and some outcome_unknown (lost answers, 5xx)", done.Counts)
	}

	// The simulator received no invite twice, and each outcome matches
	// what it received.
	sends := s.sends()
	for k, calls := range sends {
		if len(calls) > 1 {
			t.Fatalf("%d sends to %s for group %s, want at most 1", len(calls), k[0], k[1])
		}
	}
	for n, rs := range outcomes {
		got := len(sends[[2]string{invites[n].To, invites[n].GroupID}])
		switch r := rs[0]; {
		case r.Outcome == events.OutcomeSucceeded && got != 1:
			t.Fatalf("invite %d succeeded, but the simulator took %d sends", n, got)
		case r.Outcome == events.OutcomeFailed && r.Error.Reason != events.ReasonOutcomeUnknown && got != 0:
			t.Fatalf("invite %d failed (%+v), but the simulator took %d sends", n, r.Error, got)
		}
	}

	// One end: one campaign.completed, one result of the start command,
	// and the bucket says the same.
	if n := len(s.campaignEvents(events.EventCampaignCompleted, "big")); n != 1 {
		t.Fatalf("%d campaign.completed events, want 1", n)
	}
	if n := len(s.events.Terminals("start-big")); n != 1 {
		t.Fatalf("%d terminal events of the start command, want 1", n)
	}
	st, err := jobs.ReadCampaign(context.Background(), kv, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts.Sent != done.Counts.Sent || st.Counts.Unknown != done.Counts.Unknown || st.Counts.Failed != done.Counts.Failed {
		t.Fatalf("bucket counts %+v, campaign.completed %+v", st.Counts, done.Counts)
	}
	if progress := s.campaignEvents(events.EventCampaignProgress, "big"); len(progress) == 0 {
		t.Fatal("no campaign.progress events")
	}
}

// waitCampaign polls the bucket until cond holds for the campaign.
func (s *stack) waitCampaign(t testing.TB, campaignID, what string, cond func(jobs.CampaignStatus) bool) jobs.CampaignStatus {
	t.Helper()
	kv := s.kv(t, s.names.CampaignBucket())
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := jobs.ReadCampaign(context.Background(), kv, campaignID)
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for campaign %s: %s; it is at %+v (%v)", campaignID, what, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCampaignCancel(t *testing.T) {
	t.Parallel()

	t.Run("half-way: nothing is sent once the cancellation settled, and the counts add up", func(t *testing.T) {
		t.Parallel()
		const total = 3000
		s, groups := campaignStack(t, 40, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 5 * time.Millisecond}
		})
		s.sim.SetWebhookURL("")
		s.startWorker(t, func(c *jobs.Config) { c.Concurrency = 8 })
		s.startWorker(t, func(c *jobs.Config) { c.Concurrency = 8 })
		startCampaign(t, s, "start-c1", events.StartInviteCampaignParams{CampaignID: "c1", Template: inviteTemplate, Invites: invitesFor(total, groups)})
		for len(s.sends()) < total/2 {
			time.Sleep(5 * time.Millisecond)
		}
		cancelAt := time.Now()
		s.publish(t, command("cancel-c1", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "c1"}))

		r := s.terminalWithin(t, "cancel-c1", time.Minute)
		settled := time.Now()
		wantOutcome(t, r, events.OutcomeSucceeded)
		done := s.completed(t, "c1", 2*time.Minute)
		if done.State != events.CampaignStateCancelled {
			t.Fatalf("campaign.completed %+v, want cancelled", done)
		}
		var res events.CampaignResult
		if err := json.Unmarshal(r.Result, &res); err != nil || res.Counts.Cancelled != done.Counts.Cancelled {
			t.Fatalf("cancel result %s, want the final counts %+v", r.Result, done.Counts)
		}
		checkCounts(t, done.Counts, s.inviteOutcomes("c1"), total)
		if done.Counts.Cancelled == 0 || done.Counts.Sent < total/2 {
			t.Fatalf("counts %+v: want half sent and the rest cancelled", done.Counts)
		}

		// Give a straggler every chance to show up, then look.
		time.Sleep(500 * time.Millisecond)
		var last time.Time
		for _, calls := range s.sends() {
			for _, c := range calls {
				if c.Time.After(last) {
					last = c.Time
				}
			}
		}
		if last.After(settled) {
			t.Fatalf("a send at %s, after the cancellation settled at %s", last.Format(time.StampMicro), settled.Format(time.StampMicro))
		}
		if n := len(s.sends()); n != done.Counts.Sent+done.Counts.Unknown && n != done.Counts.Sent {
			t.Fatalf("the simulator took %d sends, the counts say %+v", n, done.Counts)
		}
		t.Logf("cancelled after %d of %d sends; sending stopped %s after the cancel was published; %+v",
			total/2, total, last.Sub(cancelAt).Round(time.Millisecond), done.Counts)
		wantOutcome(t, s.terminalWithin(t, "start-c1", time.Minute), events.OutcomeSucceeded)
	})

	t.Run("during a pause: the waiting invites are cancelled at once", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 5, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Throttle: 1, Limit: 1,
				ThrottleCode: graph.CodeSpamRateLimit, ThrottleRetryAfter: time.Hour}
		})
		s.startWorker(t)
		startCampaign(t, s, "start-c2", events.StartInviteCampaignParams{CampaignID: "c2", Template: inviteTemplate, Invites: invitesFor(100, groups)})
		s.waitCampaign(t, "c2", "paused", func(st jobs.CampaignStatus) bool { return st.Paused })
		s.publish(t, command("cancel-c2", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "c2"}))
		wantOutcome(t, s.terminalWithin(t, "cancel-c2", time.Minute), events.OutcomeSucceeded)
		done := s.completed(t, "c2", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("c2"), 100)
		// The pause is an hour long: ending at all means the waiting
		// invites were cancelled, not left to come back after it.
		if done.State != events.CampaignStateCancelled || done.Counts.Cancelled == 0 || done.Counts.Sent+done.Counts.Cancelled != 100 {
			t.Fatalf("campaign.completed %+v, want the invites not sent before the pause cancelled", done)
		}
	})

	t.Run("unknown or finished campaigns", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 1)
		s.startWorker(t)
		s.publish(t, command("cancel-none", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "nope"}))
		wantOutcome(t, s.terminal(t, "cancel-none"), events.OutcomeFailed)

		startCampaign(t, s, "start-c3", events.StartInviteCampaignParams{CampaignID: "c3", Template: inviteTemplate, Invites: invitesFor(3, groups)})
		s.completed(t, "c3", 2*time.Minute)
		s.publish(t, command("cancel-c3", events.CancelCampaign, "", events.CancelCampaignParams{CampaignID: "c3"}))
		r := s.terminal(t, "cancel-c3")
		wantOutcome(t, r, events.OutcomeSucceeded)
		var res events.CampaignResult
		if err := json.Unmarshal(r.Result, &res); err != nil || res.Counts.Sent != 3 || res.Counts.Cancelled != 0 {
			t.Fatalf("cancel of a finished campaign answered %s, want its final counts", r.Result)
		}
	})
}

// putInvites stores invites in the campaign list object store, one JSON
// object per line, written as a stream.
func (s *stack) putInvites(t testing.TB, name string, n int, groups []sim.GroupState) events.ObjectRef {
	t.Helper()
	store, err := s.js.ObjectStore(context.Background(), s.names.CampaignListStore())
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriter(pw)
		for _, inv := range invitesFor(n, groups) {
			// A bufio.Writer's error sticks: Flush returns the first.
			_, _ = fmt.Fprintf(bw, "{\"to\":%q,\"group_id\":%q}\n", inv.To, inv.GroupID)
		}
		_ = pw.CloseWithError(bw.Flush()) // Put fails with it, if any; always returns nil
	}()
	if _, err := store.Put(context.Background(), jetstream.ObjectMeta{Name: name}, pr); err != nil {
		t.Fatal(err)
	}
	return events.ObjectRef{Bucket: s.names.CampaignListStore(), Name: name}
}

func TestCampaignFromAnObjectStoreList(t *testing.T) {
	t.Parallel()

	t.Run("NDJSON list", func(t *testing.T) {
		t.Parallel()
		const total = 3000
		s, groups := campaignStack(t, 20)
		s.sim.SetWebhookURL("")
		s.startWorker(t, func(c *jobs.Config) { c.Concurrency = 16 })
		ref := s.putInvites(t, "spring.ndjson", total, groups)
		startCampaign(t, s, "start-obj", events.StartInviteCampaignParams{CampaignID: "obj", Template: inviteTemplate, InvitesObject: &ref})
		done := s.completed(t, "obj", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("obj"), total)
		if done.Counts.Sent != total {
			t.Fatalf("counts %+v, want all %d sent", done.Counts, total)
		}
		var started events.CampaignStarted
		_ = json.Unmarshal(s.campaignEvents(events.EventCampaignStarted, "obj")[0].Data, &started)
		if started.Total != total {
			t.Fatalf("campaign.started %+v, want total %d", started, total)
		}
		for k, calls := range s.sends() {
			if len(calls) != 1 {
				t.Fatalf("%d sends to %v, want 1", len(calls), k)
			}
		}
	})

	t.Run("JSON array list", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 2)
		s.startWorker(t)
		store, err := s.js.ObjectStore(context.Background(), s.names.CampaignListStore())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(invitesFor(10, groups))
		if _, err := store.PutBytes(context.Background(), "array.json", b); err != nil {
			t.Fatal(err)
		}
		startCampaign(t, s, "start-arr", events.StartInviteCampaignParams{CampaignID: "arr", Template: inviteTemplate,
			InvitesObject: &events.ObjectRef{Bucket: s.names.CampaignListStore(), Name: "array.json"}})
		if done := s.completed(t, "arr", 2*time.Minute); done.Counts.Sent != 10 {
			t.Fatalf("counts %+v, want 10 sent", done.Counts)
		}
	})

	t.Run("a bad line fails the campaign before anything is sent", func(t *testing.T) {
		t.Parallel()
		s, groups := campaignStack(t, 1)
		s.startWorker(t)
		store, err := s.js.ObjectStore(context.Background(), s.names.CampaignListStore())
		if err != nil {
			t.Fatal(err)
		}
		list := fmt.Sprintf("{\"to\":\"15550000001\",\"group_id\":%q}\n{\"to\":\"not a phone\",\"group_id\":%q}\n", groups[0].ID, groups[0].ID)
		if _, err := store.PutString(context.Background(), "bad.ndjson", list); err != nil {
			t.Fatal(err)
		}
		startCampaign(t, s, "start-bad", events.StartInviteCampaignParams{CampaignID: "bad", Template: inviteTemplate,
			InvitesObject: &events.ObjectRef{Bucket: s.names.CampaignListStore(), Name: "bad.ndjson"}})
		r := s.terminal(t, "start-bad")
		wantOutcome(t, r, events.OutcomeFailed)
		if !strings.Contains(r.Error.Message, "invite 2") {
			t.Fatalf("error %+v, want it to name invite 2", r.Error)
		}
		if n := s.calls(sim.EndpointSendMessage); n != 0 {
			t.Fatalf("%d sends, want none", n)
		}
	})
}

func TestCampaignThrottling(t *testing.T) {
	t.Parallel()

	t.Run("the spam limit (131048) pauses the whole campaign and says so", func(t *testing.T) {
		t.Parallel()
		const total, pause = 300, 3 * time.Second
		s, groups := campaignStack(t, 10, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 2 * time.Millisecond,
				Throttle: 1, Limit: 1, ThrottleCode: graph.CodeSpamRateLimit, ThrottleRetryAfter: pause}
		})
		s.sim.SetWebhookURL("")
		s.startWorker(t)
		startCampaign(t, s, "start-spam", events.StartInviteCampaignParams{CampaignID: "spam", Template: inviteTemplate, Invites: invitesFor(total, groups)})
		done := s.completed(t, "spam", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("spam"), total)
		if done.Counts.Sent != total {
			t.Fatalf("counts %+v, want every invite sent after the pause", done.Counts)
		}
		var paused *events.CampaignProgress
		for _, r := range s.campaignEvents(events.EventCampaignProgress, "spam") {
			var p events.CampaignProgress
			if json.Unmarshal(r.Data, &p) == nil && p.State == events.CampaignStatePaused {
				paused = &p
				break
			}
		}
		if paused == nil || paused.PausedUntil == nil || !strings.Contains(paused.Reason, "131048") {
			t.Fatalf("no campaign.progress saying the campaign is paused for 131048 (got %+v)", paused)
		}
		var throttledAt time.Time
		for _, c := range s.sim.Calls() {
			if c.Code == graph.CodeSpamRateLimit {
				throttledAt = c.Time
			}
		}
		// Sends already under way when the answer came may land just
		// after it; none may start later until the pause is over.
		for _, c := range s.sim.Calls() {
			if c.Endpoint == sim.EndpointSendMessage && c.Time.After(throttledAt.Add(time.Second)) && c.Time.Before(paused.PausedUntil.Add(-50*time.Millisecond)) {
				t.Fatalf("a send at %s, during the pause (131048 at %s, paused until %s)",
					c.Time.Format(time.StampMilli), throttledAt.Format(time.StampMilli), paused.PausedUntil.Format(time.StampMilli))
			}
		}
	})

	t.Run("the pair limit (131056) delays only that recipient", func(t *testing.T) {
		t.Parallel()
		const total = 200
		s, groups := campaignStack(t, 4, func(o *stackOpts) {
			o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 2 * time.Millisecond,
				Throttle: 1, Limit: 1, ThrottleCode: graph.CodePairRateLimit, ThrottleRetryAfter: time.Second}
		})
		s.sim.SetWebhookURL("")
		s.startWorker(t)
		startCampaign(t, s, "start-pair", events.StartInviteCampaignParams{CampaignID: "pair", Template: inviteTemplate, Invites: invitesFor(total, groups)})
		done := s.completed(t, "pair", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("pair"), total)
		// (A send timing out on a loaded machine is outcome_unknown.)
		if done.Counts.Sent+done.Counts.Unknown != total || done.Counts.Sent < total-2 {
			t.Fatalf("counts %+v, want every invite sent", done.Counts)
		}
		var throttled sim.Call
		for _, c := range s.sim.Calls() {
			if c.Code == graph.CodePairRateLimit {
				throttled = c
			}
		}
		var to struct {
			To string `json:"to"`
		}
		_ = json.Unmarshal([]byte(throttled.Body), &to)
		var retried time.Time
		others := 0
		for _, c := range s.sim.Calls() {
			if c.Endpoint != sim.EndpointSendMessage || c.Status != 200 {
				continue
			}
			var b struct {
				To string `json:"to"`
			}
			_ = json.Unmarshal([]byte(c.Body), &b)
			if b.To == to.To {
				retried = c.Time
			} else if c.Time.After(throttled.Time) {
				others++
			}
		}
		if retried.IsZero() || others == 0 {
			t.Fatalf("the throttled recipient %s was sent at %v; %d other sends after the throttle", to.To, retried, others)
		}
		if st := s.waitCampaign(t, "pair", "ended", func(jobs.CampaignStatus) bool { return true }); !st.PausedUntil.IsZero() {
			t.Fatalf("the campaign was paused (%+v) for one recipient's pair limit", st)
		}
		for _, r := range s.campaignEvents(events.EventCampaignProgress, "pair") {
			var p events.CampaignProgress
			if json.Unmarshal(r.Data, &p) == nil && p.State == events.CampaignStatePaused {
				t.Fatalf("campaign.progress says paused: %+v", p)
			}
		}
	})

	t.Run("undeliverable recipients (131026) fail alone", func(t *testing.T) {
		t.Parallel()
		const total = 50
		s, groups := campaignStack(t, 2)
		for _, i := range []int{3, 17, 41} {
			if err := s.sim.SetUndeliverable(recipient(i), sim.UndeliverableSync); err != nil {
				t.Fatal(err)
			}
		}
		s.startWorker(t)
		startCampaign(t, s, "start-und", events.StartInviteCampaignParams{CampaignID: "und", Template: inviteTemplate, Invites: invitesFor(total, groups)})
		done := s.completed(t, "und", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("und"), total)
		if done.Counts.Sent != total-3 || done.Counts.Failed != 3 || done.Counts.FailedByCode["131026"] != 3 {
			t.Fatalf("counts %+v, want 3 failed with 131026 and the rest sent", done.Counts)
		}
	})

	t.Run("invites Meta later reports failed (131026) are counted undelivered", func(t *testing.T) {
		t.Parallel()
		const total = 20
		s, groups := campaignStack(t, 2)
		for _, i := range []int{3, 17} {
			if err := s.sim.SetUndeliverable(recipient(i), sim.UndeliverableAsync); err != nil {
				t.Fatal(err)
			}
		}
		s.startWorker(t)
		startCampaign(t, s, "start-late", events.StartInviteCampaignParams{CampaignID: "late", Template: inviteTemplate, Invites: invitesFor(total, groups)})
		done := s.completed(t, "late", 2*time.Minute)
		checkCounts(t, done.Counts, s.inviteOutcomes("late"), total)
		// Meta accepted every send: the failures come as statuses, also
		// after the end.
		st := s.waitCampaign(t, "late", "two failed statuses counted", func(st jobs.CampaignStatus) bool {
			return st.Counts.Undelivered >= 2
		})
		if c := st.Counts; c.Sent != total || c.Failed != 0 || c.Undelivered != 2 || c.UndeliveredByCode["131026"] != 2 {
			t.Fatalf("counts %+v, want every invite sent and 2 of them undelivered with 131026", c)
		}
	})
}

func TestCampaignInviteeJoined(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 3)
	s.startWorker(t)
	invites := invitesFor(12, groups)
	startCampaign(t, s, "start-join", events.StartInviteCampaignParams{CampaignID: "join", Template: inviteTemplate, Invites: invites})
	done := s.completed(t, "join", 2*time.Minute)
	if done.Counts.Sent != 12 {
		t.Fatalf("counts %+v, want 12 sent", done.Counts)
	}

	// Invite 4 joins the group they were invited to; someone else joins
	// another group; invite 5 joins, leaves and joins again.
	link := func(g string) string {
		gs, _ := s.sim.Group(g)
		return gs.InviteLink
	}
	for _, j := range []struct{ who, group string }{
		{recipient(4), invites[4].GroupID}, {"15559999999", invites[0].GroupID}, {recipient(5), invites[5].GroupID},
	} {
		if _, err := s.sim.Join(j.who, link(j.group)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.sim.Leave(recipient(5), invites[5].GroupID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sim.Join(recipient(5), link(invites[5].GroupID)); err != nil {
		t.Fatal(err)
	}

	st := s.waitCampaign(t, "join", "two joins counted", func(st jobs.CampaignStatus) bool { return st.Counts.Joined == 2 })
	s.events.WaitFor(t, "two campaign.invitee_joined events", func() bool {
		return len(s.campaignEvents(events.EventCampaignInviteeJoined, "join")) >= 2
	})
	s.events.WaitFor(t, "the other joiner's group.participants_joined", func() bool {
		return len(s.events.Filter(func(r testutil.Event) bool {
			return r.Type == events.EventGroupParticipantsJoined && strings.Contains(string(r.Data), "15559999999")
		})) > 0
	})
	time.Sleep(200 * time.Millisecond) // a third, wrong, event would come now
	joined := s.campaignEvents(events.EventCampaignInviteeJoined, "join")
	if len(joined) != 2 {
		t.Fatalf("%d campaign.invitee_joined events, want 2 (the rejoin is the same invitee)", len(joined))
	}
	var j events.CampaignInviteeJoined
	for _, r := range joined {
		if _ = json.Unmarshal(r.Data, &j); j.To == recipient(4) {
			break
		}
	}
	if j.To != recipient(4) || j.GroupID != invites[4].GroupID || j.Participant.WAID != recipient(4) || j.MessageID == "" {
		t.Fatalf("campaign.invitee_joined %+v, want invite 4's recipient, group and message", j)
	}
	if st.Counts.Joined != 2 {
		t.Fatalf("joined %d, want 2", st.Counts.Joined)
	}

	// The funnel: statuses of the invites are counted (also after the end,
	// for a while), and carry the campaign.
	st = s.waitCampaign(t, "join", "delivered and read statuses counted", func(st jobs.CampaignStatus) bool {
		return st.Counts.Delivered > 0 && st.Counts.Read > 0
	})
	if c := st.Counts; c.Read > c.Delivered || c.Delivered > c.Sent || c.Joined > c.Sent {
		t.Fatalf("funnel sent %d → delivered %d → read %d → joined %d does not narrow", c.Sent, c.Delivered, c.Read, c.Joined)
	}
	statuses := s.events.Filter(func(r testutil.Event) bool {
		var ms events.MessageStatus
		return r.Type == events.EventMessageStatus && json.Unmarshal(r.Data, &ms) == nil && ms.CampaignID == "join"
	})
	if len(statuses) == 0 {
		t.Fatal("no message.status event names the campaign")
	}
}

// TestEnsureInviteTemplateChangesNothingTheSecondTime extends
// TestEnsureInviteTemplate: whatever happens to the first add, the account
// ends with one template, and later runs make no call that changes
// anything.
func TestEnsureInviteTemplateChangesNothingTheSecondTime(t *testing.T) {
	t.Parallel()
	s := setup(t, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointCreateTemplate}, LostResponse: 1, Limit: 1}
	})
	s.startWorker(t)
	p := events.EnsureInviteTemplateParams{WABAID: sim.DefaultWABAID, Name: "campaign_invite", Language: "en"}
	for i := range 3 {
		id := fmt.Sprint("tpl-lost-", i)
		s.publish(t, command(id, events.EnsureInviteTemplate, "", p))
		r := s.terminal(t, id)
		wantOutcome(t, r, events.OutcomeSucceeded)
		var res events.EnsureInviteTemplateResult
		if err := json.Unmarshal(r.Result, &res); err != nil || res.Name != p.Name || res.Language != p.Language || res.TemplateID == "" || res.Status == "" {
			t.Fatalf("run %d: result %s, want the template's name, language, id and status", i, r.Result)
		}
	}
	if n := s.calls(sim.EndpointCreateTemplate); n != 1 {
		t.Fatalf("%d template creations over three runs (the first answer lost), want 1", n)
	}
	got, err := s.graph.AccountTemplates(context.Background(), sim.DefaultWABAID, p.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Category != "UTILITY" {
		t.Fatalf("account templates named %s: %+v, want one utility template", p.Name, got)
	}
}

// campaign.progress is throttled (DESIGN §4; Config.ProgressInterval, 1 s
// by default): a campaign sending for a few seconds says where it is about
// once a second, not at each of the fan-out's 100 ms steps (25 events in
// this test with a 100 ms interval), nor per invite.
func TestCampaignProgressIsThrottled(t *testing.T) {
	t.Parallel()
	s, groups := campaignStack(t, 5, func(o *stackOpts) {
		o.sim.Faults = sim.Faults{Endpoints: []string{sim.EndpointSendMessage}, Latency: 50 * time.Millisecond}
	})
	s.sim.SetWebhookURL("")
	s.startWorker(t)
	invites := invitesFor(200, groups)
	startCampaign(t, s, "start-paced", events.StartInviteCampaignParams{CampaignID: "paced", Template: inviteTemplate, Invites: invites})
	done := s.completed(t, "paced", 2*time.Minute)
	if done.Counts.Sent != len(invites) {
		t.Fatalf("counts %+v, want every invite sent", done.Counts)
	}
	started := s.campaignEvents(events.EventCampaignStarted, "paced")
	completed := s.campaignEvents(events.EventCampaignCompleted, "paced")
	if len(started) != 1 || len(completed) != 1 {
		t.Fatalf("%d campaign.started and %d campaign.completed events, want one each", len(started), len(completed))
	}
	span := eventTime(t, completed[0]).Sub(eventTime(t, started[0]))
	progress := s.campaignEvents(events.EventCampaignProgress, "paced")
	// One a second, and one at each change of state (running, ...).
	if most := int(span/time.Second) + 3; len(progress) == 0 || len(progress) > most {
		t.Errorf("%d campaign.progress events over %v, want 1 to %d", len(progress), span.Round(time.Millisecond), most)
	}
}

// eventTime is e's CloudEvent time.
func eventTime(t testing.TB, e testutil.Event) time.Time {
	t.Helper()
	var ce struct{ Time time.Time }
	if err := json.Unmarshal(e.Raw, &ce); err != nil {
		t.Fatalf("%s event time: %v", e.Type, err)
	}
	return ce.Time
}
