package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
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
func (s *stack) campaignEvents(typ, campaignID string) []recorded {
	return s.events.filter(func(r recorded) bool {
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
	for _, r := range s.events.filter(func(r recorded) bool { return events.IsTerminal(r.Type) }) {
		var cr events.CommandResult
		if json.Unmarshal(r.Data, &cr) != nil || cr.CommandType != events.SendGroupInvite {
			continue
		}
		i := strings.LastIndexByte(cr.CommandID, ':')
		if i < 0 || cr.CommandID[:i] != campaignID || seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		var n int
		fmt.Sscan(cr.CommandID[i+1:], &n)
		out[n] = append(out[n], cr)
	}
	return out
}

// sends returns the simulator's send calls that took effect (answered,
// or performed and their answer lost), by recipient and group.
func (s *stack) sends() map[[2]string][]sim.Call {
	out := map[[2]string][]sim.Call{}
	for _, c := range s.sim.Calls() {
		if c.Endpoint != sim.EndpointSendMessage || !(c.Status == 200 || c.Fault == "lost_response") {
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
	if c.Total != total || c.Sent+c.Failed+c.Cancelled+c.Unknown+c.Pending != total || c.Pending != 0 {
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

	done := s.completed(t, "small", 30*time.Second)
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
	r := s.terminal(t, "start-small")
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
