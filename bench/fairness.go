package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
)

// fairnessPhone is the quiet number whose reads queue behind the backlog.
const fairnessPhone = "100000000000201"

// runFairness measures what a deep backlog of one number costs the commands
// queued behind it: one cmd/worker process, Phone limited to 10 group
// operations/s with FairnessBacklog approvals queued, then get_invite_link
// reads of another number sent one at a time; publish → terminal event of
// each read. The backlog is not waited for.
func runFairness(ctx context.Context, e *Env, r *Report) error {
	s, err := e.NewStack(ctx, "fairness", StackConfig{Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	busy, err := s.NewGroup(ctx, Phone, "Busy", graph.JoinApprovalRequired)
	if err != nil {
		return err
	}
	quiet, err := s.NewGroup(ctx, fairnessPhone, "Quiet", "")
	if err != nil {
		return err
	}
	t, err := s.WatchTerminals()
	if err != nil {
		return err
	}
	defer t.Stop()
	const groupOps = 10
	w, err := s.StartWorkers(ctx, e.Bins.Worker, "worker", 1, WorkerOpts{Env: []string{fmt.Sprintf("RATE_LIMIT_GROUP_OPS=%d", groupOps)}})
	if err != nil {
		return err
	}
	defer StopAll(w)

	n := e.Size.FairnessBacklog
	backlog := make([]events.Command, n)
	ids := make([]string, n)
	for i := range backlog {
		ids[i] = fmt.Sprint("busy-", i)
		backlog[i] = Command(ids[i], events.ApproveJoinRequests, Phone, busy, events.JoinRequestsParams{JoinRequestIDs: []string{fmt.Sprint("none-", i)}})
	}
	if err := s.Publish(ctx, backlog); err != nil {
		return err
	}
	lat := make([]time.Duration, 0, e.Size.FairnessReads)
	for i := range e.Size.FairnessReads {
		d, err := timeOne(ctx, s, t, Command(fmt.Sprint("quiet-", i), events.GetInviteLink, fairnessPhone, quiet, nil), 10*time.Minute)
		if err != nil {
			return fmt.Errorf("read %d behind the backlog: %w", i, err)
		}
		lat = append(lat, d)
	}
	served := 0
	for _, id := range ids {
		if _, ok := t.At(id); ok {
			served++
		}
	}
	sortDurations(lat)
	cmd := cmdFor("fairness")
	how := fmt.Sprintf("one cmd/worker process; %d approve_join_requests queued for one number limited to %d group operations/s (%g s of work), then %d get_invite_link commands of another number, one at a time; publish → terminal event",
		n, groupOps, float64(n)/groupOps, e.Size.FairnessReads)
	r.Add(Figure{Key: "fairness_read_p50_ms", Value: Ms(Percentile(lat, 0.5)), Unit: "ms", Baseline: "latency_p50_ms (no backlog)", How: how, Command: cmd})
	r.Add(Figure{Key: "fairness_read_p99_ms", Value: Ms(Percentile(lat, 0.99)), Unit: "ms", Baseline: "latency_p99_ms (no backlog)", How: how, Command: cmd})
	r.Detail("fairness", map[string]any{"backlog": n, "group_ops_per_s": groupOps, "reads": len(lat),
		"max_ms": Ms(lat[len(lat)-1]), "backlog_served_when_reads_done": served,
		"note": "without parking (RATE_LIMIT_PARKING=false, or a server without message schedules) the first read behind 2,000 approvals at 10/s waited 202 s, until 1,975 of them were done: the naked backlog filled the consumer's MaxAckPending"})
	return nil
}
