package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupflow/groupflow/internal/graph"
)

// credentialsGate stops Graph calls while Graph refuses the worker's
// access token (code 190, HTTP 401). That is the worker's fault, not the
// command's: the command waits (re-queued, never failed) until the token
// works, as in any other outage, and the worker reports itself not ready.
// Meanwhile one call per Config.CredentialsWait tries the token; the
// others are not sent, so a backlog does not hammer Graph with refused
// calls.
type credentialsGate struct {
	log  *slog.Logger
	wait time.Duration

	// refusing mirrors refused != nil, so that calls made while Graph
	// takes the token (nearly all) pass without the lock.
	refusing  atomic.Bool
	mu        sync.Mutex
	refused   *graph.Error // Graph's last refusal; nil while the token works
	refusedAt time.Time
	nextProbe time.Time
}

// admit returns nil when a call may go to Graph: the token works, or this
// call is the next probe. Otherwise it returns Graph's last refusal.
func (g *credentialsGate) admit(now time.Time) error {
	if !g.refusing.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.refused == nil || !now.Before(g.nextProbe) {
		g.nextProbe = now.Add(g.wait)
		return nil
	}
	return fmt.Errorf("not calling Graph: it refused the access token %s ago: %w", now.Sub(g.refusedAt).Round(time.Second), g.refused)
}

// holdBack reports whether a command should wait without being claimed:
// Graph refuses the token and it is not yet time to try it again. A
// command let through may then make the probe.
func (g *credentialsGate) holdBack(now time.Time) bool {
	if !g.refusing.Load() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused != nil && now.Before(g.nextProbe)
}

// observe records what Graph answered a call.
func (g *credentialsGate) observe(ctx context.Context, now time.Time, err error) {
	var ge *graph.Error
	isGraph := errors.As(err, &ge)
	switch {
	case isGraph && ge.Class == graph.ClassCredentials:
		g.mu.Lock()
		first := g.refused == nil
		g.refused, g.refusedAt = ge, now
		if first {
			g.nextProbe = now.Add(g.wait)
		}
		g.refusing.Store(true)
		g.mu.Unlock()
		if first {
			g.log.ErrorContext(ctx, "Graph refused the worker's access token: commands wait, and the worker reports not ready, until it is accepted; replace WHATSAPP_ACCESS_TOKEN",
				slog.Int("code", ge.Code), slog.Int("http_status", ge.HTTPStatus), slog.String("fbtrace_id", ge.FBTraceID))
		}
	case (err == nil || isGraph) && g.refusing.Load():
		// Any other answer from Graph means it took the token.
		g.mu.Lock()
		was := g.refused != nil
		g.refused = nil
		g.refusing.Store(false)
		g.mu.Unlock()
		if was {
			g.log.InfoContext(ctx, "Graph accepts the worker's access token again")
		}
	}
}

// Refused reports whether Graph refuses the access token now.
func (g *credentialsGate) Refused() bool { return g.refusing.Load() }
