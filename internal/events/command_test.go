package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// body builds a command body: a valid one of type t, changed by the edits
// (a nil value deletes the key).
func body(t string, edits map[string]any) string {
	m := map[string]any{"id": "cmd-1", "type": t, "phone_number_id": testPhone}
	if GroupScoped(t) {
		m["group_id"] = testGroup
	}
	if p, ok := sampleParams()[t]; ok {
		m["params"] = p
	}
	for k, v := range edits {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// params builds a body of type t whose params are p.
func params(t string, p any) string { return body(t, map[string]any{"params": p}) }

func invites(n int) []Invite {
	out := make([]Invite, n)
	for i := range out {
		out[i] = Invite{To: fmt.Sprintf("+1650%07d", i), GroupID: testGroup}
	}
	return out
}

func strs(n int, f string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(f, i)
	}
	return out
}

func TestDecodeCommand(t *testing.T) {
	t.Parallel()
	tpl := TemplateRef{Name: "my_group_invite", Language: "en"}
	jpeg := "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA=="
	subj := func(t string) string { return Names{}.Command(testPhone, t) }
	tests := []struct {
		name    string
		subject string
		body    string
		// want maps every field that must be reported to a piece of its
		// message; empty means the command is valid.
		want map[string]string
	}{
		// The body as a whole.
		{"Too large", "", `{"id":"` + strings.Repeat("x", MaxCommandSize) + `"}`, map[string]string{"": "more than the 1048576 allowed"}},
		{"Invalid UTF-8", "", "{\"id\":\"\xff\"}", map[string]string{"": "UTF-8"}},
		{"Not JSON", "", `{"id":`, map[string]string{"": "not JSON"}},
		{"Trailing data", "", body(CreateGroup, nil) + ` {}`, map[string]string{"": "more than one JSON value"}},
		{"Array body", "", `[]`, map[string]string{"": "must be a JSON object, not an array"}},
		{"Empty body", "", ``, map[string]string{"": "not JSON"}},
		{"Duplicate key in params", "", `{"id":"a","type":"create_group","phone_number_id":"1","params":{"subject":"a","subject":"b"}}`, map[string]string{"": `duplicate key "subject" in params`}},
		{"Unknown top-level field", "", body(CreateGroup, map[string]any{"priority": 1}), map[string]string{"priority": "unknown field"}},
		{"Field names are case-sensitive", "", body(CreateGroup, map[string]any{"ID": "x"}), map[string]string{"ID": "unknown field"}},
		{"Null top-level field", "", body(CreateGroup, map[string]any{"deadline": json.RawMessage("null")}), map[string]string{"deadline": "not null"}},

		// id
		{"Id missing", "", body(DeleteGroup, map[string]any{"id": nil}), map[string]string{"id": "is required"}},
		{"Id of 128 characters", "", body(DeleteGroup, map[string]any{"id": strings.Repeat("a", 128)}), nil},
		{"Id of 129 characters", "", body(DeleteGroup, map[string]any{"id": strings.Repeat("a", 129)}), map[string]string{"id": "at most 128"}},
		{"Id with every allowed character", "", body(DeleteGroup, map[string]any{"id": "Az09_-.:"}), nil},
		{"Id with a space", "", body(DeleteGroup, map[string]any{"id": "order 1"}), map[string]string{"id": "may only hold"}},
		{"Id with a slash", "", body(DeleteGroup, map[string]any{"id": "order/1"}), map[string]string{"id": "may only hold"}},
		{"Id as a number", "", body(DeleteGroup, map[string]any{"id": 7}), map[string]string{"id": "must be a string, not a number"}},

		// type
		{"Type missing", "", body(DeleteGroup, map[string]any{"type": nil}), map[string]string{"type": "is required"}},
		{"Type unknown", "", body(DeleteGroup, map[string]any{"type": "make_coffee"}), map[string]string{"type": `unknown command type "make_coffee"`}},

		// phone_number_id
		{"Phone number id missing", "", body(DeleteGroup, map[string]any{"phone_number_id": nil}), map[string]string{"phone_number_id": "is required"}},
		{"Phone number id not numeric", "", body(DeleteGroup, map[string]any{"phone_number_id": "+1650"}), map[string]string{"phone_number_id": "numeric"}},
		{"Phone number id too long", "", body(DeleteGroup, map[string]any{"phone_number_id": strings.Repeat("1", 33)}), map[string]string{"phone_number_id": "numeric"}},

		// group_id
		{"Group id required", "", body(RemoveParticipants, map[string]any{"group_id": nil}), map[string]string{"group_id": "is required for remove_participants"}},
		{"Group id forbidden", "", body(EnsureInviteTemplate, map[string]any{"group_id": testGroup}), map[string]string{"group_id": "must be left out for ensure_invite_template"}},
		{"Group id empty", "", body(CreateGroup, map[string]any{"group_id": ""}), map[string]string{"group_id": "must not be empty"}},
		{"Group id with a space", "", body(DeleteGroup, map[string]any{"group_id": "a b"}), map[string]string{"group_id": "printable ASCII"}},
		{"Group id too long", "", body(DeleteGroup, map[string]any{"group_id": strings.Repeat("g", 257)}), map[string]string{"group_id": "at most 256"}},
		{"Group id a dot segment", "", body(DeleteGroup, map[string]any{"group_id": ".."}), map[string]string{"group_id": "not . or .."}},
		{"Group id the current segment", "", body(GetInviteLink, map[string]any{"group_id": "."}), map[string]string{"group_id": "not . or .."}},
		{"Invite's group id a dot segment", "", params(SendGroupInvite, map[string]any{"to": "16505551234", "group_id": "..", "template": map[string]any{"name": "t", "language": "en"}}), map[string]string{"params.group_id": "not . or .."}},
		{"Group id repeating the invite's group", "", body(SendGroupInvite, map[string]any{"group_id": testGroup}), nil},
		{"Group id contradicting the invite's group", "", body(SendGroupInvite, map[string]any{"group_id": "other"}), map[string]string{"group_id": "must equal params.group_id"}},

		// subject and body agree
		{"Subject agrees", subj(CreateGroup), body(CreateGroup, nil), nil},
		{"Subject with another prefix", "acme.cmd." + testPhone + ".create_group", body(CreateGroup, nil), nil},
		{"Subject with another phone", "groups.cmd.999.create_group", body(CreateGroup, nil), map[string]string{"subject": `phone number id "999"`}},
		{"Subject with another type", subj(DeleteGroup), body(CreateGroup, nil), map[string]string{"subject": `command type "delete_group"`}},
		{"Subject that is not a command subject", "groups.event." + testPhone + ".create_group", body(CreateGroup, nil), map[string]string{"subject": "not a command subject"}},
		{"Subject with too many tokens", subj(CreateGroup) + ".x", body(CreateGroup, nil), map[string]string{"subject": "not a command subject"}},

		// params in general
		{"Params missing", "", body(CreateGroup, map[string]any{"params": nil}), map[string]string{"params": "is required for create_group"}},
		{"Params null", "", body(CreateGroup, map[string]any{"params": json.RawMessage("null")}), map[string]string{"params": "must not be null"}},
		{"Params a string", "", body(CreateGroup, map[string]any{"params": "subject"}), map[string]string{"params": "must be an object, not a string"}},
		{"Params empty for a type without params", "", body(GetInviteLink, map[string]any{"params": map[string]any{}}), nil},
		{"Params given to a type without params", "", body(GetInviteLink, map[string]any{"params": map[string]any{"x": 1}}), map[string]string{"params.x": "unknown field"}},
		{"Unknown params field", "", params(CreateGroup, map[string]any{"subject": "s", "colour": "red"}), map[string]string{"params.colour": "unknown field"}},
		{"Params field of the wrong kind", "", params(CreateGroup, map[string]any{"subject": 5}), map[string]string{"params.subject": "must be a string, not a number"}},

		// create_group
		{"Subject trimmed", "", params(CreateGroup, map[string]any{"subject": "  x  "}), nil},
		{"Subject of 128 characters plus spaces", "", params(CreateGroup, map[string]any{"subject": " " + strings.Repeat("é", 128) + "\n"}), nil},
		{"Subject of 129 characters", "", params(CreateGroup, map[string]any{"subject": strings.Repeat("é", 129)}), map[string]string{"params.subject": "at most 128 characters after trimming, got 129"}},
		{"Subject blank", "", params(CreateGroup, map[string]any{"subject": " \t\r\n"}), map[string]string{"params.subject": "empty or blank"}},
		{"Subject missing", "", params(CreateGroup, map[string]any{}), map[string]string{"params.subject": "empty or blank"}},
		{"Description of 2048 characters", "", params(CreateGroup, map[string]any{"subject": "s", "description": strings.Repeat("d", 2048)}), nil},
		{"Description of 2049 characters", "", params(CreateGroup, map[string]any{"subject": "s", "description": strings.Repeat("d", 2049)}), map[string]string{"params.description": "at most 2048"}},
		{"Join approval mode auto", "", params(CreateGroup, map[string]any{"subject": "s", "join_approval_mode": "auto_approve"}), nil},
		{"Join approval mode unknown", "", params(CreateGroup, map[string]any{"subject": "s", "join_approval_mode": "open"}), map[string]string{"params.join_approval_mode": `"approval_required" or "auto_approve"`}},

		// update_group_settings
		{"Settings: nothing to change", "", params(UpdateGroupSettings, map[string]any{}), map[string]string{"params": "at least one"}},
		{"Settings: description cleared", "", params(UpdateGroupSettings, map[string]any{"description": ""}), nil},
		{"Settings: subject blank", "", params(UpdateGroupSettings, map[string]any{"subject": " "}), map[string]string{"params.subject": "empty or blank"}},
		{"Settings: picture by URL", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{URL: "https://[::1]:8443/a.jpg"}}), nil},
		{"Settings: picture URL relative", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{URL: "/a.jpg"}}), map[string]string{"params.profile_picture.url": "absolute http or https"}},
		{"Settings: picture URL upper-case scheme", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{URL: "HTTPS://cdn.example.com/a.jpg"}}), map[string]string{"params.profile_picture.url": "absolute http or https"}},
		{"Settings: picture inline", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{MediaBase64: jpeg}}), nil},
		{"Settings: picture not base64", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{MediaBase64: "/9j/***"}}), map[string]string{"params.profile_picture.media_base64": "standard base64"}},
		{"Settings: picture base64 with line breaks", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{MediaBase64: "/9j/\n4AAQ"}}), map[string]string{"params.profile_picture.media_base64": "without line breaks"}},
		{"Settings: picture base64 badly padded", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{MediaBase64: "/9j/4A"}}), map[string]string{"params.profile_picture.media_base64": "standard base64"}},
		{"Settings: picture not a JPEG", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{MediaBase64: "iVBORw0KGgo="}}), map[string]string{"params.profile_picture.media_base64": "JPEG"}},
		{"Settings: picture empty", "", params(UpdateGroupSettings, map[string]any{"profile_picture": map[string]any{}}), map[string]string{"params.profile_picture": "must have url or media_base64"}},
		{"Settings: picture both ways", "", params(UpdateGroupSettings, map[string]any{"profile_picture": Picture{URL: "https://a/b.jpg", MediaBase64: jpeg}}), map[string]string{"params.profile_picture": "not both"}},

		// approve / reject join requests
		{"Join requests by id", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []string{"a", "b"}}), nil},
		{"Join requests all pending", "", params(RejectJoinRequests, map[string]any{"all_pending": true}), nil},
		{"Join requests ids with all_pending false", "", params(RejectJoinRequests, map[string]any{"join_request_ids": []string{"a"}, "all_pending": false}), nil},
		{"Join requests neither", "", params(ApproveJoinRequests, map[string]any{"all_pending": false}), map[string]string{"params": "join_request_ids or all_pending: true"}},
		{"Join requests both", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []string{"a"}, "all_pending": true}), map[string]string{"params": "not both"}},
		{"Join requests empty ids", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []string{}}), map[string]string{"params.join_request_ids": "must not be empty"}},
		{"Join requests duplicate ids", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []string{"a", "b", "a"}}), map[string]string{"params.join_request_ids[2]": "duplicate"}},
		{"Join requests empty id", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []string{""}}), map[string]string{"params.join_request_ids[0]": "is required"}},
		{"Join requests null id", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": []any{"a", nil}}), map[string]string{"params.join_request_ids[1]": "not null"}},
		{"Join requests at the limit", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": strs(MaxJoinRequestIDs, "jr%d")}), nil},
		{"Join requests over the limit", "", params(ApproveJoinRequests, map[string]any{"join_request_ids": strs(MaxJoinRequestIDs+1, "jr%d")}), map[string]string{"params.join_request_ids": "at most 1024"}},

		// remove_participants
		{"Remove phone, wa_id and user id", "", params(RemoveParticipants, map[string]any{"participants": []string{"+17865347866", "16505551234", "US.13491208655302741918"}}), nil},
		{"Remove nobody", "", params(RemoveParticipants, map[string]any{"participants": []string{}}), map[string]string{"params.participants": "must not be empty"}},
		{"Remove without participants", "", params(RemoveParticipants, map[string]any{}), map[string]string{"params.participants": "is required"}},
		{"Remove the same person twice", "", params(RemoveParticipants, map[string]any{"participants": []string{"16505551234", "+16505551234"}}), map[string]string{"params.participants[1]": "duplicate"}},
		{"Remove an e-mail address", "", params(RemoveParticipants, map[string]any{"participants": []string{"ana@example.com"}}), map[string]string{"params.participants[0]": "phone number"}},
		{"Remove too short a number", "", params(RemoveParticipants, map[string]any{"participants": []string{"12345"}}), map[string]string{"params.participants[0]": "phone number"}},
		{"Remove at the limit", "", params(RemoveParticipants, map[string]any{"participants": strs(MaxRemoveParticipants, "1650%07d")}), nil},
		{"Remove over the limit", "", params(RemoveParticipants, map[string]any{"participants": strs(MaxRemoveParticipants+1, "1650%07d")}), map[string]string{"params.participants": "at most 256"}},

		// ensure_invite_template
		{"Template: WABA id not numeric", "", params(EnsureInviteTemplate, EnsureInviteTemplateParams{WABAID: "waba", Name: "n", Language: "en"}), map[string]string{"params.waba_id": "numeric"}},
		{"Template: name with capitals", "", params(EnsureInviteTemplate, EnsureInviteTemplateParams{WABAID: "1", Name: "My_Invite", Language: "en"}), map[string]string{"params.name": "lowercase"}},
		{"Template: language spelled out", "", params(EnsureInviteTemplate, EnsureInviteTemplateParams{WABAID: "1", Name: "n", Language: "english"}), map[string]string{"params.language": "language code"}},
		{"Template: everything missing", "", params(EnsureInviteTemplate, map[string]any{}), map[string]string{"params.waba_id": "is required", "params.name": "is required", "params.language": "is required"}},

		// send_group_invite
		{"Invite: to a user id", "", params(SendGroupInvite, SendGroupInviteParams{To: "US.1", GroupID: testGroup, Template: tpl}), map[string]string{"params.to": "phone number"}},
		{"Invite: without group", "", params(SendGroupInvite, map[string]any{"to": "+16505551234", "template": tpl}), map[string]string{"params.group_id": "is required"}},
		{"Invite: resend when ambiguous", "", params(SendGroupInvite, SendGroupInviteParams{To: "16505551234", GroupID: testGroup, Template: tpl, OnAmbiguous: OnAmbiguousResend}), nil},
		{"Invite: retry when ambiguous", "", params(SendGroupInvite, SendGroupInviteParams{To: "16505551234", GroupID: testGroup, Template: tpl, OnAmbiguous: "retry"}), map[string]string{"params.on_ambiguous": `"fail" or "resend"`}},
		{"Invite: template a string", "", params(SendGroupInvite, map[string]any{"to": "16505551234", "group_id": testGroup, "template": "my_group_invite"}), map[string]string{"params.template": "must be an object, not a string"}},

		// start_invite_campaign
		{"Campaign at the inline limit", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, Invites: invites(MaxInlineInvites)}), nil},
		{"Campaign over the inline limit", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, Invites: invites(MaxInlineInvites + 1)}), map[string]string{"params.invites": "at most 10000"}},
		{"Campaign by object reference", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, InvitesObject: &ObjectRef{Bucket: "groups_campaign_lists", Name: "c/list.json"}}), nil},
		{"Campaign without invites", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl}), map[string]string{"params": "invites or invites_object"}},
		{"Campaign with both lists", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, Invites: invites(1), InvitesObject: &ObjectRef{Bucket: "b", Name: "n"}}), map[string]string{"params": "not both"}},
		{"Campaign with an empty list", "", params(StartInviteCampaign, map[string]any{"campaign_id": "c", "template": tpl, "invites": []any{}}), map[string]string{"params.invites": "must not be empty"}},
		{"Campaign with a bad bucket", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, InvitesObject: &ObjectRef{Bucket: "a.b", Name: "n"}}), map[string]string{"params.invites_object.bucket": "bucket name"}},
		{"Campaign inviting someone twice", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, Invites: []Invite{{"+16505551234", "g"}, {"16505551234", "g"}}}), map[string]string{"params.invites[1]": "duplicate"}},
		{"Campaign inviting someone to two groups", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c", Template: tpl, Invites: []Invite{{"+16505551234", "g1"}, {"+16505551234", "g2"}}}), nil},
		{"Campaign with a bad campaign id", "", params(StartInviteCampaign, StartInviteCampaignParams{CampaignID: "c 1", Template: tpl, Invites: invites(1)}), map[string]string{"params.campaign_id": "may only hold"}},

		// cancel_campaign
		{"Cancel without campaign id", "", params(CancelCampaign, map[string]any{}), map[string]string{"params.campaign_id": "is required"}},

		// deadline
		{"Deadline with an offset", "", body(GetInviteLink, map[string]any{"deadline": "2026-11-24T18:00:00.123+01:00"}), nil},
		{"Deadline without a zone", "", body(GetInviteLink, map[string]any{"deadline": "2026-11-24T18:00:00"}), map[string]string{"deadline": "RFC 3339"}},
		{"Deadline as unix seconds", "", body(GetInviteLink, map[string]any{"deadline": 1795975200}), map[string]string{"deadline": "must be a string"}},
		{"Deadline with a one-digit hour", "", body(GetInviteLink, map[string]any{"deadline": "2026-11-24T8:00:00Z"}), map[string]string{"deadline": "RFC 3339"}},
		{"Deadline with a lower-case zone", "", body(GetInviteLink, map[string]any{"deadline": "2026-11-24T18:00:00z"}), map[string]string{"deadline": "RFC 3339"}},
		{"Deadline finer than nanoseconds", "", body(GetInviteLink, map[string]any{"deadline": "2026-11-24T18:00:00.1234567891Z"}), map[string]string{"deadline": "RFC 3339"}},
		{"Deadline empty", "", body(GetInviteLink, map[string]any{"deadline": ""}), map[string]string{"deadline": "must not be empty"}},

		// Every error at once, each field once.
		{"Every error at once", subj(DeleteGroup), `{"id":"a b","type":"create_group","phone_number_id":"x","group_id":"g","params":{"subject":"","description":7,"size":1},"deadline":"soon","extra":true}`,
			map[string]string{"id": "may only hold", "phone_number_id": "numeric", "group_id": "must be left out", "params.subject": "empty",
				"params.description": "must be a string", "params.size": "unknown field", "deadline": "RFC 3339", "extra": "unknown field", "subject": "does not match"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, err := DecodeCommand(tt.subject, []byte(tt.body))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("want a valid command, got %v", err)
				}
				if verr := cmd.Validate(); verr != nil {
					t.Fatalf("decoded command fails Validate: %v", verr)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError on %v, got %v", slices.Sorted(maps.Keys(tt.want)), err)
			}
			got := map[string]string{}
			for _, fe := range ve.Errors {
				if _, dup := got[fe.Field]; dup {
					t.Errorf("field %q reported twice: %v", fe.Field, err)
				}
				got[fe.Field] = fe.Message
			}
			for field, msg := range tt.want {
				if g, ok := got[field]; !ok {
					t.Errorf("no error on %q (want one containing %q); got %v", field, msg, err)
				} else if !strings.Contains(g, msg) {
					t.Errorf("error on %q = %q, want it to contain %q", field, g, msg)
				}
			}
			for field, msg := range got {
				if _, ok := tt.want[field]; !ok {
					t.Errorf("unexpected error on %q: %s", field, msg)
				}
			}
		})
	}
}

