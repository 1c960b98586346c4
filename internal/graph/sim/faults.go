package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Faults injects failures. Every probability is in [0, 1] and is drawn per
// Graph call (or per webhook) from a generator seeded by Config.Seed, so a
// sequential run with the same seed fails the same calls. At most one
// call-level fault applies to a call; they are tried in field order.
//
// In JSON (POST /_sim/faults) durations are strings such as "250ms".
type Faults struct {
	// Endpoints limits call-level faults to these endpoints (names as in
	// Call.Endpoint, e.g. "send_message", "create_group"). Empty: all.
	Endpoints []string `json:"endpoints,omitempty"`
	// Limit is how many calls may be faulted in total, asynchronous
	// failures (AsyncFailure) included; 0 means no limit.
	// {Limit: 1, LostResponse: 1, Endpoints: ["create_group"]} loses exactly
	// the next create_group answer.
	Limit int `json:"limit,omitempty"`

	// Timeout: the call hangs, without effect, until the client gives up.
	Timeout float64 `json:"timeout,omitempty"`
	// LostResponse: the operation is performed, then the connection is
	// closed before any answer is written.
	LostResponse float64 `json:"lost_response,omitempty"`
	// Status5xx: HTTP 500, 502 or 503 with an empty body, no effect.
	Status5xx float64 `json:"status_5xx,omitempty"`
	// Code1: Graph code 1 (unknown error), HTTP 400, no effect.
	Code1 float64 `json:"code_1,omitempty"`
	// Code2: Graph code 2 (service temporarily unavailable), HTTP 503.
	Code2 float64 `json:"code_2,omitempty"`
	// Code131000: code 131000 (something went wrong), HTTP 500.
	Code131000 float64 `json:"code_131000,omitempty"`
	// Throttle: a throttling answer (HTTP 429) with Retry-After and usage
	// headers, no effect. The code is ThrottleCode, or by default 130429
	// for sends, 131208 for group operations and 4 for the rest.
	Throttle float64 `json:"throttle,omitempty"`
	// ThrottleCode overrides the code of injected throttling (4, 80007,
	// 130429, 131048, 131056, 131208).
	ThrottleCode int `json:"throttle_code,omitempty"`
	// ThrottleRetryAfter is announced by injected throttling in Retry-After
	// and estimated_time_to_regain_access. Defaults to 1s.
	ThrottleRetryAfter time.Duration `json:"-"`

	// Latency is added to every Graph call, plus up to LatencyJitter.
	Latency       time.Duration `json:"-"`
	LatencyJitter time.Duration `json:"-"`

	// AsyncFailure: an accepted asynchronous operation (create, delete,
	// settings, remove) fails in its webhook instead of taking effect.
	AsyncFailure float64 `json:"async_failure,omitempty"`
	// AsyncParticipantFailure: each participant of an accepted removal
	// fails in its webhook with 131000 (transient) instead of being
	// removed, drawn per participant within Limit. {Limit: 1,
	// AsyncParticipantFailure: 1} fails exactly the next one.
	AsyncParticipantFailure float64 `json:"async_participant_failure,omitempty"`

	// WebhookDuplicate: a webhook is delivered twice.
	WebhookDuplicate float64 `json:"webhook_duplicate,omitempty"`
	// WebhookReorder: a webhook is held back by up to three WebhookDelays,
	// so later ones overtake it.
	WebhookReorder float64 `json:"webhook_reorder,omitempty"`
	// WebhookExtraDelay is added to every webhook's delay.
	WebhookExtraDelay time.Duration `json:"-"`
}

type faultsJSON struct {
	faultsAlias
	ThrottleRetryAfter string `json:"throttle_retry_after,omitempty"`
	Latency            string `json:"latency,omitempty"`
	LatencyJitter      string `json:"latency_jitter,omitempty"`
	WebhookExtraDelay  string `json:"webhook_extra_delay,omitempty"`
}

type faultsAlias Faults

// MarshalJSON writes durations as Go duration strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	d := func(v time.Duration) string {
		if v == 0 {
			return ""
		}
		return v.String()
	}
	return json.Marshal(faultsJSON{
		faultsAlias:        faultsAlias(f),
		ThrottleRetryAfter: d(f.ThrottleRetryAfter),
		Latency:            d(f.Latency),
		LatencyJitter:      d(f.LatencyJitter),
		WebhookExtraDelay:  d(f.WebhookExtraDelay),
	})
}

