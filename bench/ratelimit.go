package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// limitedNumber is a phone number of the rate-limit run and its limit of
// group operations per second, all workers together.
type limitedNumber struct {
	Phone string  `json:"phone_number_id"`
	Limit float64 `json:"limit_per_s"`
}

var limitedNumbers = []limitedNumber{
	{"100000000000101", 80},
	{"100000000000102", 40},
	{"100000000000103", 20},
}

// runRateLimit gives three worker processes a backlog of group invites
// (one Graph send each) for three numbers with different message limits
// and checks, from the simulator's call log, that each number's sends use
// its limit (utilisation) without exceeding it in any one-second window.
func runRateLimit(ctx context.Context, e *Env, r *Report) error {
	const workers = 3
	s, err := e.NewStack(ctx, "ratelimit", StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	// The sends' status webhooks (two or three per send) are not what is
	// measured here; on a small machine their processing only adds
	// scheduling jitter to the call times the figures are computed from.
	s.Sim.SetWebhookURL("")
	tpl, err := s.InviteTemplate(ctx)
	if err != nil {
		return err
	}

	// The backlog is interleaved in proportion to the limits, as traffic
	// for several numbers arrives mixed: number k's i-th invite is due at
	// i/limit seconds, and the stream holds them in that order.
	type due struct {
		at  float64
		cmd events.Command
	}
	var backlog []due
	for k, ln := range limitedNumbers {
		g, err := s.NewGroup(ctx, ln.Phone, "Limits "+ln.Phone, "")
		if err != nil {
			return err
		}
		n := int(math.Round(ln.Limit * e.Size.RateLimitSeconds))
		for i := range n {
			c := Command(fmt.Sprintf("rl-%s-%d", ln.Phone, i), events.SendGroupInvite, ln.Phone, "",
				events.SendGroupInviteParams{To: fmt.Sprintf("1555%d%06d", k+1, i), GroupID: g, Template: tpl})
			backlog = append(backlog, due{float64(i) / ln.Limit, c})
		}
	}
	slices.SortStableFunc(backlog, func(a, b due) int { return cmp.Compare(a.at, b.at) })
	var cmds []events.Command
	var ids []string
	for _, d := range backlog {
		cmds = append(cmds, d.cmd)
		ids = append(ids, d.cmd.ID)
	}
	var overrides []string
	for _, ln := range limitedNumbers[1:] {
		overrides = append(overrides, fmt.Sprintf("%s:%g//", ln.Phone, ln.Limit))
	}
	env := []string{
		fmt.Sprintf("RATE_LIMIT_MESSAGES=%g", limitedNumbers[0].Limit),
		"RATE_LIMIT_OVERRIDES=" + strings.Join(overrides, ","),
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()
	w, err := s.StartWorkers(ctx, e.Bins.Worker, "limited", workers, WorkerOpts{Concurrency: ratelimitConcurrency, Env: env})
	if err != nil {
		return err
	}
	defer StopAll(w)
	s.Sim.ResetCalls()
	seq0, err := s.commandStreamSeq(ctx)
	if err != nil {
		return err
	}
	if _, _, err := drain(ctx, s, t, cmds, ids, 10*time.Minute); err != nil {
		return err
	}
	seq1, err := s.commandStreamSeq(ctx)
	if err != nil {
		return err
	}

	calls := map[string][]time.Time{}
	for _, c := range s.Sim.Calls() {
		if c.Endpoint != sim.EndpointSendMessage {
			continue
		}
		for _, ln := range limitedNumbers {
			if strings.Contains(c.Path, "/"+ln.Phone+"/") {
				calls[ln.Phone] = append(calls[ln.Phone], c.Time)
			}
		}
	}
	type result struct {
		limitedNumber
		Calls          int     `json:"calls"`
		Utilisation    float64 `json:"utilisation"`
		MaxWindow      int     `json:"max_calls_in_1s"`
		MaxWindowRatio float64 `json:"max_window_ratio"`
		Max100ms       int     `json:"max_calls_in_100ms_bin"`
	}
	var results []result
	var series []RateSeries
	var start time.Time
	for _, ln := range limitedNumbers {
		at := calls[ln.Phone]
		slices.SortFunc(at, time.Time.Compare)
		if len(at) < 2 {
			return fmt.Errorf("number %s: %d sends", ln.Phone, len(at))
		}
		if start.IsZero() || at[0].Before(start) {
			start = at[0]
		}
	}
	minUtil, maxRatio := math.Inf(1), 0.0
	for _, ln := range limitedNumbers {
		at := calls[ln.Phone]
		span := at[len(at)-1].Sub(at[0]).Seconds()
		res := result{limitedNumber: ln, Calls: len(at),
			// Calls after the first over the time they took: the rate
			// while the number had a backlog.
			Utilisation: float64(len(at)-1) / span / ln.Limit,
			MaxWindow:   MaxInWindow(at, time.Second)}
		res.MaxWindowRatio = float64(res.MaxWindow) / ln.Limit
		bins := Bins(at, start, 100*time.Millisecond)
		res.Max100ms = slices.Max(bins)
		results = append(results, res)
		series = append(series, RateSeries{Name: ln.Phone, Limit: ln.Limit, Bins: bins})
		minUtil, maxRatio = min(minUtil, res.Utilisation), max(maxRatio, res.MaxWindowRatio)
	}
	if err := RateLimitChart(e.Out+"/ratelimit.png", series, 100*time.Millisecond, workers); err != nil {
		return err
	}
	cmd := cmdFor("ratelimit")
	how := fmt.Sprintf("%d cmd/worker processes, three numbers limited to 80, 40 and 20 messages/s (RATE_LIMIT_MESSAGES, RATE_LIMIT_OVERRIDES), a backlog of %g s of send_group_invite commands each; Graph call times from the simulator's call log", workers, e.Size.RateLimitSeconds)
	r.Add(Figure{Key: "ratelimit_utilisation", Value: minUtil, Goal: &Goal{">=", 0.95}, Baseline: "each number's configured limit",
		How: how + "; the lowest over the numbers of (calls − 1) / (last − first call) / limit", Command: cmd})
	r.Add(Figure{Key: "ratelimit_max_window_ratio", Value: maxRatio, Goal: &Goal{"<=", 1.0}, Baseline: "each number's configured limit",
		How: how + "; the highest over the numbers of the most calls in any sliding 1 s window / limit", Command: cmd})
	r.Detail("ratelimit", map[string]any{"workers": workers, "numbers": results, "chart": "ratelimit.png",
		// Every message the command stream stored, per command: 1 plus 1
		// per parking (the due copy it sources back; the scheduled copy
		// is in the parked stream) and 1 per re-queue.
		"command_stream_msgs_per_cmd": float64(seq1-seq0) / float64(len(cmds))})
	return nil
}

// ratelimitConcurrency is each worker's concurrency in the rate-limit run.
var ratelimitConcurrency = 64

// commandStreamSeq is the last sequence the command stream stored.
func (s *Stack) commandStreamSeq(ctx context.Context) (uint64, error) {
	str, err := s.JS.Stream(ctx, s.Names.CommandStream())
	if err != nil {
		return 0, err
	}
	info, err := str.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}
