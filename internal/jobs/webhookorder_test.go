package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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
)

// asyncCase is an asynchronous command (completed by its webhooks) as
// TestAsyncCommandsCompleteWhateverTheWebhookOrder runs it: start prepares
// the simulator and returns the command, which makes webhooks webhooks;
// check looks at its result and the simulator's state.
type asyncCase struct {
	typ      string
	webhooks int
	start    func(t *testing.T, s *stack) events.Command
	check    func(t *testing.T, s *stack, c events.Command, r events.CommandResult)
}

func asyncCases() []asyncCase {
	return []asyncCase{
		{
			typ: events.CreateGroup, webhooks: 1,
			start: func(*testing.T, *stack) events.Command {
				return command("async-create", events.CreateGroup, "", events.CreateGroupParams{Subject: "Made once"})
			},
			check: func(t *testing.T, s *stack, _ events.Command, r events.CommandResult) {
				wantOutcome(t, r, events.OutcomeSucceeded)
				if g, ok := s.sim.Group(r.GroupID); !ok || g.Subject != "Made once" || s.groupsWithSubject("Made once") != 1 {
					t.Errorf("result names group %q (%+v); want the one group made", r.GroupID, g)
				}
			},
		},
		{
			typ: events.DeleteGroup, webhooks: 1,
			start: func(t *testing.T, s *stack) events.Command {
				return command("async-delete", events.DeleteGroup, s.newGroup(t, "Deleted once", "").ID, nil)
			},
			check: func(t *testing.T, s *stack, c events.Command, r events.CommandResult) {
				wantOutcome(t, r, events.OutcomeSucceeded)
				if g, _ := s.sim.Group(c.GroupID); !g.Deleted {
					t.Errorf("group %s not deleted", c.GroupID)
				}
			},
		},
		{
			// The subject and the picture are two requests, two webhooks.
			typ: events.UpdateGroupSettings, webhooks: 2,
			start: func(t *testing.T, s *stack) events.Command {
				g := s.newGroup(t, "Before", "")
				return command("async-settings", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{
					Subject: ptr("After"), ProfilePicture: &events.Picture{MediaBase64: squareJPEG(t, 200)},
				})
			},
			check: func(t *testing.T, s *stack, c events.Command, r events.CommandResult) {
				wantOutcome(t, r, events.OutcomeSucceeded)
				if g, _ := s.sim.Group(c.GroupID); g.Subject != "After" || g.PictureSHA256 == "" {
					t.Errorf("group = %+v, want the new subject and a picture", g)
				}
			},
		},
		{
			// Nine names: two chunks (8 + 1), two webhooks; the stranger
			// fails in its webhook.
			typ: events.RemoveParticipants, webhooks: 2,
			start: func(t *testing.T, s *stack) events.Command {
				g := s.newGroup(t, "Emptied", "")
				var names []string
				for i := range 8 {
					names = append(names, fmt.Sprintf("1555000060%d", i))
				}
				s.members(t, g, names...)
				names = append(names, "15559999960")
				return command("async-remove", events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: names})
			},
			check: func(t *testing.T, s *stack, c events.Command, r events.CommandResult) {
				wantOutcome(t, r, events.OutcomePartiallySucceeded)
				got := itemsByID(r)
				for i := range 8 {
					if m := fmt.Sprintf("1555000060%d", i); got[m].Outcome != events.ItemRemoved {
						t.Errorf("%s: %+v, want removed", m, got[m])
					}
				}
				if x := got["15559999960"]; x.Outcome != events.ItemFailed || x.Code != graph.CodeParticipantNotInGroup {
					t.Errorf("the stranger: %+v, want failed with 131212", x)
				}
				if g, _ := s.sim.Group(c.GroupID); len(g.Participants) != 0 {
					t.Errorf("participants left: %v", g.Participants)
				}
			},
		},
	}
}

