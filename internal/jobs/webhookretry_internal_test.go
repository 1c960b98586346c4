package jobs

import (
	"encoding/json"
	"testing"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
)

// An async command runs again only when Meta's webhook reports errors
// that may not repeat (fact sheet §5), and only for the requests whose
// failure means nothing was done.
func TestWebhookRetryClassifiesByCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, typ, webhook string
		want               graph.Class // ClassNone: no retry
	}{
		{"Unknown failure (131000) of a create", events.CreateGroup, `{"errors":[{"code":131000}]}`, graph.ClassTransient},
		{"Service unavailable (2) of a delete", events.DeleteGroup, `{"errors":[{"code":2}]}`, graph.ClassTransient},
		{"Group rate limit (131208) of a settings update", events.UpdateGroupSettings,
			`{"errors":[{"code":131208}],"group_subject":{"text":"x","update_successful":false,"errors":[{"code":131208}]}}`, graph.ClassThrottled},
		{"A field throttled beside one done", events.UpdateGroupSettings,
			`{"errors":[{"code":131201}],"group_subject":{"text":"x","update_successful":true},"group_description":{"text":"y","update_successful":false,"errors":[{"code":131208}]}}`, graph.ClassThrottled},
		{"A field throttled beside one refused for good", events.UpdateGroupSettings,
			`{"errors":[{"code":131201}],"profile_picture":{"update_successful":false,"errors":[{"code":131209}]},"group_description":{"text":"y","update_successful":false,"errors":[{"code":131208}]}}`, graph.ClassNone},
		{"Group create limit (131211)", events.CreateGroup, `{"errors":[{"code":131211}]}`, graph.ClassNone},
		{"Spam rate limit (131048), not retryable in the short term", events.CreateGroup, `{"errors":[{"code":131048}]}`, graph.ClassNone},
		{"A code the fact sheet does not know", events.CreateGroup, `{"errors":[{"code":999999}]}`, graph.ClassNone},
		{"No error", events.CreateGroup, `{"group_id":"g"}`, graph.ClassNone},
		{"A removal failing a participant transiently", events.RemoveParticipants,
			`{"errors":[{"code":131201}],"removed_participants":[{"input":"b"}],"failed_participants":[{"input":"a","errors":[{"code":131000}]}]}`, graph.ClassTransient},
		{"A removal failing a participant for good", events.RemoveParticipants,
			`{"errors":[{"code":131201}],"removed_participants":[{"input":"b"}],"failed_participants":[{"input":"a","errors":[{"code":131212}]}]}`, graph.ClassNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &Entry{CommandType: tc.typ, Pending: []Pending{{RequestID: "r1", Items: []string{"a", "b"}, Done: true, Result: json.RawMessage(tc.webhook)}}}
			got := graph.ClassNone
			if ge := webhookRetry(e); ge != nil {
				got = ge.Class
			}
			if got != tc.want {
				t.Errorf("webhookRetry of %s %s = %v, want %v", tc.typ, tc.webhook, got, tc.want)
			}
		})
	}
	t.Run("Not while a request is still pending", func(t *testing.T) {
		t.Parallel()
		e := &Entry{CommandType: events.CreateGroup, Pending: []Pending{{RequestID: "r1"}}}
		if ge := webhookRetry(e); ge != nil {
			t.Errorf("webhookRetry = %v, want none before the webhook", ge)
		}
	})
}
