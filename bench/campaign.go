package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// campaignGroups is how many groups a campaign's invites are spread over.
const campaignGroups = 50

// Campaign is an invite campaign prepared in a stack: its invite list in
// the campaign object store and the start command.
type Campaign struct {
	ID      string
	Start   events.Command
	Invites []events.Invite
}

// PrepareCampaign creates the groups and the template, writes n invites
// (distinct recipients) as NDJSON to the campaign list store and returns
// the start command, not yet published.
func (s *Stack) PrepareCampaign(ctx context.Context, id string, n int) (Campaign, error) {
	tpl, err := s.InviteTemplate(ctx)
	if err != nil {
		return Campaign{}, err
	}
	groups := make([]string, campaignGroups)
	for i := range groups {
		if groups[i], err = s.NewGroup(ctx, Phone, fmt.Sprintf("%s %d", id, i), ""); err != nil {
			return Campaign{}, err
		}
	}
	c := Campaign{ID: id, Invites: make([]events.Invite, n)}
	var list bytes.Buffer
	enc := json.NewEncoder(&list)
	for i := range c.Invites {
		c.Invites[i] = events.Invite{To: fmt.Sprintf("1888%07d", i), GroupID: groups[i%len(groups)]}
		if err := enc.Encode(c.Invites[i]); err != nil {
			return Campaign{}, err
		}
	}
	store, err := s.JS.ObjectStore(ctx, s.Names.CampaignListStore())
	if err != nil {
		return Campaign{}, fmt.Errorf("campaign list store: %w", err)
	}
	if _, err := store.PutBytes(ctx, id+".ndjson", list.Bytes()); err != nil {
		return Campaign{}, fmt.Errorf("store the invite list: %w", err)
	}
	c.Start = Command("start-"+id, events.StartInviteCampaign, Phone, "", events.StartInviteCampaignParams{
		CampaignID: id, Template: tpl,
		InvitesObject: &events.ObjectRef{Bucket: s.Names.CampaignListStore(), Name: id + ".ndjson"}})
	return c, nil
}

// campaignSim is a simulator enforcing mps messages per second per number,
// as Meta does, and answering statuses without reads.
func campaignSim(mps float64) sim.Config {
	cfg := quietSim()
	cfg.MPS = int(mps)
	cfg.Statuses = &sim.StatusBehavior{}
	cfg.CallLogSize = 1 << 20
	return cfg
}

// sendsByRecipient counts the sends the simulator acted on (answered 200,
// or acted on and the answer lost), by recipient and group, and returns
// their times.
func sendsByRecipient(calls []sim.Call) (map[[2]string]int, []time.Time) {
	out := map[[2]string]int{}
	var at []time.Time
	for _, c := range calls {
		if c.Endpoint != sim.EndpointSendMessage || (c.Status != 200 && (c.Fault != "lost_response" || c.Code != 0)) {
			continue
		}
		var body struct {
			To       string `json:"to"`
			Template struct {
				Components []struct {
					Parameters []struct {
						Type    string `json:"type"`
						GroupID string `json:"group_id"`
					} `json:"parameters"`
				} `json:"components"`
			} `json:"template"`
		}
		_ = json.Unmarshal([]byte(c.Body), &body)
		group := ""
		for _, comp := range body.Template.Components {
			for _, p := range comp.Parameters {
				group = cmp.Or(group, p.GroupID)
			}
		}
		out[[2]string{body.To, group}]++
		at = append(at, c.Time)
	}
	slices.SortFunc(at, time.Time.Compare)
	return out, at
}

