package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaBase is where the tests pretend the embedded schemas are served, as
// the ingest would serve them; their relative $refs resolve against it.
const schemaBase = "https://schemas.groupflow.test/"

// embedLoader serves schemaBase from the embedded files, so the tests check
// exactly what the package ships.
type embedLoader struct{}

func (embedLoader) Load(url string) (any, error) {
	name, ok := strings.CutPrefix(url, schemaBase)
	if !ok {
		return nil, fmt.Errorf("schema %s is outside %s", url, schemaBase)
	}
	f, err := Schemas().Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only embedded file: Close cannot lose data
	return jsonschema.UnmarshalJSON(f)
}

var (
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

// compiledSchema compiles a file of Schemas (once per test binary) with
// format assertions on, so "date-time" and "uri" are checked, not just noted.
func compiledSchema(t testing.TB, name string) *jsonschema.Schema {
	t.Helper()
	schemaMu.Lock()
	defer schemaMu.Unlock()
	if s, ok := schemaCache[name]; ok {
		return s
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(embedLoader{})
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	s, err := c.Compile(schemaBase + name)
	if err != nil {
		t.Fatalf("compile schema %s: %v", name, err)
	}
	schemaCache[name] = s
	return s
}

func validateJSON(t testing.TB, schema string, data []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("instance for %s is not JSON: %v", schema, err)
	}
	return compiledSchema(t, schema).Validate(inst)
}

// schemaFailures flattens a validation error to "instanceLocation keyword"
// pairs, e.g. "/params/subject pattern".
func schemaFailures(err error) []string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		loc := ""
		for _, tok := range e.InstanceLocation {
			loc += "/" + tok
		}
		if kw := e.ErrorKind.KeywordPath(); len(kw) > 0 {
			out = append(out, loc+" "+kw[len(kw)-1])
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return out
}

// schemaFor names the schema of a testdata file: its name up to "--".
func schemaFor(file string) string {
	stem := strings.TrimSuffix(file, ".json")
	stem, _, _ = strings.Cut(stem, "--")
	if stem == "command" {
		return "command.json"
	}
	return stem + ".json"
}

func TestSchemasCompile(t *testing.T) {
	t.Parallel()
	names, err := fs.Glob(Schemas(), "*.json")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded schemas: %v", err)
	}
	for _, name := range names {
		s := compiledSchema(t, name)
		raw, _ := fs.ReadFile(Schemas(), name)
		var doc struct {
			Schema string `json:"$schema"`
			Title  string `json:"title"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" || doc.Title == "" {
			t.Errorf("%s: $schema = %q, title = %q; want draft 2020-12 and a title", name, doc.Schema, doc.Title)
		}
		if s == nil {
			t.Errorf("%s did not compile", name)
		}
	}
}

func TestEveryTypeHasASchema(t *testing.T) {
	t.Parallel()
	for _, ct := range CommandTypes() {
		if name := CommandSchema(ct); name == "" {
			t.Errorf("CommandSchema(%q) is empty", ct)
		} else {
			compiledSchema(t, name)
		}
	}
	for _, et := range EventTypes() {
		if name := EventSchema(et); name == "" {
			t.Errorf("EventSchema(%q) is empty", et)
		} else {
			compiledSchema(t, name)
		}
		compiledSchema(t, dataSchema(et))
	}
	if CommandSchema("make_coffee") != "" || EventSchema("coffee.made") != "" {
		t.Error("unknown types must have no schema")
	}
}

// dataSchema is the schema of an event type's data: data.<go type in
// snake_case>.json, so a new data type without a schema fails the tests.
func dataSchema(eventType string) string {
	name := reflect.TypeOf(eventSpecs[eventType]()).Elem().Name()
	return "data." + snake(name) + ".json"
}

var camelRE = regexp.MustCompile(`([a-z0-9])([A-Z])`)

func snake(s string) string { return strings.ToLower(camelRE.ReplaceAllString(s, "${1}_${2}")) }

func TestValidExamples(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/valid/*.json")
	seen := map[string]bool{}
	for _, path := range files {
		file := filepath.Base(path)
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			schema := schemaFor(file)
			if err := validateJSON(t, schema, data); err != nil {
				t.Fatalf("want valid against %s, got:\n%v", schema, err)
			}
			switch {
			case strings.HasPrefix(file, "command."):
				// Every valid command example also passes the envelope schema and DecodeCommand.
				if err := validateJSON(t, "command.json", data); err != nil {
					t.Errorf("want valid against command.json, got:\n%v", err)
				}
				var probe struct{ Type, PhoneNumberID string }
				_ = json.Unmarshal(data, &probe)
				cmd, err := DecodeCommand(Names{}.Command(cmdPhone(data), typeOf(data)), data)
				if err != nil {
					t.Fatalf("DecodeCommand: %v", err)
				}
				if CommandSchema(cmd.Type) != schema {
					t.Errorf("type %q has schema %q, the example is named for %q", cmd.Type, CommandSchema(cmd.Type), schema)
				}
			case strings.HasPrefix(file, "event."):
				e, err := Unmarshal(data)
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if EventSchema(e.Type()) != schema {
					t.Errorf("type %q has schema %q, the example is named for %q", e.Type(), EventSchema(e.Type()), schema)
				}
				if _, err := DataOf(e); err != nil {
					t.Errorf("DataOf: %v", err)
				}
			}
		})
		seen[schemaFor(file)] = true
	}
	// Every command and event type has at least one example.
	for _, ct := range CommandTypes() {
		if !seen[CommandSchema(ct)] {
			t.Errorf("no example in testdata/valid for command type %s", ct)
		}
	}
	for _, et := range EventTypes() {
		if !seen[EventSchema(et)] {
			t.Errorf("no example in testdata/valid for event type %s", et)
		}
	}
}

func cmdPhone(data []byte) string {
	var c struct {
		PhoneNumberID string `json:"phone_number_id"`
	}
	_ = json.Unmarshal(data, &c)
	return c.PhoneNumberID
}

func typeOf(data []byte) string {
	var c struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(data, &c)
	return c.Type
}

type badExample struct {
	// Decode lists the fields DecodeCommand must report, exactly.
	Decode []string `json:"decode"`
	// Schema lists failures the schema must report ({"at": instance
	// location, "keyword": failing keyword}); empty means the schema cannot
	// catch this one (Why says why); null means the body is not JSON.
	Schema []struct {
		At      string `json:"at"`
		Keyword string `json:"keyword"`
	} `json:"schema"`
	Why string `json:"why"`
}

func TestInvalidExamples(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("testdata/invalid/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]badExample
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/invalid/*.json")
	for _, path := range files {
		file := filepath.Base(path)
		if file == "expected.json" {
			continue
		}
		want, ok := expected[file]
		if !ok {
			t.Errorf("%s has no entry in expected.json", file)
			continue
		}
		delete(expected, file)
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want.Schema != nil {
				checkSchemaFailures(t, schemaFor(file), data, want)
			}
			if want.Decode != nil {
				_, err := DecodeCommand("", data)
				var ve *ValidationError
				if !errors.As(err, &ve) {
					t.Fatalf("DecodeCommand: want *ValidationError on fields %q, got %v", want.Decode, err)
				}
				var got []string
				for _, fe := range ve.Errors {
					got = append(got, fe.Field)
				}
				if !slices.Equal(sorted(got), sorted(want.Decode)) {
					t.Errorf("DecodeCommand errors on fields %q, want %q\n%v", got, want.Decode, err)
				}
			}
		})
	}
	for file := range expected {
		t.Errorf("expected.json names %s, which does not exist", file)
	}
}

func checkSchemaFailures(t *testing.T, schema string, data []byte, want badExample) {
	t.Helper()
	err := validateJSON(t, schema, data)
	if len(want.Schema) == 0 {
		if want.Why == "" {
			t.Errorf("an example the schema accepts must say why in expected.json")
		}
		if err != nil {
			t.Errorf("expected.json says %s cannot catch this (%s), but it does:\n%v", schema, want.Why, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("want %s to reject it with %v, it accepted it", schema, want.Schema)
	}
	got := schemaFailures(err)
	for _, w := range want.Schema {
		if !slices.Contains(got, w.At+" "+w.Keyword) {
			t.Errorf("want a %q failure at %q; got %q", w.Keyword, w.At, got)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// sampleParams holds a filled value of every params type, by command type;
// a command type without one fails TestParamsValuesMatchSchemas.
func sampleParams() map[string]any {
	desc := ""
	subj := "Renamed"
	return map[string]any{
		CreateGroup: CreateGroupParams{Subject: " Order 4711 ", Description: "Questions", JoinApprovalMode: JoinApprovalRequired},
		UpdateGroupSettings: UpdateGroupSettingsParams{Subject: &subj, Description: &desc,
			ProfilePicture: &Picture{URL: "https://cdn.example.com/a.jpg"}},
		ApproveJoinRequests:  JoinRequestsParams{JoinRequestIDs: []string{"MTY0NjcwNDM1OTU6MTIw", "MTY0NjcwNDM1OTY6MTIw"}},
		RejectJoinRequests:   JoinRequestsParams{AllPending: true},
		RemoveParticipants:   RemoveParticipantsParams{Participants: []string{"+16505551234", "US.1349120865"}},
		EnsureInviteTemplate: EnsureInviteTemplateParams{WABAID: "100000000000001", Name: "my_group_invite", Language: "en_US"},
		SendGroupInvite: SendGroupInviteParams{To: "16505551234", GroupID: testGroup,
			Template: TemplateRef{Name: "my_group_invite", Language: "en"}, OnAmbiguous: OnAmbiguousFail},
		StartInviteCampaign: StartInviteCampaignParams{CampaignID: "spring-2026", Template: TemplateRef{Name: "t", Language: "en"},
			Invites: []Invite{{To: "+16505551234", GroupID: testGroup}, {To: "+16505551235", GroupID: testGroup}}},
		CancelCampaign: CancelCampaignParams{CampaignID: "spring-2026"},
	}
}

const (
	testPhone = "106540352242922"
	testGroup = "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
)

func TestParamsValuesMatchSchemas(t *testing.T) {
	t.Parallel()
	samples := sampleParams()
	for _, ct := range CommandTypes() {
		t.Run(ct, func(t *testing.T) {
			t.Parallel()
			cmd := Command{ID: "cmd-" + ct, Type: ct, PhoneNumberID: testPhone}
			if GroupScoped(ct) {
				cmd.GroupID = testGroup
			}
			newParams := commandSpecs[ct].params
			sample, ok := samples[ct]
			switch {
			case newParams == nil && ok:
				t.Fatalf("%s takes no params, but sampleParams has %T", ct, sample)
			case newParams != nil && !ok:
				t.Fatalf("sampleParams lacks a %T for %s", newParams(), ct)
			case ok:
				if reflect.TypeOf(newParams()).Elem() != reflect.TypeOf(sample) {
					t.Fatalf("sample for %s is %T, want %T", ct, sample, newParams())
				}
				cmd.Params, _ = json.Marshal(sample)
			}
			if err := cmd.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			data, err := json.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			for _, schema := range []string{CommandSchema(ct), "command.json"} {
				if err := validateJSON(t, schema, data); err != nil {
					t.Errorf("marshalled %T does not match %s:\n%s\n%v", sample, schema, data, err)
				}
			}
		})
	}
}

// sampleData holds a filled value of every event data type, by event type;
// pointers and optional fields are set so the schema sees them.
func sampleData() map[string]any {
	yes := true
	errs := []GraphError{{Code: 131203, Title: "Unable to add participant to group", Message: "(#131203) …", Details: "ToS"}}
	who := ParticipantRef{Input: "+16505551234", WAID: "16505551234", UserID: "US.1349", ParentUserID: "US.1", Username: "@ana"}
	counts := CampaignCounts{Total: 3, Pending: 1, Sent: 1, Failed: 1, Joined: 1}
	created, _ := json.Marshal(CreateGroupResult{GroupID: testGroup, InviteLink: "https://chat.whatsapp.com/AbC", RequestID: "r1"})
	return map[string]any{
		EventCommandSucceeded: CommandResult{CommandID: "c1", CommandType: CreateGroup, PhoneNumberID: testPhone, GroupID: testGroup,
			Outcome: OutcomeSucceeded, Result: created, Attempts: 1},
		EventCommandPartiallySucceeded: CommandResult{CommandID: "c2", CommandType: ApproveJoinRequests, PhoneNumberID: testPhone, GroupID: testGroup,
			Outcome: OutcomePartiallySucceeded, Attempts: 2,
			Items: []ItemOutcome{{ID: "j1", Outcome: ItemApproved}, {ID: "j2", Outcome: ItemFailed, Code: 131203, Reason: "ToS"}}},
		EventCommandFailed: CommandResult{CommandID: "c3", CommandType: SendGroupInvite, PhoneNumberID: testPhone,
			Outcome: OutcomeFailed, Attempts: 10, Error: &FailureInfo{Reason: ReasonRetriesExhausted, Code: 131000, Subcode: 2, Type: "OAuthException", Message: "try later"}},
		EventCommandRejected: CommandResult{CommandID: "c4", CommandType: "make_coffee", PhoneNumberID: testPhone,
			Outcome: OutcomeRejected, Attempts: 1, ValidationErrors: []FieldError{{Field: "type", Message: "unknown"}}},
		EventGroupCreated: GroupCreated{GroupID: testGroup, RequestID: "r1", CommandID: "c1", Subject: "S", Description: "D",
			InviteLink: "https://chat.whatsapp.com/AbC", JoinApprovalMode: JoinAutoApprove},
		EventGroupCreateFailed: GroupCreateFailed{RequestID: "r1", CommandID: "c1", GroupID: testGroup, Subject: "S", Description: "D", Errors: errs},
		EventGroupDeleted:      GroupDeleted{GroupID: testGroup, RequestID: "r2", CommandID: "c5"},
		EventGroupSettingsUpdated: GroupSettingsUpdated{GroupID: testGroup, RequestID: "r3", CommandID: "c6",
			Subject: &SettingUpdate{Text: "S", Updated: true}, Description: &SettingUpdate{Text: "D", Updated: false, Errors: errs},
			ProfilePicture: &PictureUpdate{MimeType: "image/jpeg", SHA256: "ab", Updated: true}, Errors: errs},
		EventGroupParticipantsJoined:  ParticipantsJoined{GroupID: testGroup, Reason: "invite_link", CommandID: "c7", Participants: []ParticipantRef{who}},
		EventGroupParticipantsRemoved: ParticipantsRemoved{GroupID: testGroup, RequestID: "r4", CommandID: "c8", InitiatedBy: InitiatedByBusiness, Removed: []ParticipantRef{who}, Failed: []ParticipantFailure{{Participant: who, Errors: errs}}, Errors: errs},
		EventGroupParticipantLeft:     ParticipantLeft{GroupID: testGroup, Participant: who},
		EventGroupJoinRequestCreated:  JoinRequestCreated{GroupID: testGroup, JoinRequestID: "j1", Reason: "invite_link", Participant: who},
		EventGroupJoinRequestRevoked:  JoinRequestRevoked{GroupID: testGroup, JoinRequestID: "j1", Reason: "invite_link", Participant: who},
		EventGroupSuspended:           GroupSuspended{GroupID: testGroup},
		EventGroupSuspensionCleared:   GroupSuspensionCleared{GroupID: testGroup},
		EventMessageStatus: MessageStatus{MessageID: "wamid.1", Status: StatusDelivered, RecipientID: testGroup, RecipientUserID: "US.1349", RecipientParentUserID: "US.1", RecipientType: "group",
			GroupID: testGroup, ParticipantID: "16505551234", ParticipantUserID: "US.1349", ParticipantParentUserID: "US.1",
			Conversation:          &Conversation{ID: "72b14d6bd5407799e66f64d1b338e567", OriginType: "group_marketing", ExpirationTime: ptrTime(time.Date(2026, 11, 25, 17, 2, 3, 0, time.UTC))},
			Pricing:               &Pricing{Billable: &yes, PricingModel: "PMP", Type: "regular", Category: "group_marketing"},
			BizOpaqueCallbackData: "order-4711", Errors: errs, CommandID: "c9", CampaignID: "spring"},
		EventCampaignStarted: CampaignStarted{CampaignID: "spring", CommandID: "c10", Template: TemplateRef{Name: "t", Language: "en"}, Total: 3},
		EventCampaignProgress: CampaignProgress{CampaignID: "spring", Counts: CampaignCounts{Total: 3, Pending: 1, Queued: 1, Sent: 1, Failed: 1,
			FailedByCode: map[string]int{"131026": 1}, Delivered: 1, Read: 1,
			Undelivered: 1, UndeliveredByCode: map[string]int{"131026": 1}}, State: CampaignStatePaused,
			PausedUntil: ptrTime(time.Date(2026, 11, 24, 18, 0, 0, 0, time.UTC)), Reason: "Meta's spam rate limit (131048)"},
		EventCampaignCompleted: CampaignCompleted{CampaignID: "spring", CommandID: "c10", State: CampaignStateCancelled, Counts: counts},
		EventCampaignInviteeJoined: CampaignInviteeJoined{CampaignID: "spring", GroupID: testGroup, To: "+16505551234",
			Participant: who, MessageID: "wamid.1"},
	}
}

func TestEventValuesMatchSchemas(t *testing.T) {
	t.Parallel()
	samples := sampleData()
	for _, et := range EventTypes() {
		t.Run(et, func(t *testing.T) {
			t.Parallel()
			sample, ok := samples[et]
			if !ok {
				t.Fatalf("sampleData lacks a value for %s", et)
			}
			data, _ := json.Marshal(sample)
			if err := validateJSON(t, dataSchema(et), data); err != nil {
				t.Errorf("marshalled %T does not match %s:\n%s\n%v", sample, dataSchema(et), data, err)
			}
			id := EventID(et, "sample")
			if r, ok := sample.(CommandResult); ok {
				id = TerminalEventID(r.CommandID, r.Replay)
			}
			e, err := NewEvent(et, id, SourceWorker, testPhone, sample, WithTime(time.Date(2026, 11, 24, 17, 2, 3, 0, time.UTC)))
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			b, err := Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			if err := validateJSON(t, EventSchema(et), b); err != nil {
				t.Errorf("event does not match %s:\n%s\n%v", EventSchema(et), b, err)
			}
		})
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

// TestMessageStatusNamesItsRecipient: a 1:1 status names its recipient by
// wa_id, by business-scoped user id or by both, and its data matches the
// schema in each case; a status Meta adds later is passed on as it comes,
// and one in which Meta named no recipient is published without one.
func TestMessageStatusNamesItsRecipient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		data  MessageStatus
		valid bool
	}{
		{"By wa_id", MessageStatus{MessageID: "wamid.1", Status: StatusRead, RecipientID: "16505551234"}, true},
		{"By user id only", MessageStatus{MessageID: "wamid.1", Status: StatusRead, RecipientUserID: "US.1349", RecipientParentUserID: "US.ENT.1"}, true},
		{"By both", MessageStatus{MessageID: "wamid.1", Status: StatusFailed, RecipientID: "16505551234", RecipientUserID: "US.1349"}, true},
		{"A status Meta adds later", MessageStatus{MessageID: "wamid.1", Status: "deleted", RecipientID: "16505551234"}, true},
		{"By parent user id only", MessageStatus{MessageID: "wamid.1", Status: StatusRead, RecipientParentUserID: "US.ENT.1"}, true},
		{"By nothing, as Meta may send it", MessageStatus{MessageID: "wamid.1", Status: StatusFailed}, true},
		{"Without its status", MessageStatus{MessageID: "wamid.1", RecipientID: "16505551234"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, _ := json.Marshal(tc.data)
			err := validateJSON(t, dataSchema(EventMessageStatus), data)
			if tc.valid && err != nil {
				t.Errorf("want %s valid, got:\n%v", data, err)
			}
			if !tc.valid && err == nil {
				t.Errorf("want %s refused, it was accepted", data)
			}
		})
	}
}
