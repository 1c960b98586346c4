package query_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/query"
)

func TestPausedNumberAnswersRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Paused", "", "")
	b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, nil) // cached before the pause

	if err := b.limiter.Pause(context.Background(), ratelimit.NumberScope(phone), time.Now().Add(time.Hour), "130429"); err != nil {
		t.Fatal(err)
	}
	msg := b.ask(t, events.QueryInviteLink, phone, query.InviteLinkRequest{GroupID: g.ID})
	qe := query.ReplyError(msg)
	if qe == nil || qe.Code != query.CodeThrottled {
		t.Fatalf("read of a paused number: %v %s, want 429", qe, msg.Data)
	}
	if qe.RetryAfter() < 59*time.Minute || qe.RetryAfter() > time.Hour {
		t.Errorf("retry_after_ms = %d, want about an hour", qe.RetryAfterMS)
	}
	if s, _ := strconv.Atoi(msg.Header.Get(query.RetryAfterHeader)); s < 3540 || s > 3600 {
		t.Errorf("Retry-After header %q, want about 3600", msg.Header.Get(query.RetryAfterHeader))
	}
	if h := msg.Header.Get("Nats-Service-Error"); !strings.Contains(h, "retry after 3") || !strings.Contains(h, "number:"+phone) {
		t.Errorf("Nats-Service-Error %q, want the scope and the retry-after in seconds", h)
	}
	checkSchema(t, "query.error.json", msg.Data)
	if n := b.graphCalls(sim.EndpointGetInviteLink); n != 0 {
		t.Errorf("%d Graph calls while paused, want 0", n)
	}

	// An answer cached before the pause costs no quota: still served.
	if h := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, nil).Header.Get(query.CacheHeader); h != "hit" {
		t.Errorf("cached read while paused: cache %q, want hit", h)
	}
}

func TestGraphThrottleAnswersRetryAfterAndPausesTheNumber(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Throttled", "", "")
	if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGroupInfo}, Limit: 1, Throttle: 1,
		ThrottleCode: graph.CodeThroughput, ThrottleRetryAfter: time.Hour}); err != nil {
		t.Fatal(err)
	}
	qe := b.askErr(t, events.QueryGroupInfo, phone, query.GroupInfoRequest{GroupID: g.ID}, query.CodeThrottled)
	if qe.GraphCode != graph.CodeThroughput || qe.RetryAfter() < 59*time.Minute {
		t.Errorf("Graph throttle: graph_code %d, retry_after_ms %d; want 130429 and about an hour", qe.GraphCode, qe.RetryAfterMS)
	}

	// The throttle paused the number for every worker: the next read of
	// another endpoint is answered without calling Graph.
	calls := len(b.sim.Calls())
	qe = b.askErr(t, events.QueryInviteLink, phone, query.InviteLinkRequest{GroupID: g.ID}, query.CodeThrottled)
	if qe.GraphCode != 0 || !strings.Contains(qe.Message, "number:"+phone) {
		t.Errorf("read after the throttle: %+v, want the limiter's pause of number:%s", qe, phone)
	}
	if n := len(b.sim.Calls()); n != calls {
		t.Errorf("%d Graph calls after the throttle, want none", n-calls)
	}
}

func TestTransientGraphFailureIs503(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Flaky", "", "")
	if err := b.sim.SetFaults(sim.Faults{Endpoints: []string{sim.EndpointGroupInfo}, Limit: 1, Code2: 1}); err != nil {
		t.Fatal(err)
	}
	qe := b.askErr(t, events.QueryGroupInfo, phone, query.GroupInfoRequest{GroupID: g.ID}, query.CodeUnavailable)
	if qe.GraphCode != graph.CodeServiceUnavailable {
		t.Errorf("graph_code %d, want 2", qe.GraphCode)
	}
	// Failures are not cached: the next read calls Graph and succeeds.
	if h := b.askOK(t, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: g.ID}, nil).Header.Get(query.CacheHeader); h != "miss" {
		t.Errorf("read after a failure: cache %q, want miss", h)
	}
}

func TestRefusedAccessTokenIs503NotTheCallersFault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	g := b.createGroup(t, "Locked out", "", "")
	// The operators' token was revoked: every Graph call answers 190.
	b.sim.SetAccessToken("rotated-elsewhere")

	qe := b.askErr(t, events.QueryGroupInfo, phone, query.GroupInfoRequest{GroupID: g.ID}, query.CodeUnavailable)
	if qe.GraphCode != graph.CodeAccessTokenExpired {
		t.Errorf("graph_code %d, want %d", qe.GraphCode, graph.CodeAccessTokenExpired)
	}
	if !strings.Contains(qe.Message, "access token") {
		t.Errorf("message %q does not say groupflow's access token was refused", qe.Message)
	}
}
