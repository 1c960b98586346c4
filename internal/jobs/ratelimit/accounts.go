package ratelimit

import "sync"

// maxLearnt bounds the numbers Accounts learns, so that webhooks naming
// ever new numbers cannot grow it without end.
const maxLearnt = 10000

// Accounts knows which WhatsApp Business Account each phone number belongs
// to: from configuration, and from what webhooks show (every webhook names
// its account and number). Its Of is a Config.WABAOf, so an account-level
// throttle (80007) pauses only the numbers of its account; a number it
// does not know is paused by every account's throttle.
type Accounts struct {
	mu     sync.RWMutex
	of     map[string]string
	pinned map[string]bool // configured: not overwritten by learning
}

// NewAccounts starts from configured, phone number id → WABA id.
func NewAccounts(configured map[string]string) *Accounts {
	a := &Accounts{of: make(map[string]string, len(configured)), pinned: make(map[string]bool, len(configured))}
	for phone, waba := range configured {
		a.of[phone], a.pinned[phone] = waba, true
	}
	return a
}

// Of is phone's account, or "" when unknown.
func (a *Accounts) Of(phone string) string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.of[phone]
}

// Learn records that phone belongs to waba, as a webhook showed. A
// configured number keeps its configured account.
func (a *Accounts) Learn(phone, waba string) {
	if phone == "" || waba == "" {
		return
	}
	if a.Of(phone) == waba {
		return // the common case, under the read lock only
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, had := a.of[phone]
	if a.pinned[phone] || (!had && len(a.of)-len(a.pinned) >= maxLearnt) {
		return
	}
	a.of[phone] = waba
}
