package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// DESIGN §5: a throttling answer pauses what it covers on every worker: a
// number's throttle that number, an app-level one (4) every number, an
// account-level one (80007) the numbers of the throttled number's account.
// sameAccount shares phone's account; otherAccount does not.
func TestAThrottlePausesTheNumbersItCovers(t *testing.T) {
	t.Parallel()
	const sameAccount, otherAccount = "106540352242923", "106540352242924"
	for _, tc := range []struct {
		name   string
		code   int
		paused map[string]bool // number → paused
	}{
		{"a number's throttle (130429) pauses that number", graph.CodeThroughput, map[string]bool{phone: true, sameAccount: false, otherAccount: false}},
		{"an app's throttle (4) pauses every number", graph.CodeAppRateLimit, map[string]bool{phone: true, sameAccount: true, otherAccount: true}},
		{"an account's throttle (80007) pauses its numbers", graph.CodeAccountRateLimit, map[string]bool{phone: true, sameAccount: true, otherAccount: false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t)
			accounts := ratelimit.NewAccounts(map[string]string{phone: "waba-1", sameAccount: "waba-1", otherAccount: "waba-2"})
			// Two limiters, as two workers have: the one whose call is
			// throttled, and one that learns of it through the bucket.
			var lims []*ratelimit.Limiter
			for _, id := range []string{"throttled", "other"} {
				lims = append(lims, s.runLimiter(t, ratelimit.Config{WorkerID: id, WABAOf: accounts.Of, Logger: testLogger(t),
					Defaults: ratelimit.Limits{GroupOps: 1000, Reads: 1000, Messages: 1000}}))
			}
			s.startWorker(t, func(c *jobs.Config) { c.WorkerID, c.Limiter = "throttled", lims[0] })
			g := s.newGroup(t, "Throttled", "")
			if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleCode: tc.code, ThrottleRetryAfter: time.Minute,
				Endpoints: []string{sim.EndpointGetInviteLink}}); err != nil {
				t.Fatal(err)
			}
			s.publish(t, command("throttled-1", events.GetInviteLink, g.ID, nil))
			s.waitForCall(t, sim.EndpointGetInviteLink)
			pausedOn := func(l *ratelimit.Limiter, number string) bool {
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				var te *ratelimit.ThrottledError
				return errors.As(l.Wait(ctx, number, ratelimit.Reads), &te) && te.Scope != "share"
			}
			s.events.WaitFor(t, "the other worker to see the throttled number paused", func() bool { return pausedOn(lims[1], phone) })
			for number, want := range tc.paused {
				if got := pausedOn(lims[1], number); got != want {
					t.Errorf("number %s paused: %v, want %v", number, got, want)
				}
			}
		})
	}
}