func TestDecodeCommandKeepsWhatItCouldRead(t *testing.T) {
	t.Parallel()
	cmd, err := DecodeCommand("", []byte(`{"id":"order-1","type":"create_group","phone_number_id":"1","params":{"subject":""}}`))
	if err == nil {
		t.Fatal("want an error for a blank subject")
	}
	// The rejection event needs the id, type and number even of a bad command.
	if cmd.ID != "order-1" || cmd.Type != CreateGroup || cmd.PhoneNumberID != "1" {
		t.Errorf("got %+v, want id, type and phone number id kept", cmd)
	}
}

func TestDecodeCommandCanonicalParams(t *testing.T) {
	t.Parallel()
	cmd, err := DecodeCommand("", []byte("{\"id\":\"a\",\"type\":\"create_group\",\"phone_number_id\":\"1\",\n \"params\": { \"subject\" : \"s\" },\"deadline\":\"2026-11-24T18:00:00+01:00\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(cmd.Params), `{"subject":"s"}`; got != want {
		t.Errorf("params = %s, want %s", got, want)
	}
	if want := time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC); cmd.Deadline == nil || !cmd.Deadline.Equal(want) {
		t.Errorf("deadline = %v, want %v", cmd.Deadline, want)
	}
	var p CreateGroupParams
	if err := cmd.DecodeParams(&p); err != nil || p.Subject != "s" {
		t.Errorf("DecodeParams = %+v, %v; want subject s", p, err)
	}
	var wrong SendGroupInviteParams
	if err := cmd.DecodeParams(&wrong); err == nil {
		t.Error("DecodeParams into the wrong type: want an unknown field error")
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	err := &ValidationError{Errors: []FieldError{{Field: "", Message: "body is not JSON"}, {Field: "params.subject", Message: "is required"}}}
	if got, want := err.Error(), "invalid command: body is not JSON; params.subject: is required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestParseCommandSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		names          Names
		subject        string
		phone, cmdType string
		ok             bool
	}{
		{Names{}, "groups.cmd.106540352242922.create_group", "106540352242922", "create_group", true},
		{Names{Prefix: "acme"}, "acme.cmd.1.delete_group", "1", "delete_group", true},
		{Names{}, "groups.cmd.1.not_a_type", "1", "not_a_type", true},
		{Names{}, "acme.cmd.1.create_group", "", "", false},
		{Names{}, "groups.event.1.create_group", "", "", false},
		{Names{}, "groups.cmd.1", "", "", false},
		{Names{}, "groups.cmd.1.create_group.x", "", "", false},
		{Names{}, "groups.cmd..create_group", "", "", false},
		{Names{}, "groups.cmd.*.create_group", "", "", false},
		{Names{}, "", "", "", false},
	}
	for _, tt := range tests {
		phone, cmdType, ok := ParseCommandSubject(tt.names, tt.subject)
		if phone != tt.phone || cmdType != tt.cmdType || ok != tt.ok {
			t.Errorf("ParseCommandSubject(%+v, %q) = %q, %q, %v; want %q, %q, %v",
				tt.names, tt.subject, phone, cmdType, ok, tt.phone, tt.cmdType, tt.ok)
		}
	}
}

