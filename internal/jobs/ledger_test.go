package jobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/testutil"
)

func newLedger(t *testing.T) (*jobs.Ledger, *jobs.Correlations, *testutil.Clock) {
	t.Helper()
	b := setupNATS(t)
	clk := testutil.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	return jobs.NewLedger(b.kv(t, b.names.LedgerBucket()), clk.Now),
		jobs.NewCorrelations(b.kv(t, b.names.CorrelationBucket())), clk
}

func claimReq(id, token string) jobs.ClaimRequest {
	return jobs.ClaimRequest{CommandID: id, CommandType: "create_group", PhoneNumberID: "1", Token: token,
		Lease: 30 * time.Second, Command: json.RawMessage(`{"id":"` + id + `"}`)}
}

// mustClaim claims a command that is not in the ledger yet.
func mustClaim(ctx context.Context, t *testing.T, l *jobs.Ledger, r jobs.ClaimRequest) {
	t.Helper()
	if s, _, err := l.Claim(ctx, r); err != nil || s != jobs.Claimed {
		t.Fatalf("Claim(%s) = %v, %v; want Claimed", r.CommandID, s, err)
	}
}

func TestEntryConflictTellsAnotherCommandFromAReSend(t *testing.T) {
	t.Parallel()
	sent := events.Command{ID: "c-1", Type: events.ResetInviteLink, PhoneNumberID: "1065", GroupID: "g-1"}
	entry := jobs.Entry{CommandID: "c-1", CommandType: events.ResetInviteLink, PhoneNumberID: "1065",
		Command: json.RawMessage(`{"id":"c-1","type":"reset_invite_link","phone_number_id":"1065","group_id":"g-1"}`)}
	for _, tc := range []struct {
		name     string
		mutate   func(*events.Command)
		conflict bool
	}{
		{"The same command is a re-send", func(*events.Command) {}, false},
		{"Another type conflicts", func(c *events.Command) { c.Type = events.GetInviteLink }, true},
		{"Another number conflicts", func(c *events.Command) { c.PhoneNumberID = "1066" }, true},
		{"Another group conflicts", func(c *events.Command) { c.GroupID = "g-2" }, true},
		{"No group conflicts", func(c *events.Command) { c.GroupID = "" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := sent
			tc.mutate(&cmd)
			if why := entry.Conflict(cmd); (why != "") != tc.conflict {
				t.Errorf("Conflict(%+v) = %q, want a conflict: %v", cmd, why, tc.conflict)
			}
		})
	}
	t.Run("What the entry does not record is not compared", func(t *testing.T) {
		if why := (jobs.Entry{CommandID: "c-1"}).Conflict(sent); why != "" {
			t.Errorf("Conflict with a bare entry = %q, want none", why)
		}
	})
}

func TestLedgerKeyEscapesWhatKVKeysForbid(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]string{
		"order-4711_approve": "cmd.order-4711_approve",
		"a:b":                "cmd.a=3Ab",
		"..x.":               "cmd.=2E=2Ex=2E",
	} {
		if got := jobs.LedgerKey(id); got != want {
			t.Errorf("LedgerKey(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestClaimOnlyOneOfManyConcurrentClaimersWins(t *testing.T) {
	t.Parallel()
	l, _, _ := newLedger(t)
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]jobs.ClaimStatus, n)
	for i := range n {
		wg.Go(func() {
			s, _, err := l.Claim(ctx, claimReq("c:1", fmt.Sprint("w", i)))
			if err != nil {
				t.Errorf("claim %d: %v", i, err)
			}
			statuses[i] = s
		})
	}
	wg.Wait()
	claimed := 0
	for _, s := range statuses {
		if s == jobs.Claimed {
			claimed++
		} else if s != jobs.HeldElsewhere {
			t.Errorf("status %v, want claimed or held", s)
		}
	}
	if claimed != 1 {
		t.Fatalf("%d claimers won, want exactly 1 (%v)", claimed, statuses)
	}
}

