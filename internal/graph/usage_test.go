package graph

import (
	"net/http"
	"testing"
	"time"
)

func TestSuggestedDelay(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"no headers", http.Header{}, 0},
		{"Retry-After in seconds", http.Header{"Retry-After": {"30"}}, 30 * time.Second},
		{"Retry-After as an HTTP date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"Retry-After date in the past", http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0},
		{"Retry-After garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"Retry-After negative", http.Header{"Retry-After": {"-5"}}, 0},
		{"Retry-After absurd is capped", http.Header{"Retry-After": {"99999999999999"}}, maxSuggestedDelay},
		{
			"business use case: minutes to regain access",
			http.Header{"X-Business-Use-Case-Usage": {`{"102345":[{"type":"whatsapp","call_count":100,"total_cputime":12,"total_time":30,"estimated_time_to_regain_access":5}]}`}},
			5 * time.Minute,
		},
		{
			"business use case: largest of several businesses and entries",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"type":"a","estimated_time_to_regain_access":2},{"type":"b","estimated_time_to_regain_access":"9"}],"2":[{"type":"c","estimated_time_to_regain_access":4}]}`}},
			9 * time.Minute,
		},
		{
			"business use case: single object instead of an array",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":{"type":"a","estimated_time_to_regain_access":3}}`}},
			3 * time.Minute,
		},
		{
			"business use case: exhausted without a time",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"type":"a","call_count":100,"estimated_time_to_regain_access":0}]}`}},
			usageExhaustedDelay,
		},
		{
			"business use case: below 100 %",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"type":"a","call_count":99,"total_time":40}]}`}},
			0,
		},
		{
			"business use case: one broken entry does not hide the others",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"type":7,"estimated_time_to_regain_access":[]},{"type":"b","estimated_time_to_regain_access":6}]}`}},
			6 * time.Minute,
		},
		{"business use case: not JSON", http.Header{"X-Business-Use-Case-Usage": {`{{`}}, 0},
		{"app usage at 100 %", http.Header{"X-App-Usage": {`{"call_count":100,"total_cputime":3,"total_time":4}`}}, usageExhaustedDelay},
		{"app usage quoted percentages", http.Header{"X-App-Usage": {`{"call_count":"28","total_cputime":"101","total_time":"4"}`}}, usageExhaustedDelay},
		{"app usage below 100 %", http.Header{"X-App-Usage": {`{"call_count":28,"total_cputime":25,"total_time":25}`}}, 0},
		{
			"Retry-After and usage: the longer wins",
			http.Header{"Retry-After": {"30"}, "X-Business-Use-Case-Usage": {`{"1":[{"estimated_time_to_regain_access":1}]}`}},
			time.Minute,
		},
		{
			"fractional minutes",
			http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"estimated_time_to_regain_access":0.5}]}`}},
			30 * time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := suggestedDelay(tc.header, now); got != tc.want {
				t.Errorf("suggestedDelay = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestUsageScopesUnknownThrottle(t *testing.T) {
	t.Parallel()
	app := http.Header{"X-App-Usage": {`{"call_count":100}`}}
	if e := decodeError("x", 429, app, nil); e.Scope() != ScopeApp {
		t.Errorf("bare 429 with app usage at 100 %%: scope %q, want app", e.Scope())
	}
	buc := http.Header{"X-Business-Use-Case-Usage": {`{"1":[{"call_count":100}]}`}}
	if e := decodeError("x", 429, buc, nil); e.Scope() != ScopeAccount {
		t.Errorf("bare 429 with business usage at 100 %%: scope %q, want account", e.Scope())
	}
}
