package graph

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Usage headers Graph attaches to answers.
const (
	headerRetryAfter  = "Retry-After"
	headerBusinessUse = "X-Business-Use-Case-Usage"
	headerAppUsage    = "X-App-Usage"
)

// usageExhaustedDelay is the wait suggested when a usage header reports a
// budget at 100 % without saying when access returns. Graph's app budget is
// a rolling one-hour window, so waiting less than a minute rarely helps.
const usageExhaustedDelay = time.Minute

// maxSuggestedDelay caps what a header may ask for, so that a corrupt value
// cannot park work for years.
const maxSuggestedDelay = 48 * time.Hour

// SuggestedDelay returns how long Graph asks the caller to wait, from the
// answer's headers: Retry-After (seconds or HTTP date), the largest
// estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage,
// and, when a usage percentage in either usage header reached 100 with no
// time given, a one-minute pause. 0 means no header asked for a wait.
// Malformed headers are ignored.
func SuggestedDelay(h http.Header) time.Duration {
	return suggestedDelay(h, time.Now())
}

func suggestedDelay(h http.Header, now time.Time) time.Duration {
	d := retryAfter(h.Get(headerRetryAfter), now)
	u := parseUsage(h)
	d = max(d, u.regain)
	if d == 0 && (u.accountExhausted || u.appExhausted) {
		d = usageExhaustedDelay
	}
	return min(d, maxSuggestedDelay)
}

// retryAfter parses a Retry-After value: delta seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		secs = min(secs, int64(maxSuggestedDelay/time.Second))
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, maxSuggestedDelay)
		}
	}
	return 0
}

// usage is what the usage headers say.
type usage struct {
	regain           time.Duration // longest estimated_time_to_regain_access
	accountExhausted bool          // a business use case is at 100 %
	appExhausted     bool          // X-App-Usage is at 100 %
}

// bucUsage is one X-Business-Use-Case-Usage entry.
type bucUsage struct {
	Type         string    `json:"type"`
	CallCount    flexFloat `json:"call_count"`
	TotalCPUTime flexFloat `json:"total_cputime"`
	TotalTime    flexFloat `json:"total_time"`
	// EstimatedTimeToRegainAccess is in minutes.
	EstimatedTimeToRegainAccess flexFloat `json:"estimated_time_to_regain_access"`
}

func (b bucUsage) exhausted() bool {
	return b.CallCount >= 100 || b.TotalCPUTime >= 100 || b.TotalTime >= 100
}

func parseUsage(h http.Header) usage {
	var u usage
	for _, v := range h.Values(headerBusinessUse) {
		// {"<business id>": [ {...}, ... ]}; tolerate a single object too.
		var byID map[string]json.RawMessage
		if json.Unmarshal([]byte(v), &byID) != nil {
			continue
		}
		for _, raw := range byID {
			for _, e := range decodeBUCEntries(raw) {
				if m := float64(e.EstimatedTimeToRegainAccess); m > 0 {
					d := maxSuggestedDelay
					if m < maxSuggestedDelay.Minutes() {
						d = time.Duration(m * float64(time.Minute))
					}
					u.regain = max(u.regain, d)
				}
				if e.exhausted() {
					u.accountExhausted = true
				}
			}
		}
	}
	for _, v := range h.Values(headerAppUsage) {
		var app bucUsage
		if json.Unmarshal([]byte(v), &app) == nil && app.exhausted() {
			u.appExhausted = true
		}
	}
	return u
}

func decodeBUCEntries(raw json.RawMessage) []bucUsage {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '{' {
		var one bucUsage
		if json.Unmarshal(raw, &one) != nil {
			return nil
		}
		return []bucUsage{one}
	}
	var list []bucUsage
	if json.Unmarshal(raw, &list) != nil {
		// One bad entry must not hide the others.
		var raws []json.RawMessage
		if json.Unmarshal(raw, &raws) != nil {
			return nil
		}
		for _, r := range raws {
			var e bucUsage
			if json.Unmarshal(r, &e) == nil {
				list = append(list, e)
			}
		}
	}
	return list
}