// UnmarshalJSON reads durations as Go duration strings ("250ms").
func (f *Faults) UnmarshalJSON(b []byte) error {
	var v faultsJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	out := Faults(v.faultsAlias)
	for _, p := range []struct {
		s   string
		dst *time.Duration
		n   string
	}{
		{v.ThrottleRetryAfter, &out.ThrottleRetryAfter, "throttle_retry_after"},
		{v.Latency, &out.Latency, "latency"},
		{v.LatencyJitter, &out.LatencyJitter, "latency_jitter"},
		{v.WebhookExtraDelay, &out.WebhookExtraDelay, "webhook_extra_delay"},
	} {
		if p.s == "" {
			continue
		}
		d, err := time.ParseDuration(p.s)
		if err != nil {
			return fmt.Errorf("%s: %w", p.n, err)
		}
		*p.dst = d
	}
	*f = out
	return nil
}

func (f Faults) validate() error {
	for _, p := range []float64{f.Timeout, f.LostResponse, f.Status5xx, f.Code1, f.Code2, f.Code131000,
		f.Throttle, f.AsyncFailure, f.AsyncParticipantFailure, f.WebhookDuplicate, f.WebhookReorder} {
		if p < 0 || p > 1 {
			return errors.New("fault probabilities must be within [0, 1]")
		}
	}
	if f.Limit < 0 || f.Latency < 0 || f.LatencyJitter < 0 || f.ThrottleRetryAfter < 0 || f.WebhookExtraDelay < 0 {
		return errors.New("fault limit and durations must not be negative")
	}
	return nil
}

// callFaults reports whether any call-level fault can trigger.
func (f Faults) callFaults() bool {
	return f.Timeout+f.LostResponse+f.Status5xx+f.Code1+f.Code2+f.Code131000+f.Throttle > 0
}

type faultKind int

const (
	faultNone faultKind = iota
	faultTimeout
	faultLost
	fault5xx
	faultCode1
	faultCode2
	faultCode131000
	faultThrottle
)

// faultState is the Faults in force plus how many injections are left; it
// is swapped atomically so the hot path reads it without a lock.
type faultState struct {
	f        Faults
	active   bool
	left     atomic.Int64 // remaining injections when f.Limit > 0
	endpoint map[string]bool
}

func newFaultState(f Faults) *faultState {
	fs := &faultState{f: f, active: f.callFaults()}
	fs.left.Store(int64(f.Limit))
	if len(f.Endpoints) > 0 {
		fs.endpoint = make(map[string]bool, len(f.Endpoints))
		for _, e := range f.Endpoints {
			fs.endpoint[e] = true
		}
	}
	return fs
}

// lockedRand is a seeded generator safe for concurrent use. Separate
// instances serve calls, statuses and webhooks so one does not disturb the
// sequence of another.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed int64, stream uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(uint64(seed), stream))}
}

func (l *lockedRand) float() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}

func (l *lockedRand) int64n(n int64) int64 {
	if n <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Int64N(n)
}

func (l *lockedRand) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	return l.float() < p
}

// draw picks the call-level fault for one call to endpoint.
func (fs *faultState) draw(r *lockedRand, endpoint string) faultKind {
	if !fs.active || (fs.endpoint != nil && !fs.endpoint[endpoint]) {
		return faultNone
	}
	f := fs.f
	x := r.float()
	kind := faultNone
	acc := 0.0
	for _, c := range []struct {
		p float64
		k faultKind
	}{
		{f.Timeout, faultTimeout}, {f.LostResponse, faultLost}, {f.Status5xx, fault5xx},
		{f.Code1, faultCode1}, {f.Code2, faultCode2}, {f.Code131000, faultCode131000},
		{f.Throttle, faultThrottle},
	} {
		acc += c.p
		if c.p > 0 && x < acc {
			kind = c.k
			break
		}
	}
	if kind == faultNone {
		return faultNone
	}
	if f.Limit > 0 && fs.left.Add(-1) < 0 {
		return faultNone
	}
	return kind
}

// asyncFailure draws whether an accepted asynchronous operation fails in
// its webhook (AsyncFailure), within Limit.
func (s *Server) asyncFailure() bool {
	fs := s.faults.Load()
	if !s.opRand.chance(fs.f.AsyncFailure) {
		return false
	}
	return fs.f.Limit <= 0 || fs.left.Add(-1) >= 0
}

// asyncParticipantFailure draws whether one participant of an accepted
// removal fails in its webhook (AsyncParticipantFailure), within Limit.
func (s *Server) asyncParticipantFailure() bool {
	fs := s.faults.Load()
	if !s.opRand.chance(fs.f.AsyncParticipantFailure) {
		return false
	}
	return fs.f.Limit <= 0 || fs.left.Add(-1) >= 0
}

// SetFaults replaces the fault injection in force (and restarts its Limit).
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	f.Endpoints = slices.Clone(f.Endpoints)
	s.faults.Store(newFaultState(f))
	return nil
}

// Faults returns the fault injection in force.
func (s *Server) Faults() Faults {
	f := s.faults.Load().f
	f.Endpoints = slices.Clone(f.Endpoints)
	return f
}
