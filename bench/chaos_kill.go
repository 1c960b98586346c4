package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

// KillResult is the SIGKILL-through-a-campaign scenario's outcome.
type KillResult struct {
	Invites        int                   `json:"invites"`
	Workers        int                   `json:"worker_processes"`
	KillEvery      string                `json:"kill_every"`
	Kills          int                   `json:"sigkills"`
	Counts         events.CampaignCounts `json:"counts"`
	InviteOutcomes map[string]int        `json:"invite_outcomes"`
	// Lost invites have no terminal event; DuplicatedTerminalEvents more
	// than one; DoubleSends are recipients the simulator sent an invite
	// to more than once (the default on_ambiguous "fail" is at most once);
	// Ambiguous are the invites counted outcome_unknown instead of resent.
	Lost                     int     `json:"lost"`
	DuplicatedTerminalEvents int     `json:"duplicated_terminal_events"`
	DoubleSends              int     `json:"double_sends"`
	Ambiguous                int     `json:"ambiguous_outcome_unknown"`
	SentButNotCounted        int     `json:"sent_but_reported_failed"`
	CampaignCompleted        bool    `json:"campaign_completed"`
	Seconds                  float64 `json:"seconds"`
	Pass                     bool    `json:"pass"`
}

// Passed reports whether no invite was lost or sent twice.
func (r KillResult) Passed() bool { return r.Pass }

// runKillChaos runs a KillInvites-invite campaign through three worker
// processes and SIGKILLs one of them (at random) every KillEvery until the
// campaign completes; a supervisor starts a replacement at once. Every
// invite must end with exactly one terminal event and no recipient may get
// two invites.
func runKillChaos(ctx context.Context, e *Env, r *Report) error {
	const workers = 3
	t0 := time.Now()
	mps := e.Size.KillMPS
	s, err := e.NewStack(ctx, "kill", StackConfig{Sim: campaignSim(mps)})
	if err != nil {
		return err
	}
	defer s.Close()
	// Message statuses are not what this is about: spare the machine.
	s.Sim.SetWebhookURL("")
	n := e.Size.KillInvites
	c, err := s.PrepareCampaign(ctx, "chaos", n)
	if err != nil {
		return err
	}
	env := append([]string{fmt.Sprintf("RATE_LIMIT_MESSAGES=%g", mps)}, noLimits[1:]...)
	sup, err := s.Supervise(ctx, e.Bins.Worker, "killable", workers, WorkerOpts{Env: env})
	if err != nil {
		return err
	}
	defer sup.Stop()
	s.Sim.ResetCalls()
	if err := s.PublishOne(ctx, c.Start); err != nil {
		return err
	}
	res := KillResult{Invites: n, Workers: workers, KillEvery: e.Size.KillEvery.String(), InviteOutcomes: map[string]int{}}
	rng := rand.New(rand.NewPCG(1, 2))
	deadline := time.Now().Add(15 * time.Minute)
	tick := time.NewTicker(e.Size.KillEvery)
	defer tick.Stop()
	for {
		st, err := readCampaign(ctx, s, c.ID)
		if err == nil && st.State == events.CampaignStateCompleted {
			res.CampaignCompleted = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if e.Size.KillMax > 0 && res.Kills >= e.Size.KillMax {
			continue
		}
		procs := sup.Procs()
		victim := procs[rng.IntN(len(procs))]
		if !victim.Exited() {
			victim.Kill()
			res.Kills++
		}
	}
	sup.Stop()
	if err := sup.Err(); err != nil {
		return err
	}

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s:%d", c.ID, i)
	}
	terms, err := waitTerminalsInStream(ctx, s, ids, time.Minute)
	if err != nil {
		return err
	}
	sends, _ := sendsByRecipient(s.Sim.Calls())
	for i, id := range ids {
		got := terms[id]
		if len(got) == 0 {
			res.Lost++
			continue
		}
		if len(got) > 1 {
			res.DuplicatedTerminalEvents++
		}
		cr := got[0].Result
		key := cr.Outcome
		if cr.Error != nil {
			key += "/" + cr.Error.Reason
			if cr.Error.Reason == events.ReasonOutcomeUnknown {
				res.Ambiguous++
			}
		}
		res.InviteOutcomes[key]++
		inv := c.Invites[i]
		if cr.Outcome == events.OutcomeFailed && cr.Error != nil && cr.Error.Reason != events.ReasonOutcomeUnknown &&
			sends[[2]string{inv.To, inv.GroupID}] > 0 {
			res.SentButNotCounted++
		}
	}
	for k, v := range sends {
		if v > 1 {
			res.DoubleSends++
			e.Log.Warn("invite sent twice", "to", k[0], "group", strings.TrimSpace(k[1]), "sends", v)
		}
	}
	if st, err := readCampaign(ctx, s, c.ID); err == nil {
		res.Counts = st.Counts
	}
	res.Seconds = time.Since(t0).Seconds()
	res.Pass = res.CampaignCompleted && res.Lost == 0 && res.DuplicatedTerminalEvents == 0 && res.DoubleSends == 0 && res.SentButNotCounted == 0
	r.Detail("worker_sigkill_campaign", res)
	return nil
}
