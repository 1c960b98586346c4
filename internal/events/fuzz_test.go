package events

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeCommand holds DecodeCommand to its promises on any input: it
// never panics, it explains every refusal, and whatever it accepts
// re-validates, survives a marshal round trip unchanged, and satisfies the
// published schema (so the Go rules are never looser than the schemas).
func FuzzDecodeCommand(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "command*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(Names{}.Command(cmdPhone(data), typeOf(data)), data)
			f.Add("", data)
		}
	}
	f.Add("groups.cmd.1.create_group", []byte(`{"id":"a","type":"create_group","phone_number_id":"1","params":{"subject":" \u00a0x "}}`))
	f.Add("", []byte(`{"id":"a","type":"update_group_settings","phone_number_id":"1","group_id":"g","params":{"profile_picture":{"url":"http://[fe80::1%25en0]/a.jpg"}}}`))
	f.Add("", []byte(`{"id":"a","type":"get_invite_link","phone_number_id":"1","group_id":"g","deadline":"2026-11-24T18:00:00.1234567891Z"}`))

	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		cmd, err := DecodeCommand(subject, data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("refusal is not a *ValidationError with errors: %#v", err)
			}
			for _, fe := range ve.Errors {
				if fe.Message == "" {
					t.Fatalf("error on %q without a message", fe.Field)
				}
			}
			return
		}
		if err := cmd.Validate(); err != nil {
			t.Fatalf("accepted command fails Validate: %v", err)
		}
		if err := validateJSON(t, "command.json", data); err != nil {
			t.Fatalf("accepted, but the schema refuses it:\n%s\n%v", data, err)
		}
		out, err := json.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCommand(subject, out)
		if err != nil {
			t.Fatalf("re-encoded command refused: %v\n%s", err, out)
		}
		if !sameCommand(cmd, back) {
			t.Fatalf("round trip changed the command:\n%+v\n%+v", cmd, back)
		}
	})
}

func sameCommand(a, b Command) bool {
	if a.ID != b.ID || a.Type != b.Type || a.PhoneNumberID != b.PhoneNumberID || a.GroupID != b.GroupID {
		return false
	}
	if (a.Deadline == nil) != (b.Deadline == nil) || a.Deadline != nil && !a.Deadline.Equal(*b.Deadline) {
		return false
	}
	// json.Marshal re-escapes params (e.g. "<" as \u003c); compare values.
	var pa, pb any
	_ = json.Unmarshal(a.Params, &pa)
	_ = json.Unmarshal(b.Params, &pb)
	return reflect.DeepEqual(pa, pb) && (len(a.Params) == 0) == (len(b.Params) == 0)
}

func TestFuzzSeedsCoverEveryType(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/valid/command*.json")
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	joined := strings.Join(names, " ")
	for _, ct := range CommandTypes() {
		if !strings.Contains(joined, "command."+ct) {
			t.Errorf("no fuzz seed for %s", ct)
		}
	}
}
