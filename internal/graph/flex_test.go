package graph

import (
	"encoding/json"
	"testing"
	"time"
)

func TestFlexInt(t *testing.T) {
	t.Parallel()
	ok := map[string]int64{
		`1755548877`: 1755548877, `"1755548877"`: 1755548877, `" 42 "`: 42, `null`: 0, `""`: 0,
		`-3`: -3, `12.0`: 12, `1.755548877e+09`: 1755548877, `"131056"`: 131056,
	}
	for in, want := range ok {
		var v flexInt
		if err := json.Unmarshal([]byte(in), &v); err != nil || int64(v) != want {
			t.Errorf("flexInt(%s) = %d, %v; want %d", in, v, err, want)
		}
	}
	for _, in := range []string{`1.5`, `"abc"`, `true`, `{}`, `[1]`, `1e400`} {
		var v flexInt
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("flexInt(%s) = %d, want an error", in, v)
		}
	}
}

func TestFlexBool(t *testing.T) {
	t.Parallel()
	ok := map[string]bool{
		`true`: true, `false`: false, `"true"`: true, `"false"`: false, `"TRUE"`: true,
		`1`: true, `0`: false, `"1"`: true, `null`: false, `""`: false,
	}
	for in, want := range ok {
		var v flexBool
		if err := json.Unmarshal([]byte(in), &v); err != nil || bool(v) != want {
			t.Errorf("flexBool(%s) = %v, %v; want %v", in, v, err, want)
		}
	}
	for _, in := range []string{`"yes"`, `2`, `{}`, `[]`} {
		var v flexBool
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("flexBool(%s) = %v, want an error", in, v)
		}
	}
}

func TestFlexTimeStringAndList(t *testing.T) {
	t.Parallel()
	var ts struct {
		A, B, C flexTime
	}
	if err := json.Unmarshal([]byte(`{"A":"1755548877","B":1755548877,"C":"0"}`), &ts); err != nil {
		t.Fatal(err)
	}
	want := time.Unix(1755548877, 0).UTC()
	if !ts.A.Time().Equal(want) || !ts.B.Time().Equal(want) || !ts.C.Time().IsZero() {
		t.Errorf("flexTime = %v %v %v, want %v %v zero", ts.A.Time(), ts.B.Time(), ts.C.Time(), want, want)
	}

	var ids []flexString
	if err := json.Unmarshal([]byte(`["abc", 123456789012345678, null]`), &ids); err != nil {
		t.Fatal(err)
	}
	if ids[0] != "abc" || ids[1] != "123456789012345678" || ids[2] != "" {
		t.Errorf("flexString = %q", ids)
	}
	var bad flexString
	if err := json.Unmarshal([]byte(`{}`), &bad); err == nil {
		t.Error("flexString accepted an object")
	}

	var bare, edge flexList[wireParticipant]
	if err := json.Unmarshal([]byte(`[{"wa_id":"1"},{"user_id":"US.2"}]`), &bare); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"data":[{"wa_id":1}]}`), &edge); err != nil {
		t.Fatal(err)
	}
	if len(bare) != 2 || bare[1].UserID != "US.2" || len(edge) != 1 || edge[0].WAID != "1" {
		t.Errorf("flexList = %+v / %+v", bare, edge)
	}
}

// TestGroupInfoDrift decodes the group info sample of Meta's reference page,
// where every scalar is quoted, and the BSUID variant without wa_id.
func TestGroupInfoDrift(t *testing.T) {
	t.Parallel()
	sample := `{
	  "messaging_product": "whatsapp",
	  "id": "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
	  "subject": "Shop",
	  "creation_timestamp": "1683321600",
	  "suspended": "false",
	  "description": "d",
	  "total_participant_count": "2",
	  "participants": [{"wa_id": "16505551234"}, {"user_id": "US.13491208655302741918", "parent_user_id": "US.ENT.1", "username": "@neo"}],
	  "join_approval_mode": "approval_required"
	}`
	var w wireGroupInfo
	if err := json.Unmarshal([]byte(sample), &w); err != nil {
		t.Fatal(err)
	}
	if w.TotalParticipantCount != 2 || bool(w.Suspended) || w.CreationTimestamp.Time().Unix() != 1683321600 {
		t.Errorf("scalars: %+v", w)
	}
	p := w.Participants[1].participant()
	if p.WAID != "" || p.ID() != "US.13491208655302741918" || p.Username != "@neo" {
		t.Errorf("BSUID participant = %+v", p)
	}
	if err := json.Unmarshal([]byte(`{"suspended": true}`), &w); err != nil || !bool(w.Suspended) {
		t.Errorf("suspended as a bool: %v %v", w.Suspended, err)
	}
}
