package graph

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeError checks that any answer decodes to a usable *Error: no
// panic, a class, a message, and the invariants callers rely on.
func FuzzDecodeError(f *testing.F) {
	f.Add(429, "7", `{"1":[{"estimated_time_to_regain_access":2}]}`, []byte(`{"error":{"message":"(#131056) pair","code":131056,"error_subcode":0,"error_data":{"details":"x"},"fbtrace_id":"A"}}`))
	f.Add(400, "", "", []byte(`{"error":{"code":"131209","error_data":"{\"details\":\"square\"}","is_transient":"false"}}`))
	f.Add(502, "Wed, 21 Oct 2015 07:28:00 GMT", "{", []byte("<html>bad gateway</html>"))
	f.Add(206, "", "", []byte(`{"error":{"code":131201},"approved_join_requests":["a"]}`))
	f.Add(200, "", "", []byte(`{"error":"invalid_request"}`))
	f.Add(503, "", "", []byte{})
	f.Fuzz(func(t *testing.T, status int, retryAfter, usage string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retryAfter)
		h.Set("X-Business-Use-Case-Usage", usage)
		h.Set("X-App-Usage", usage)
		e := decodeError("fuzz", status, h, body)
		if e == nil {
			t.Fatal("nil error")
		}
		if e.Class == ClassNone {
			t.Fatalf("no class for status %d body %q", status, body)
		}
		if e.RetryAfter < 0 || e.RetryAfter > maxSuggestedDelay {
			t.Fatalf("RetryAfter %s out of range", e.RetryAfter)
		}
		if e.Class == ClassThrottled && e.RetryAfter == 0 {
			t.Fatal("throttle without RetryAfter")
		}
		if e.Class == ClassThrottled && e.Scope() == ScopeNone {
			t.Fatal("throttle without scope")
		}
		if status >= 500 && !IsAmbiguous(e) {
			t.Fatal("5xx not ambiguous")
		}
		if !strings.HasPrefix(e.Error(), "graph: fuzz: ") {
			t.Fatalf("Error() = %q", e.Error())
		}
		if ClassOf(e) != e.Class {
			t.Fatal("ClassOf disagrees with Class")
		}
	})
}

// FuzzDecodeResponse feeds arbitrary bytes to every answer decoder: they may
// refuse the input but must not panic, and a decoded list never has more
// entries than the input has bytes.
func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{
		`{"data":{"groups":[{"id":"g1","subject":"s","created_at":"1755548877"}]},"paging":{"cursors":{"after":"a","before":"b"},"next":"https://x"}}`,
		`{"data":[{"id":"g1","created_at":1755548877}],"paging":{"cursors":{"after":"a"}}}`,
		`{"id":"g","subject":"s","participants":{"data":[{"wa_id":1}]},"suspended":"true","creation_timestamp":"1","total_participant_count":"3"}`,
		`{"data":[{"join_request_id":"j","wa_id":"1","creation_timestamp":"1755548877"}],"paging":{"cursors":{}}}`,
		`{"messaging_product":"whatsapp","approved_join_requests":["a"],"failed_join_requests":[{"join_request_id":"b","errors":[{"code":"131203","title":"t","message":"m","error_data":{"details":"d"}}]}],"errors":[]}`,
		`{"success":"true","request_id":"r","failed_participants":[{"input":"+1","errors":[{"code":131212}]}]}`,
		`{"contacts":[{"input":"g","wa_id":"g"}],"messages":[{"id":"wamid.1"}]}`,
		`{"invite_link":"https://chat.whatsapp.com/x"}`,
		`{"data":[{"id":123,"name":"n","buttons":[{"type":"URL"}]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		decoders := []any{
			&wireGroupsPage{}, &wireGroupInfo{}, &wireJoinRequestsPage{}, &wireJoinRequestsResult{},
			&wireRemoveResult{}, &wireSendResult{}, &wireAsync{}, &wireInviteLink{},
			&wireList[wireLibraryTemplate]{}, &wireList[wireAccountTemplate]{},
		}
		for _, d := range decoders {
			_ = json.Unmarshal(body, d)
		}
		var gp wireGroupsPage
		if json.Unmarshal(body, &gp) == nil && len(gp.Data.Groups) > len(body) {
			t.Fatalf("%d groups from %d bytes", len(gp.Data.Groups), len(body))
		}
		_ = hasErrorObject(body)
		_ = parseUsage(http.Header{"X-Business-Use-Case-Usage": {string(body)}, "X-App-Usage": {string(body)}})
		_ = gp.Paging.hasNext()
	})
}