// DESIGN §5: webhooks may arrive before the response is recorded, twice,
// or out of order; each asynchronous command type completes all the same,
// with one terminal event.
func TestAsyncCommandsCompleteWhateverTheWebhookOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range asyncCases() {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			t.Run("each webhook before the answer to its call", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				c := tc.start(t, s)
				s.startWorker(t, func(cfg *jobs.Config) {
					cfg.Graph = &earlyWebhookGraph{Graph: s.graph, corr: s.kv(t, s.names.CorrelationBucket())}
				})
				s.publish(t, c)
				tc.check(t, s, c, s.onlyTerminal(t, c.ID))
			})
			t.Run("every webhook twice", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				c := tc.start(t, s)
				s.startWorker(t)
				if err := s.sim.SetFaults(sim.Faults{WebhookDuplicate: 1}); err != nil {
					t.Fatal(err)
				}
				s.publish(t, c)
				tc.check(t, s, c, s.onlyTerminal(t, c.ID))
			})
			if tc.webhooks < 2 {
				return // no order to change
			}
			t.Run("webhooks in the reverse order of their calls", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				c, n := tc.start(t, s), tc.webhooks
				s.startWorker(t)
				// The webhooks of making the group and its members first.
				s.events.WaitFor(t, "the set-up's webhooks delivered", func() bool { return s.sim.PendingWebhooks() == 0 })
				url, passed := s.reverseWebhooks(t, n)
				s.sim.SetWebhookURL(url)
				s.publish(t, c)
				tc.check(t, s, c, s.onlyTerminal(t, c.ID))
				if got := passed(); got != n {
					t.Fatalf("%d webhooks passed on in reverse, want %d", got, n)
				}
			})
		})
	}
}