func TestCommandTypes(t *testing.T) {
	t.Parallel()
	types := CommandTypes()
	if len(types) != len(commandSpecs) {
		t.Fatalf("CommandTypes has %d types, the spec table %d", len(types), len(commandSpecs))
	}
	for _, ct := range types {
		if !IsCommandType(ct) || !ValidToken(ct) {
			t.Errorf("%q: IsCommandType = %v, ValidToken = %v", ct, IsCommandType(ct), ValidToken(ct))
		}
	}
	types[0] = "changed"
	if CommandTypes()[0] != CreateGroup {
		t.Error("CommandTypes must return a copy")
	}
	scoped := []string{DeleteGroup, UpdateGroupSettings, GetInviteLink, ResetInviteLink, ApproveJoinRequests, RejectJoinRequests, RemoveParticipants}
	for _, ct := range CommandTypes() {
		if got, want := GroupScoped(ct), slices.Contains(scoped, ct); got != want {
			t.Errorf("GroupScoped(%s) = %v, want %v", ct, got, want)
		}
	}
}

func TestDeeplyNestedCommandIsRefusedCheaply(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000),
		`{"id":"x","type":"create_group","phone_number_id":"1","params":` + strings.Repeat(`{"a":`, 100_000) + "1" + strings.Repeat("}", 100_001),
	} {
		_, err := DecodeCommand("", []byte(body))
		if err == nil || !strings.Contains(err.Error(), "deeper than") {
			t.Errorf("DecodeCommand of a %d-byte nested body = %v, want a nesting error", len(body), err)
		}
	}
	// The deepest real command still decodes.
	ok := `{"id":"c1","type":"start_invite_campaign","phone_number_id":"106540352242922","params":{"campaign_id":"c1","template":{"name":"t","language":"en"},"invites":[{"to":"16505551234","group_id":"Y2FwaV9ncm91cDoxZD"}]}}`
	if _, err := DecodeCommand("", []byte(ok)); err != nil {
		t.Errorf("a real campaign command was refused: %v", err)
	}
}

func TestWrongItemsAreListedUpToALimit(t *testing.T) {
	t.Parallel()
	participants := func(item string) []byte {
		return []byte(`{"id":"c1","type":"remove_participants","phone_number_id":"1","group_id":"g","params":{"participants":[` +
			strings.Repeat(item+",", 5000) + item + "]}}")
	}
	// Thousands of items of the wrong type: one error each, at first.
	_, err := DecodeCommand("", participants("1"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("DecodeCommand = %v, want a *ValidationError", err)
	}
	if len(ve.Errors) != MaxFieldErrors {
		t.Fatalf("%d errors, want %d", len(ve.Errors), MaxFieldErrors)
	}
	if got, want := ve.Errors[MaxFieldErrors-1], (FieldError{Message: "and 4903 more errors like those above"}); got != want {
		t.Errorf("last error = %+v, want %+v", got, want)
	}
	// A list's own error still covers its items': one error, not 5001.
	_, err = DecodeCommand("", participants(`"x"`))
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "params.participants" {
		t.Errorf("DecodeCommand of 5001 wrong participants = %v, want one error on params.participants", err)
	}
}
