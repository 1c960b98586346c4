package main

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
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
		"[###############---------------]  50% 2/4 done: 2 sent, 0 failed, 0 joined running")

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

func TestCampaignStatusPrefersTheBucket(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	b.publishEvent(t, phone, events.EventCampaignStarted, "k1-start", events.CampaignStarted{CampaignID: "k:1", CommandID: "k1-cmd", Template: events.TemplateRef{Name: "invite", Language: "en"}, Total: 10})
	rec, _ := json.Marshal(map[string]any{"campaign_id": "k:1", "state": "running", "phone_number_id": phone,
		"counts": events.CampaignCounts{Total: 10, Pending: 3, Sent: 6, Unknown: 1}})
	if _, err := b.kv(t, b.names.CampaignBucket()).Put(context.Background(), campaignKey("k:1"), rec); err != nil {
		t.Fatal(err)
	}
	r := b.groupctl(t, "campaign", "status", "k:1", "--json")
	wantCode(t, r, 0)
	var v campaignView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Source != "kv" || v.Counts.Sent != 6 || v.Counts.Unknown != 1 || v.CommandID != "k1-cmd" || v.PhoneNumberID != phone {
		t.Fatalf("view %+v, want the bucket's counters with the start event's command", v)
	}
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
