package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ScopeKind says which numbers a pause covers.
type ScopeKind string

const (
	// ScopeNumber pauses one business phone number (130429, 131208).
	ScopeNumber ScopeKind = "number"
	// ScopeApp pauses every number: the app hit its call limit (code 4).
	ScopeApp ScopeKind = "app"
	// ScopeAccount pauses the numbers of one WhatsApp Business Account
	// (80007), or every number when Key is empty.
	ScopeAccount ScopeKind = "account"
)

// Scope is what a pause covers.
type Scope struct {
	Kind ScopeKind
	// Key is the phone number id (ScopeNumber) or the WABA id
	// (ScopeAccount; empty: all numbers). Unused for ScopeApp.
	Key string
}

// NumberScope covers one phone number.
func NumberScope(phone string) Scope { return Scope{Kind: ScopeNumber, Key: phone} }

// AppScope covers every number.
func AppScope() Scope { return Scope{Kind: ScopeApp} }

// AccountScope covers the numbers of one WABA; "" covers all numbers.
func AccountScope(waba string) Scope { return Scope{Kind: ScopeAccount, Key: waba} }

// AccountOf is the account scope of phone per Config.WABAOf: the scope to
// pause when a call for phone answers 80007. Unknown account: all numbers.
func (l *Limiter) AccountOf(phone string) Scope {
	return AccountScope(l.wabaOf(phone))
}

func (l *Limiter) wabaOf(phone string) string {
	if l.cfg.WABAOf == nil {
		return ""
	}
	return l.cfg.WABAOf(phone)
}

// String is "number:<id>", "app", "account:<waba id>" or "account".
func (s Scope) String() string {
	if s.Key == "" || s.Kind == ScopeApp {
		return string(s.Kind)
	}
	return string(s.Kind) + ":" + s.Key
}

// key is the scope's key in the throttle bucket.
func (s Scope) key() (string, error) {
	switch s.Kind {
	case ScopeApp:
		return "app", nil
	case ScopeAccount:
		if s.Key == "" {
			return "account", nil
		}
	case ScopeNumber:
		if s.Key == "" {
			return "", errors.New("a number scope needs the phone number id")
		}
	default:
		return "", fmt.Errorf("unknown scope kind %q", s.Kind)
	}
	if !validKey.MatchString(s.Key) {
		return "", fmt.Errorf("scope key %q must be letters, digits, '-', '_' or '='", s.Key)
	}
	return string(s.Kind) + "." + s.Key, nil
}

func scopeOfKey(k string) (Scope, bool) {
	kind, key, _ := strings.Cut(k, ".")
	s := Scope{Kind: ScopeKind(kind), Key: key}
	if got, err := s.key(); err != nil || got != k {
		return Scope{}, false
	}
	return s, true
}

// pause is one shared "throttled until" entry.
type pause struct {
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	Worker string    `json:"worker,omitempty"`
}

// Pause stops calls in scope on every worker until until. A pause never
// shortens an existing one: the later "until" wins, on this worker at once
// and on the others as soon as the throttle bucket tells them (milliseconds).
// reason (e.g. "130429") is kept for operators.
func (l *Limiter) Pause(ctx context.Context, scope Scope, until time.Time, reason string) error {
	key, err := scope.key()
	if err != nil {
		return fmt.Errorf("ratelimit: pause: %w", err)
	}
	until = until.Round(0) // wall clock only: it travels to other machines
	if !until.After(l.cfg.Clock.Now()) {
		return nil
	}
	p := pause{Until: until.UTC(), Reason: reason, Worker: l.cfg.WorkerID}
	l.mu.Lock()
	l.raiseLocked(scope, p)
	l.mu.Unlock()
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("ratelimit: pause %s: %w", scope, err)
	}
	// Compare-and-set, so that two workers pausing at once keep the later.
	for attempt := 0; ; attempt++ {
		cur, err := l.cfg.Throttle.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = l.cfg.Throttle.Create(ctx, key, data)
		case err != nil:
			return fmt.Errorf("ratelimit: pause %s: read: %w", scope, err)
		default:
			var old pause
			if json.Unmarshal(cur.Value(), &old) == nil && !old.Until.Before(p.Until) {
				l.mu.Lock()
				l.raiseLocked(scope, old)
				l.mu.Unlock()
				return nil
			}
			_, err = l.cfg.Throttle.Update(ctx, key, data, cur.Revision())
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || attempt == 10 {
			return fmt.Errorf("ratelimit: pause %s: write: %w", scope, err)
		}
	}
}

// raiseLocked extends the local pause of scope to p.Until if that is later.
func (l *Limiter) raiseLocked(scope Scope, p pause) bool {
	if cur, ok := l.pauses[scope]; ok && !cur.Until.Before(p.Until) {
		return false
	}
	l.pauses[scope] = p
	l.wakeLocked()
	return true
}

// onPauseEntry applies one change of the throttle bucket.
func (l *Limiter) onPauseEntry(e jetstream.KeyValueEntry) {
	scope, ok := scopeOfKey(e.Key())
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		// An operator cleared the pause.
		delete(l.pauses, scope)
		l.wakeLocked()
		return
	}
	var p pause
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		l.cfg.Logger.Warn("ignoring unreadable throttle entry", slog.String("key", e.Key()), slog.Any("error", err))
		return
	}
	if p.Until.After(l.cfg.Clock.Now()) && l.raiseLocked(scope, p) {
		l.cfg.Logger.Info("calls paused",
			slog.String("worker_id", l.cfg.WorkerID),
			slog.String("scope", scope.String()),
			slog.Time("until", p.Until),
			slog.String("reason", p.Reason),
			slog.String("paused_by", p.Worker))
	}
}

// pausedLocked is the latest pause covering phone, if any is still running.
func (l *Limiter) pausedLocked(phone string, now time.Time) (time.Time, Scope) {
	var until time.Time
	var scope Scope
	waba := l.wabaOf(phone)
	for s, p := range l.pauses {
		covers := false
		switch s.Kind {
		case ScopeApp:
			covers = true
		case ScopeNumber:
			covers = s.Key == phone
		case ScopeAccount:
			covers = s.Key == "" || waba == "" || s.Key == waba
		}
		if covers && p.Until.After(now) && p.Until.After(until) {
			until, scope = p.Until, s
		}
	}
	return until, scope
}

func (l *Limiter) prunePausesLocked(now time.Time) {
	for s, p := range l.pauses {
		if !p.Until.After(now) {
			delete(l.pauses, s)
		}
	}
}
