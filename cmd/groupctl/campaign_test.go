package main

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

func TestCampaignStatusFromEvents(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	tpl := events.TemplateRef{Name: "invite", Language: "en"}
	b.publishEvent(t, phone, events.EventCampaignStarted, "c1-start", events.CampaignStarted{CampaignID: "c1", CommandID: "c1-cmd", Template: tpl, Total: 4})
	b.publishEvent(t, phone, events.EventCampaignProgress, "c1-p1", events.CampaignProgress{CampaignID: "c1", Counts: events.CampaignCounts{Total: 4, Pending: 2, Sent: 2}})
	// Another campaign's events do not count.
	b.publishEvent(t, phone, events.EventCampaignProgress, "c2-p1", events.CampaignProgress{CampaignID: "c2", Counts: events.CampaignCounts{Total: 9, Sent: 9}})

	r := b.groupctl(t, "campaign", "status", "c1")
	wantCode(t, r, 0)
	wantContains(t, "running campaign", r.stdout, "campaign c1 — template invite/en, command c1-cmd",
		"[###############---------------]  50% 2/4 done: 2 sent, 0 failed, 0 joined — running")

	b.publishEvent(t, phone, events.EventCampaignInviteeJoined, "c1-j1", events.CampaignInviteeJoined{CampaignID: "c1", GroupID: "G", To: "15550001"})
	b.publishEvent(t, phone, events.EventCampaignCompleted, "c1-done", events.CampaignCompleted{CampaignID: "c1", CommandID: "c1-cmd",
		State: events.CampaignStateCompleted, Counts: events.CampaignCounts{Total: 4, Sent: 3, Failed: 1, Joined: 1}})

	// --watch ends by itself once the campaign is over.
	r = b.groupctl(t, "campaign", "status", "c1", "--watch", "--json")
	wantCode(t, r, 0)
	var v campaignView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("--json printed %q: %v", r.stdout, err)
	}
	want := events.CampaignCounts{Total: 4, Sent: 3, Failed: 1, Joined: 1}
	if v.State != events.CampaignStateCompleted || !reflect.DeepEqual(v.Counts, want) || v.Template != tpl || v.Source != "events" {
		t.Fatalf("view %+v, want completed with %+v", v, want)
	}

	r = b.groupctl(t, "campaign", "status", "c-unknown")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "campaign c-unknown is unknown")
}

func TestCampaignStatusOfARealCampaign(t *testing.T) {
	t.Parallel()
	s := setupStack(t)
	g := s.createGroup(t, "k-create", "Campaign group")
	r := s.groupctl(t, "submit", "ensure_invite_template", "--phone", phone, "--waba", sim.DefaultWABAID, "--name", "invite", "--wait")
	wantCode(t, r, 0)

	r = s.groupctl(t, "submit", "start_invite_campaign", "--phone", phone, "--id", "k-start", "--campaign-id", "k:1",
		"--template", "invite", "--invite-group", g.GroupID, "--to", "15550000011,15550000012,15550000013", "--wait")
	wantCode(t, r, 0)
	wantContains(t, "campaign result", r.stdout, "start_invite_campaign k-start: campaign k:1")

	s.simJoin(t, "15550000012", g.InviteLink)
	var v campaignView
	eventually(t, "the join to count", func() bool {
		r = s.groupctl(t, "campaign", "status", "k:1", "--json")
		v = campaignView{}
		return r.code == 0 && json.Unmarshal([]byte(r.stdout), &v) == nil && v.Counts.Joined == 1
	})
	if v.Source != "kv" || v.State != events.CampaignStateCompleted || v.Counts.Total != 3 || v.Counts.Sent != 3 ||
		v.CommandID != "k-start" || v.PhoneNumberID != phone || v.Template.Name != "invite" {
		t.Fatalf("view %+v, want the bucket's completed campaign of 3 sent invites with its start event's template", v)
	}
	r = s.groupctl(t, "campaign", "status", "k:1")
	wantCode(t, r, 0)
	wantContains(t, "campaign status", r.stdout, "campaign k:1 — template invite/en, command k-start, phone "+phone,
		"[##############################] 100% 3/3 done: 3 sent, 0 failed", "1 joined — completed")
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		done, total int
		want        string
	}{
		{0, 0, "[----------]   0%"},
		{0, 4, "[----------]   0%"},
		{1, 3, "[###-------]  33%"},
		{4, 4, "[##########] 100%"},
		{9, 4, "[##########] 100%"},
	} {
		if got := progressBar(tc.done, tc.total, 10); got != tc.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}
