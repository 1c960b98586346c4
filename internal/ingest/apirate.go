package ingest

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/time/rate"
)

// callerRate bounds one API token's requests to the command API
// (Config.APIRate, Config.APIBurst, or its entry's own ";rate=" and
// ";burst="). It is this process's alone: N ingest replicas behind a load
// balancer let a token make up to N times as many. A bound shared through
// NATS would cost a round trip per request and stop holding (or refuse
// everyone) while NATS is unreachable; one in memory holds through an
// outage, when callers retry most.
type callerRate struct {
	limiter *rate.Limiter
	// logs lets a line saying that the token is over its bound through
	// once a minute at the most, however hard the token floods.
	logs *rate.Limiter
}

// newCallerRate is the bound of a token whose entry gives entryRate (nil:
// none) and entryBurst (0: none) over the server's defaults, or nil when
// the token has no bound.
func newCallerRate(entryRate *float64, entryBurst int, defaultRate float64, defaultBurst int) *callerRate {
	r := defaultRate
	if entryRate != nil {
		r = *entryRate
	}
	if r == 0 {
		return nil
	}
	burst := entryBurst
	if burst == 0 {
		burst = defaultBurst
	}
	if burst == 0 { // one second of the rate
		burst = max(1, int(math.Min(math.Ceil(r), math.MaxInt32)))
	}
	return &callerRate{limiter: rate.NewLimiter(rate.Limit(r), burst), logs: rate.NewLimiter(rate.Every(time.Minute), 1)}
}

// admit takes one request from the bound at now, or takes nothing and
// says how long until the next one may come. A refusal is AllowN's, not a
// reservation cancelled: cancelling one of several overlapping
// reservations gives back nothing, and a flood's refusals would eat into
// the token's allowance.
func (c *callerRate) admit(now time.Time) (retryIn time.Duration, ok bool) {
	if c.limiter.AllowN(now, 1) {
		return 0, true
	}
	missing := 1 - c.limiter.TokensAt(now)
	// A rate so low that the wait is past what a Duration holds (about
	// 292 years) would overflow to a negative one: the longest it is.
	wait := missing / float64(c.limiter.Limit()) * float64(time.Second)
	if wait >= math.MaxInt64 {
		return math.MaxInt64, false
	}
	return time.Duration(wait), false
}

// refuseRate answers a request whose token is over its rate bound: 429
// with Retry-After (whole seconds, rounded up) and a JSON error like the
// API's others. It is counted by the token's entry, never its text.
func (s *Server) refuseRate(w http.ResponseWriter, r *http.Request, sc scope, now time.Time, retryIn time.Duration) {
	secs := max(1, int64(math.Ceil(retryIn.Seconds())))
	s.metrics.APIRateLimited(r.Context(), sc.entry)
	if sc.rate.logs.AllowN(now, 1) {
		s.cfg.Logger.WarnContext(r.Context(), "command API request refused: its API token is over its rate bound (one such line a minute per token at most; groupflow_api_rate_limited_total counts each)",
			slog.Int("caller_entry", sc.entry), slog.Float64("rate", float64(sc.rate.limiter.Limit())), slog.Int("burst", sc.rate.limiter.Burst()),
			slog.String("method", r.Method))
	}
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	writeJSON(w, http.StatusTooManyRequests, errorBody{Error: fmt.Sprintf(
		"this API token is over its rate bound on this ingest (%g requests a second, %d at once): retry after %d s; nothing was published",
		float64(sc.rate.limiter.Limit()), sc.rate.limiter.Burst(), secs)})
}
