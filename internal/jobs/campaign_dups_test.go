package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// putList stores invites in the campaign list object store as NDJSON, or
// as one JSON array.
func (s *stack) putList(t testing.TB, name string, invites []events.Invite, array bool) events.ObjectRef {
	t.Helper()
	store, err := s.js.ObjectStore(context.Background(), s.names.CampaignListStore())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if array {
		raw, _ := json.Marshal(invites)
		b.Write(raw)
	} else {
		for _, inv := range invites {
			fmt.Fprintf(&b, "{\"to\":%q,\"group_id\":%q}\n", inv.To, inv.GroupID)
		}
	}
	if _, err := store.PutBytes(context.Background(), name, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	return events.ObjectRef{Bucket: s.names.CampaignListStore(), Name: name}
}

// sendsByRecipient counts the sends that took effect by recipient (digits
// only, as Meta compares numbers) and group.
func (s *stack) sendsByRecipient() map[[2]string]int {
	out := map[[2]string]int{}
	for k, calls := range s.sends() {
		out[[2]string{strings.TrimPrefix(k[0], "+"), k[1]}] += len(calls)
	}
	return out
}

// withDuplicates is distinct invites followed by each of them again, the
// odd ones written with a leading + (one number for Meta and for the
// inline validation).
func withDuplicates(distinct []events.Invite) []events.Invite {
	out := append([]events.Invite(nil), distinct...)
	for i, inv := range distinct {
		if i%2 == 1 {
			inv.To = "+" + inv.To
		}
		out = append(out, inv)
	}
	return out
}

// checkInvitedOnce checks that no recipient got an invite to one group
// twice, and that every invite the counts call sent was.
func checkInvitedOnce(t testing.TB, s *stack, distinct []events.Invite, c events.CampaignCounts) {
	t.Helper()
	got := s.sendsByRecipient()
	for k, n := range got {
		if n != 1 {
			t.Fatalf("%d sends to %s for group %s, want 1", n, k[0], k[1])
		}
	}
	// Unknown invites may or may not have reached the simulator.
	if len(got) < c.Sent || len(got) > c.Sent+c.Unknown {
		t.Fatalf("sends to %d recipient-group pairs, counts %+v", len(got), c)
	}
	if c.Sent+c.Unknown+c.Failed != len(distinct) || c.Duplicates != c.Total-len(distinct) {
		t.Fatalf("counts %+v, want %d invites sent (or unknown or failed) and %d duplicates", c, len(distinct), c.Total-len(distinct))
	}
}

func TestCampaignListInvitesEachRecipientOnce(t *testing.T) {
	t.Parallel()
	for _, array := range []bool{false, true} {
		name := "NDJSON list"
		if array {
			name = "JSON array list"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, groups := campaignStack(t, 3)
			s.sim.SetWebhookURL("")
			s.startWorker(t)
			distinct := invitesFor(30, groups)
			// The same person in another group is another invite.
			distinct = append(distinct, events.Invite{To: distinct[0].To, GroupID: groups[1].ID})
			invites := withDuplicates(distinct)
			ref := s.putList(t, "dups", invites, array)
			startCampaign(t, s, "start-dups", events.StartInviteCampaignParams{CampaignID: "dups", Template: inviteTemplate, InvitesObject: &ref})

			done := s.completed(t, "dups", 2*time.Minute)
			checkCounts(t, done.Counts, s.inviteOutcomes("dups"), len(invites))
			checkInvitedOnce(t, s, distinct, done.Counts)
			if done.Counts.Sent != len(distinct) {
				t.Fatalf("counts %+v, want %d sent", done.Counts, len(distinct))
			}
			// The start command's result and the bucket say the same.
			var res events.CampaignResult
			if err := json.Unmarshal(s.terminalWithin(t, "start-dups", time.Minute).Result, &res); err != nil || res.Counts.Duplicates != len(invites)-len(distinct) {
				t.Fatalf("start command result %+v (%v), want %d duplicates", res, err, len(invites)-len(distinct))
			}
			st, err := jobs.ReadCampaign(context.Background(), s.kv(t, s.names.CampaignBucket()), "dups")
			if err != nil || st.Counts.Duplicates != len(invites)-len(distinct) || st.Counts.Pending != 0 {
				t.Fatalf("stored campaign %+v (%v), want %d duplicates and nothing pending", st, err, len(invites)-len(distinct))
			}
		})
	}
}

func TestCampaignListDuplicatesAreSkippedAfterATakeover(t *testing.T) {
	t.Parallel()
	const distinctN = 1500
	s, groups := campaignStack(t, 25)
	s.sim.SetWebhookURL("")
	killA := s.startKillableWorker(t, "worker-a")
	distinct := invitesFor(distinctN, groups)
	invites := withDuplicates(distinct)
	ref := s.putList(t, "dups.ndjson", invites, false)
	startCampaign(t, s, "start-dups", events.StartInviteCampaignParams{CampaignID: "dups", Template: inviteTemplate, InvitesObject: &ref})

	// Kill worker A while it is still in the first copy of the list, past
	// a checkpoint: its successor starts from there and must still know
	// every recipient before it.
	kv := s.kv(t, s.names.CampaignBucket())
	deadline := time.Now().Add(4 * time.Minute)
	for {
		st, err := jobs.ReadCampaign(context.Background(), kv, "dups")
		if err == nil && st.FannedOut >= 300 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign not past invite 300 in 4 minutes; it is at %+v (%v)", st, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	killA()
	st, _ := jobs.ReadCampaign(context.Background(), kv, "dups")
	if st.FannedOut >= distinctN {
		t.Skipf("worker A got past the first copy of the list (%d) before it was killed: nothing to take over", st.FannedOut)
	}
	s.startWorker(t, func(c *jobs.Config) { c.WorkerID = "worker-b" })

	done := s.completed(t, "dups", 3*time.Minute)
	t.Logf("worker A killed at fanned_out %d; final counts %+v", st.FannedOut, done.Counts)
	checkCounts(t, done.Counts, s.inviteOutcomes("dups"), len(invites))
	checkInvitedOnce(t, s, distinct, done.Counts)
}