func TestClaimTakesOverAnExpiredLease(t *testing.T) {
	t.Parallel()
	l, _, clk := newLedger(t)
	ctx := context.Background()
	if s, _, _ := l.Claim(ctx, claimReq("c2", "w1")); s != jobs.Claimed {
		t.Fatalf("first claim = %v", s)
	}
	if s, e, _ := l.Claim(ctx, claimReq("c2", "w2")); s != jobs.HeldElsewhere || e.Owner != "w1" {
		t.Fatalf("claim during w1's lease = %v owner %q, want held by w1", s, e.Owner)
	}
	clk.Advance(31 * time.Second)
	s, e, _ := l.Claim(ctx, claimReq("c2", "w2"))
	if s != jobs.Claimed || e.Owner != "w2" {
		t.Fatalf("claim after lease expiry = %v owner %q, want claimed by w2", s, e.Owner)
	}
	// w1 stopped mid-command without a word: the history says so, so that
	// w2 treats whatever call w1 was making as possibly made.
	if len(e.Attempts) != 1 || e.Attempts[0].Outcome != jobs.AttemptAbandoned {
		t.Fatalf("attempts after the takeover = %+v, want one %q", e.Attempts, jobs.AttemptAbandoned)
	}
	if err := l.Renew(ctx, "c2", "w1", time.Minute); !errors.Is(err, jobs.ErrNotOwner) {
		t.Fatalf("old owner renewing = %v, want ErrNotOwner", err)
	}
}

func TestReleasedClaimIsClaimedAgainWithHistory(t *testing.T) {
	t.Parallel()
	l, _, _ := newLedger(t)
	ctx := context.Background()
	mustClaim(ctx, t, l, claimReq("c3", "w1"))
	if err := l.Release(ctx, "c3", "w1", jobs.Attempt{Outcome: "transient", Code: 2}); err != nil {
		t.Fatal(err)
	}
	s, e, err := l.Claim(ctx, claimReq("c3", "w2"))
	if err != nil || s != jobs.Claimed {
		t.Fatalf("claim after release = %v, %v", s, err)
	}
	if len(e.Attempts) != 1 || e.Attempts[0].Code != 2 {
		t.Fatalf("attempts = %+v, want the released one", e.Attempts)
	}
}

