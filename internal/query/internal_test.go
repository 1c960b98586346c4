package query

import (
	"regexp"
	"testing"
	"unicode/utf8"

	"github.com/groupflow/groupflow/internal/events"
)

// kvKey is what NATS KV accepts as a key.
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

func TestCacheKeysAreValidKVKeys(t *testing.T) {
	t.Parallel()
	for _, group := range []string{"Y2FwaV9ncm91cDoxMjM=", "a.b..c", "*", ">", "ü", "with space"} {
		for _, k := range []string{scope{"123", group}.markerKey(), scope{phone: "123"}.markerKey(), answerKey("123", events.QueryGroupInfo, group, "subject")} {
			if !kvKey.MatchString(k) {
				t.Errorf("key %q (group %q) is not a valid KV key", k, group)
			}
		}
	}
	if digest("ab", "c") == digest("a", "bc") {
		t.Error("digest collides on concatenation")
	}
}

// FuzzDecode feeds arbitrary bodies to every endpoint's request decoding:
// it must never panic, and what it accepts must be a valid request.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"group_id":"G1"}`, `{"group_id":"G1","fields":["participants"]}`,
		`{"limit":2,"after":"x"}`, `{"command_id":"a:b"}`, `[`, `{"group_id":null}`, `{"limit":1e400}`, "{\"group_id\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var gi GroupInfoRequest
		if decode(data, &gi) == nil && checkID("group_id", gi.GroupID, nil) == nil {
			if fields, errs := canonicalFields(gi.Fields); errs == nil && (len(fields) == 0 || fields[0] != "subject") {
				t.Errorf("fields %v accepted without the subject first", fields)
			}
			if !utf8.ValidString(gi.GroupID) || len(gi.GroupID) > maxIDLength {
				t.Errorf("group id %q accepted", gi.GroupID)
			}
		}
		var lg ListGroupsRequest
		if decode(data, &lg) == nil && checkPage(lg.Limit, lg.After, lg.Before, nil) == nil {
			if lg.Limit < 0 || lg.Limit > maxPageSize || (lg.After != "" && lg.Before != "") {
				t.Errorf("page %+v accepted", lg)
			}
		}
		var cs CommandStatusRequest
		_ = decode(data, &cs)
	})
}
