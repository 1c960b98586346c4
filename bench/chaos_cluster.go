package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/groupflow/groupflow/internal/events"
)

// ClusterResult is the leader-loss scenario's outcome.
type ClusterResult struct {
	Servers                  int            `json:"servers"`
	Replicas                 int            `json:"replicas"`
	Workers                  int            `json:"worker_processes"`
	Commands                 int            `json:"commands"`
	CreateGroups             int            `json:"create_group_commands"`
	KilledServer             string         `json:"killed_server"`
	KilledAfterPublished     int            `json:"killed_after_published"`
	NewLeaderAfterMS         float64        `json:"new_stream_leader_after_ms"`
	DownForS                 float64        `json:"down_for_s"`
	WorkerRestarts           int            `json:"worker_restarts"`
	Outcomes                 map[string]int `json:"outcomes"`
	Lost                     int            `json:"lost"`
	DuplicatedTerminalEvents int            `json:"duplicated_terminal_events"`
	Seconds                  float64        `json:"seconds"`
	Pass                     bool           `json:"pass"`
}

// Passed reports whether nothing was lost or duplicated.
func (r ClusterResult) Passed() bool { return r.Pass }

// runClusterChaos runs commands through worker processes on a three-node
// JetStream cluster with R3 streams and kills the command stream's leader
// mid-run, restarting it a few seconds later. Every command must end with
// exactly one terminal event in the event stream.
func runClusterChaos(ctx context.Context, e *Env, r *Report) error {
	const servers, workers = 3, 2
	t0 := time.Now()
	s, err := e.NewStack(ctx, "cluster", StackConfig{Cluster: servers, Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	group, err := s.NewGroup(ctx, Phone, "Cluster", "")
	if err != nil {
		return err
	}
	sup, err := s.Supervise(ctx, e.Bins.Worker, "worker", workers, WorkerOpts{Concurrency: 16, Env: noLimits})
	if err != nil {
		return err
	}
	defer sup.Stop()

	n := e.Size.ClusterCommands
	cmds := make([]events.Command, n)
	ids := make([]string, n)
	creates := 0
	for i := range cmds {
		ids[i] = fmt.Sprint("cl-", i)
		if i%10 == 9 {
			// Asynchronous: completed by the group_create webhook.
			cmds[i] = Command(ids[i], events.CreateGroup, Phone, "", events.CreateGroupParams{Subject: fmt.Sprint("Cluster ", i)})
			creates++
		} else {
			cmds[i] = Command(ids[i], events.GetInviteLink, Phone, group, nil)
		}
	}

	res := ClusterResult{Servers: servers, Replicas: 3, Workers: workers, Commands: n, CreateGroups: creates}
	// Publish at a steady pace over ~20 s (full size) so the leader dies
	// with work both queued and in flight.
	const pace = 4 * time.Millisecond
	var mu sync.Mutex
	published := 0
	pubErr := make(chan error, 1)
	go func() {
		for i, c := range cmds {
			if err := s.PublishOne(ctx, c); err != nil {
				pubErr <- err
				return
			}
			mu.Lock()
			published = i + 1
			mu.Unlock()
			time.Sleep(pace)
		}
		pubErr <- nil
	}()
	waitPublished := func(k int) {
		for {
			mu.Lock()
			p := published
			mu.Unlock()
			if p >= k {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitPublished(n / 3)
	leader := -1
	for i, srv := range s.Cluster.Servers {
		if srv.Running() && srv.JetStreamIsStreamLeader("$G", s.Names.CommandStream()) {
			leader = i
		}
	}
	if leader < 0 {
		return fmt.Errorf("no server leads %s", s.Names.CommandStream())
	}
	res.KilledServer = s.Cluster.Servers[leader].Name()
	mu.Lock()
	res.KilledAfterPublished = published
	mu.Unlock()
	e.Log.Info("killing the command stream leader", "server", res.KilledServer, "published", res.KilledAfterPublished)
	killed := time.Now()
	s.Cluster.Servers[leader].Shutdown()
	for res.NewLeaderAfterMS == 0 && time.Since(killed) < time.Minute {
		for _, srv := range s.Cluster.Running() {
			if srv.JetStreamIsStreamLeader("$G", s.Names.CommandStream()) {
				res.NewLeaderAfterMS = Ms(time.Since(killed))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(max(0, 5*time.Second-time.Since(killed)))
	if err := s.Cluster.Restart(leader); err != nil {
		return fmt.Errorf("restart %s: %w", res.KilledServer, err)
	}
	res.DownForS = time.Since(killed).Seconds()
	if err := s.Cluster.WaitReady(time.Minute); err != nil {
		return err
	}
	if err := <-pubErr; err != nil {
		return err
	}

	// Done when every command has a terminal event in the stream (read
	// from the stream: the core subscription may miss events while the
	// harness's own connection moves to another server).
	terms, err := waitTerminalsInStream(ctx, s, ids, 5*time.Minute)
	if err != nil {
		return err
	}
	res.WorkerRestarts = sup.Restarts()
	res.Outcomes = map[string]int{}
	for _, id := range ids {
		switch got := terms[id]; {
		case len(got) == 0:
			res.Lost++
		default:
			res.Outcomes[got[0].Result.Outcome]++
			if len(got) > 1 {
				res.DuplicatedTerminalEvents++
			}
		}
	}
	res.Seconds = time.Since(t0).Seconds()
	res.Pass = res.Lost == 0 && res.DuplicatedTerminalEvents == 0 && res.Outcomes[events.OutcomeSucceeded] == n
	r.Detail("cluster_leader_loss", res)
	return nil
}

// waitTerminalsInStream reads the event stream until every id has a
// terminal event or the timeout passes, and returns what it found.
func waitTerminalsInStream(ctx context.Context, s *Stack, ids []string, timeout time.Duration) (map[string][]TerminalRecord, error) {
	deadline := time.Now().Add(timeout)
	for {
		terms, err := s.ReadTerminals(ctx)
		if err == nil {
			missing := 0
			for _, id := range ids {
				if len(terms[id]) == 0 {
					missing++
				}
			}
			if missing == 0 || time.Now().After(deadline) {
				return terms, nil
			}
		} else if time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