func TestFinishHappensExactlyOnce(t *testing.T) {
	t.Parallel()
	l, _, _ := newLedger(t)
	ctx := context.Background()
	mustClaim(ctx, t, l, claimReq("c4", "w1"))
	if _, err := l.Await(ctx, "c4", "w1", []jobs.Pending{{RequestID: "r1"}}, time.Now().Add(time.Minute), jobs.Attempt{Outcome: "awaiting_webhook"}); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := l.Claim(ctx, claimReq("c4", "w2")); s != jobs.Awaiting {
		t.Fatalf("claim of an awaiting command = %v, want awaiting", s)
	}
	ids, err := l.AwaitingIDs(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "c4" {
		t.Fatalf("awaiting ids = %v, %v; want [c4]", ids, err)
	}
	const n = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range n {
		wg.Go(func() {
			_, err := l.Finish(ctx, "c4", "", jobs.StateSucceeded, jobs.Terminal{Type: "command.succeeded", MsgID: fmt.Sprint(i)}, nil, nil)
			if err == nil {
				mu.Lock()
				won++
				mu.Unlock()
			} else if !errors.Is(err, jobs.ErrTerminal) {
				t.Errorf("finish: %v", err)
			}
		})
	}
	wg.Wait()
	if won != 1 {
		t.Fatalf("%d finishers won, want 1", won)
	}
	if s, e, _ := l.Claim(ctx, claimReq("c4", "w3")); s != jobs.AlreadyTerminal || e.Result == nil {
		t.Fatalf("claim after finish = %v result %v, want terminal with result", s, e.Result)
	}
	if err := l.MarkPublished(ctx, "c4"); err != nil {
		t.Fatal(err)
	}
	if ids, _ := l.AwaitingIDs(ctx); len(ids) != 0 {
		t.Fatalf("awaiting ids after publish = %v, want none", ids)
	}
}

func TestIntentWithoutOutcomeSurvivesTakeover(t *testing.T) {
	t.Parallel()
	l, _, clk := newLedger(t)
	ctx := context.Background()
	mustClaim(ctx, t, l, claimReq("c5", "w1"))
	if err := l.RecordIntent(ctx, "c5", "w1", "create_group"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute) // w1 died mid-call
	_, e, _ := l.Claim(ctx, claimReq("c5", "w2"))
	if e.Intent == nil || e.Intent.Done || e.Intent.Op != "create_group" {
		t.Fatalf("intent after takeover = %+v, want an open create_group intent", e.Intent)
	}
	if err := l.RecordIntent(ctx, "c5", "w1", "create_group"); !errors.Is(err, jobs.ErrNotOwner) {
		t.Fatalf("old owner recording = %v, want ErrNotOwner", err)
	}
	if err := l.RecordOutcome(ctx, "c5", "w2", map[string]string{"group_id": "g"}); err != nil {
		t.Fatal(err)
	}
	e, _, _ = l.Get(ctx, "c5")
	if !e.Intent.Done || string(e.Intent.Outcome) != `{"group_id":"g"}` {
		t.Fatalf("intent = %+v, want done with the outcome", e.Intent)
	}
}

func TestFinishNewLeavesExistingEntriesAlone(t *testing.T) {
	t.Parallel()
	l, _, _ := newLedger(t)
	ctx := context.Background()
	mustClaim(ctx, t, l, claimReq("c6", "w1"))
	_, err := l.FinishNew(ctx, jobs.Entry{CommandID: "c6", State: jobs.StateRejected, Result: &jobs.Terminal{Type: "command.rejected"}})
	if !errors.Is(err, jobs.ErrExists) {
		t.Fatalf("FinishNew over a running entry = %v, want ErrExists", err)
	}
	if _, err := l.FinishNew(ctx, jobs.Entry{CommandID: "c7", State: jobs.StateRejected, Result: &jobs.Terminal{Type: "command.rejected"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.FinishNew(ctx, jobs.Entry{CommandID: "c7", State: jobs.StateRejected}); !errors.Is(err, jobs.ErrTerminal) {
		t.Fatalf("second FinishNew = %v, want ErrTerminal", err)
	}
}

// A parked command is queued in the ledger before anyone claims it; the
// first claim takes the entry over, and queuing again changes nothing.
func TestQueuedCommandIsClaimedLikeANewOne(t *testing.T) {
	t.Parallel()
	l, _, clk := newLedger(t)
	ctx := context.Background()
	r := claimReq("q1", "")
	r.Traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	if err := l.Queue(ctx, r); err != nil {
		t.Fatal(err)
	}
	e, _, err := l.Get(ctx, "q1")
	if err != nil || e.State != jobs.StateQueued || e.Owner != "" || e.Traceparent != r.Traceparent || string(e.Command) != string(r.Command) {
		t.Fatalf("after Queue: %+v, %v; want a queued entry with the command and no owner", e, err)
	}
	queuedAt := e.CreatedAt

	clk.Advance(time.Minute)
	mustClaim(ctx, t, l, claimReq("q1", "w1"))
	if err := l.Queue(ctx, claimReq("q1", "")); err != nil {
		t.Fatalf("Queue over a claimed entry: %v", err)
	}
	e, _, err = l.Get(ctx, "q1")
	if err != nil || e.State != jobs.StateRunning || e.Owner != "w1" || !e.CreatedAt.Equal(queuedAt) {
		t.Fatalf("after Claim and Queue again: %+v, %v; want running, owned by w1, created when queued", e, err)
	}
	if s, _, err := l.Claim(ctx, claimReq("q1", "w2")); err != nil || s != jobs.HeldElsewhere {
		t.Fatalf("second claim = %v, %v; want HeldElsewhere", s, err)
	}
	if err := l.Queue(ctx, jobs.ClaimRequest{CommandID: "q2", Command: json.RawMessage("{")}); err == nil {
		t.Fatal("Queue stored a command that is not JSON")
	}
}

func TestCorrelationMeetsWhicheverSideComesFirst(t *testing.T) {
	t.Parallel()
	_, c, _ := newLedger(t)
	ctx := context.Background()

	t.Run("link first", func(t *testing.T) {
		early, err := c.Link(ctx, "r1", "cmd1")
		if err != nil || early != nil {
			t.Fatalf("link = %v, %v", early, err)
		}
		id, err := c.Arrive(ctx, "r1", json.RawMessage(`{"n":1}`))
		if err != nil || id != "cmd1" {
			t.Fatalf("arrive = %q, %v; want cmd1", id, err)
		}
	})
	t.Run("webhook first", func(t *testing.T) {
		id, err := c.Arrive(ctx, "r2", json.RawMessage(`{"n":2}`))
		if err != nil || id != "" {
			t.Fatalf("early arrive = %q, %v; want kept", id, err)
		}
		early, err := c.Link(ctx, "r2", "cmd2")
		if err != nil || len(early) != 1 || string(early[0]) != `{"n":2}` {
			t.Fatalf("link = %s, %v; want the early item", early, err)
		}
		if id, _ := c.Arrive(ctx, "r2", json.RawMessage(`{"n":3}`)); id != "cmd2" {
			t.Fatalf("later arrive = %q, want cmd2", id)
		}
	})
	t.Run("racing", func(t *testing.T) {
		for i := range 10 {
			rid := fmt.Sprint("race", i)
			var wg sync.WaitGroup
			var linked, arrived string
			var early []json.RawMessage
			wg.Go(func() { early, _ = c.Link(ctx, rid, "cmd") })
			wg.Go(func() { arrived, _ = c.Arrive(ctx, rid, json.RawMessage(`{}`)) })
			wg.Wait()
			linked = arrived
			if (linked == "cmd") == (len(early) == 1) {
				t.Fatalf("round %d: webhook saw %q and link saw %d early items; exactly one side must see the other", i, linked, len(early))
			}
		}
	})
}

// A part of a command's progress is written over whatever a crash or an
// earlier execution left when its writer says it starts it (revision 0),
// and otherwise only at the revision its writer last saw: a part written
// meanwhile was written by another holder of the command.
func TestProgressPartsAreWrittenByCompareAndSet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l, _, _ := newLedger(t)
	if b, rev, err := l.Part(ctx, "c.1", 0); err != nil || b != nil || rev != 0 {
		t.Fatalf("Part of nothing = %q, %d, %v; want nil, 0, nil", b, rev, err)
	}
	if _, err := l.PutPart(ctx, "c.1", 0, []byte(`"left over"`), 0); err != nil {
		t.Fatal(err)
	}
	rev, err := l.PutPart(ctx, "c.1", 0, []byte(`"started"`), 0)
	if err != nil {
		t.Fatalf("PutPart over a leftover: %v", err)
	}
	other, err := l.PutPart(ctx, "c.1", 0, []byte(`"another holder's"`), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.PutPart(ctx, "c.1", 0, []byte(`"stale"`), rev); !errors.Is(err, jobs.ErrNotOwner) {
		t.Fatalf("PutPart at a stale revision: %v, want ErrNotOwner", err)
	}
	if b, got, err := l.Part(ctx, "c.1", 0); err != nil || string(b) != `"another holder's"` || got != other {
		t.Fatalf("Part = %q at %d, %v; want the other holder's at %d", b, got, err, other)
	}
	if b, _, err := l.Part(ctx, "c", 0); err != nil || b != nil {
		t.Fatalf("Part of another command = %q, %v; want nothing", b, err)
	}
}