// onlyTerminal waits for the terminal event of command id and returns it,
// once every webhook is delivered and handled and it is still the only one.
func (s *stack) onlyTerminal(t *testing.T, id string) events.CommandResult {
	t.Helper()
	r := s.terminal(t, id)
	s.events.WaitFor(t, "every webhook delivered and handled", func() bool {
		if s.sim.PendingWebhooks() > 0 {
			return false
		}
		info, err := s.js.Consumer(context.Background(), s.names.WebhookStream(), s.names.WebhookConsumer())
		if err != nil {
			return false
		}
		ci, err := info.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	s.seenEveryEvent(t)
	if n := len(s.events.Terminals(id)); n != 1 {
		t.Fatalf("%d terminal events for %s, want 1", n, id)
	}
	return r
}

// earlyWebhookGraph answers an asynchronous call only once the webhook of
// its request has reached the worker and been kept for it (no command
// linked yet): every webhook comes before its answer is recorded.
type earlyWebhookGraph struct {
	jobs.Graph
	corr jetstream.KeyValue
}

func (g *earlyWebhookGraph) CreateGroup(ctx context.Context, phoneID string, req graph.CreateGroupRequest) (graph.CreateGroupResponse, error) {
	resp, err := g.Graph.CreateGroup(ctx, phoneID, req)
	return resp, g.early(ctx, err, resp.RequestID)
}

func (g *earlyWebhookGraph) DeleteGroup(ctx context.Context, groupID string) (graph.AsyncResult, error) {
	res, err := g.Graph.DeleteGroup(ctx, groupID)
	return res, g.early(ctx, err, res.RequestID)
}

func (g *earlyWebhookGraph) UpdateGroupSettings(ctx context.Context, groupID string, req graph.UpdateSettingsRequest) (graph.AsyncResult, error) {
	res, err := g.Graph.UpdateGroupSettings(ctx, groupID, req)
	return res, g.early(ctx, err, res.RequestID)
}

func (g *earlyWebhookGraph) UpdateGroupPicture(ctx context.Context, groupID string, jpeg []byte) (graph.AsyncResult, error) {
	res, err := g.Graph.UpdateGroupPicture(ctx, groupID, jpeg)
	return res, g.early(ctx, err, res.RequestID)
}

func (g *earlyWebhookGraph) RemoveParticipants(ctx context.Context, groupID string, participants []string) ([]graph.RemoveResult, error) {
	res, err := g.Graph.RemoveParticipants(ctx, groupID, participants)
	for _, r := range res {
		if err = g.early(ctx, err, r.RequestID); err != nil {
			break
		}
	}
	return res, err
}

// early waits until the correlation bucket keeps a webhook item of
// requestID (the key of jobs.Correlations, for the simulator's ids).
func (g *earlyWebhookGraph) early(ctx context.Context, err error, requestID string) error {
	if err != nil || requestID == "" {
		return err
	}
	for {
		if e, err := g.corr.Get(ctx, "req."+requestID); err == nil && bytes.Contains(e.Value(), []byte(`"early"`)) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// reverseWebhooks returns the URL of a stand-in for the webhook handler
// that takes the simulator's next n webhooks and passes them on, signed as
// they came, in the reverse order, and how many it passed on so far.
func (s *stack) reverseWebhooks(t *testing.T, n int) (string, func() int) {
	t.Helper()
	type held struct {
		body []byte
		sig  string
	}
	var mu sync.Mutex
	var got []held
	var passed atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, held{b, r.Header.Get("X-Hub-Signature-256")})
		all := len(got) == n
		mu.Unlock()
		if !all {
			return
		}
		for _, h := range slices.Backward(got) {
			req, _ := http.NewRequest(http.MethodPost, s.hooksURL, bytes.NewReader(h.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Hub-Signature-256", h.sig)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("pass a webhook on: %v", err)
				return
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("webhook handler answered %s", resp.Status)
			}
			passed.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { return int(passed.Load()) }
}

// A webhook that comes after its command failed with webhook_timeout
// changes nothing of the command: its failure stays the one terminal
// event. The webhook's own domain event is published all the same.
func TestAWebhookAfterTheTimeoutLeavesTheCommandFailed(t *testing.T) {
	t.Parallel()
	s := setup(t)
	// Seen as published, before the event stream's duplicate window
	// could hide a second terminal event under the same id.
	succeeded := corePublishes(t, s.nc, s.names.Event(phone, events.EventCommandSucceeded))
	s.startWorker(t, func(c *jobs.Config) { c.WebhookTimeout, c.SweepInterval = 300*time.Millisecond, 20*time.Millisecond })
	g := s.newGroup(t, "Deleted late", "")
	s.events.WaitFor(t, "the set-up's webhooks delivered", func() bool { return s.sim.PendingWebhooks() == 0 })
	url, release := s.holdWebhooks(t)
	s.sim.SetWebhookURL(url)
	s.publish(t, command("late-hook", events.DeleteGroup, g.ID, nil))
	wantFailure(t, s.terminal(t, "late-hook"), events.ReasonWebhookTimeout)

	release()
	s.events.WaitFor(t, "the late group.deleted", func() bool { return len(s.events.OfType(events.EventGroupDeleted)) == 1 })
	wantFailure(t, s.onlyTerminal(t, "late-hook"), events.ReasonWebhookTimeout)
	if n := len(succeeded()); n != 0 {
		t.Fatalf("%d command.succeeded published after the timeout, want none", n)
	}
	ledger := jobs.NewLedger(s.kv(t, s.names.LedgerBucket()), nil)
	if e, _, err := ledger.Get(context.Background(), "late-hook"); err != nil || e.State != jobs.StateFailed {
		t.Fatalf("ledger entry %s, %v; want failed", e.State, err)
	}
}

// holdWebhooks returns the URL of a stand-in for the webhook handler that
// keeps the simulator's webhooks until release, then passes them on.
func (s *stack) holdWebhooks(t *testing.T) (string, func()) {
	t.Helper()
	open := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-open:
		case <-r.Context().Done():
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, s.hooksURL, bytes.NewReader(b))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		_ = resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	var once sync.Once
	release := func() { once.Do(func() { close(open) }) }
	t.Cleanup(srv.Close)
	t.Cleanup(release) // before Close: a held request must not block it
	return srv.URL, release
}

// againFirstJS is a worker's JetStream on which publishing a command's
// run-again copy returns only once the copy has been taken and
// acknowledged, or after a second: the copy reaches a worker before the
// ledger says the command is to run again, as it may when the write is slow.
type againFirstJS struct {
	jetstream.JetStream
	commands string // the command stream
}

func (j *againFirstJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.PublishMsg(ctx, m, opts...)
	if err != nil || !strings.Contains(m.Header.Get(jetstream.MsgIDHeader), "/again/") {
		return ack, err
	}
	str, serr := j.Stream(ctx, j.commands)
	for deadline := time.Now().Add(time.Second); serr == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if _, err := str.GetMsg(ctx, ack.Sequence); errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
	}
	return ack, err
}

// A command whose webhook reports a transient error runs again from a copy
// published before the ledger records the run. A copy delivered in between
// finds the command still awaiting its webhook: it must come back once the
// run is recorded, not be taken as a duplicate of the awaiting command and
// acknowledged, which left the command queued with nothing to run it.
func TestARunAgainCopyBeforeItsRunIsRecordedIsNotLost(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t, func(c *jobs.Config) { c.JS = &againFirstJS{JetStream: s.js, commands: s.names.CommandStream()} })
	g := s.newGroup(t, "Run again", "")
	if err := s.sim.SetFaults(sim.Faults{AsyncFailure: 1, Limit: 1}); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("again-1", events.UpdateGroupSettings, g.ID, events.UpdateGroupSettingsParams{Subject: ptr("Renamed")}))
	wantOutcome(t, s.onlyTerminal(t, "again-1"), events.OutcomeSucceeded)
	if st, _ := s.sim.Group(g.ID); st.Subject != "Renamed" {
		t.Fatalf("subject %q, want Renamed", st.Subject)
	}
}