// runCampaign runs a CampaignInvites-invite campaign through two worker
// processes at a message limit of CampaignMPS per second and compares its
// duration with the least possible, invites / limit.
func runCampaign(ctx context.Context, e *Env, r *Report) error {
	workers := e.Size.CampaignWorkers
	mps := e.Size.CampaignMPS
	s, err := e.NewStack(ctx, "campaign", StackConfig{Sim: campaignSim(mps)})
	if err != nil {
		return err
	}
	defer s.Close()
	// Status webhooks (two per send) would double the work on this small
	// machine without telling anything about the campaign's pace; the
	// sigkill chaos scenario and internal/jobs' campaign tests leave them
	// out too.
	s.Sim.SetWebhookURL("")
	n := e.Size.CampaignInvites
	c, err := s.PrepareCampaign(ctx, "bench", n)
	if err != nil {
		return err
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()
	env := append([]string{fmt.Sprintf("RATE_LIMIT_MESSAGES=%g", mps)}, noLimits[1:]...)
	sup, err := s.Supervise(ctx, e.Bins.Worker, "campaign", workers, WorkerOpts{Concurrency: campaignConcurrency, Env: env})
	if err != nil {
		return err
	}
	defer sup.Stop()
	s.Sim.ResetCalls()
	start := time.Now()
	if err := s.PublishOne(ctx, c.Start); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Duration(float64(n)/mps*float64(time.Second))*3+time.Minute)
	err = t.WaitIDs(wctx, []string{c.Start.ID})
	cancel()
	if err != nil {
		return fmt.Errorf("campaign not completed: %w", err)
	}
	end, _ := t.At(c.Start.ID)
	took := end.Sub(start)
	sup.Stop()
	if err := sup.Err(); err != nil {
		return err
	}
	st, err := readCampaign(ctx, s, c.ID)
	if err != nil {
		return err
	}
	sends, at := sendsByRecipient(s.Sim.Calls())
	doubles := 0
	for _, k := range sends {
		if k > 1 {
			doubles++
		}
	}
	if st.Counts.Sent != n || doubles > 0 || len(at) != n {
		return fmt.Errorf("campaign ended with counts %+v, %d sends taken by the simulator for %d invites, %d recipients twice", st.Counts, len(at), n, doubles)
	}
	least := time.Duration(float64(n) / mps * float64(time.Second))
	perSecond := Bins(at, at[0], time.Second)
	perSecond = perSecond[:max(1, len(perSecond)-1)] // the last second is partial
	slices.Sort(perSecond)
	quant := func(p float64) int { return perSecond[int(p*float64(len(perSecond)-1))] }
	ratio := took.Seconds() / least.Seconds()
	cmd := cmdFor("campaign")
	r.Add(Figure{Key: "campaign_100k_ratio_to_min", Value: ratio, Goal: &Goal{"<=", 1.05}, Baseline: fmt.Sprintf("invites / limit = %.0f s", least.Seconds()),
		How:     fmt.Sprintf("a campaign of %d invites (NDJSON in the object store) through %d cmd/worker processes, RATE_LIMIT_MESSAGES=%g and the simulator enforcing %g messages/s, status webhooks off; start command published → its terminal event", n, workers, mps, mps),
		Command: cmd})
	r.Add(Figure{Key: "worker_peak_rss_mb", Value: sup.PeakRSSMB(), Unit: "MiB",
		How: "largest peak resident set (VmHWM) of any worker process during the campaign", Command: cmd})
	r.Detail("campaign", map[string]any{
		"invites": n, "workers": workers, "messages_per_s": mps, "seconds": took.Seconds(), "least_seconds": least.Seconds(),
		"achieved_sends_per_s": float64(n) / took.Seconds(), "max_sends_in_1s": MaxInWindow(at, time.Second),
		"sends_per_second_p10_p50_p90": []int{quant(0.1), quant(0.5), quant(0.9)},
		"first_send_after_s":           at[0].Sub(start).Seconds(), "last_send_to_end_s": end.Sub(at[len(at)-1]).Seconds(),
		"counts": st.Counts, "worker_restarts": sup.Restarts(),
	})
	return nil
}

func readCampaign(ctx context.Context, s *Stack, id string) (jobs.CampaignStatus, error) {
	kv, err := s.JS.KeyValue(ctx, s.Names.CampaignBucket())
	if err != nil {
		return jobs.CampaignStatus{}, err
	}
	return jobs.ReadCampaign(ctx, kv, id)
}

// campaignConcurrency is each worker's WORKER_CONCURRENCY in the campaign
// run: enough sends in flight that a share of the limit is never waiting
// on a slow round trip.
const campaignConcurrency = 64
