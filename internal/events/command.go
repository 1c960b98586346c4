package events

import (
	"cmp"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Command types (DESIGN §3). They are also the last token of a command's
// subject, groups.cmd.<phone_number_id>.<type>.
const (
	CreateGroup          = "create_group"
	DeleteGroup          = "delete_group"
	UpdateGroupSettings  = "update_group_settings"
	GetInviteLink        = "get_invite_link"
	ResetInviteLink      = "reset_invite_link"
	ApproveJoinRequests  = "approve_join_requests"
	RejectJoinRequests   = "reject_join_requests"
	RemoveParticipants   = "remove_participants"
	EnsureInviteTemplate = "ensure_invite_template"
	SendGroupInvite      = "send_group_invite"
	StartInviteCampaign  = "start_invite_campaign"
	CancelCampaign       = "cancel_campaign"
)

// MaxCommandSize is the largest command body accepted, in bytes. It is the
// NATS server's default max_payload, so a command that validates can always
// be published; a profile picture larger than fits inline goes by URL.
const MaxCommandSize = 1 << 20

// groupScope says what a command type does with the top-level group_id.
type groupScope int

const (
	groupForbidden groupScope = iota // the command is not about one existing group
	groupRequired                    // the command acts on group_id
	groupOptional                    // the group is in params; group_id may repeat it
)

type commandSpec struct {
	group groupScope
	// params returns a pointer to a new params value, or nil when the type
	// takes no params.
	params func() paramsValidator
}

// commandSpecs is the one table of command types: adding a type here is what
// makes DecodeCommand accept it, and the tests then demand its schema, its
// examples and its place in docs/asyncapi.yaml.
var commandSpecs = map[string]commandSpec{
	CreateGroup:          {groupForbidden, func() paramsValidator { return new(CreateGroupParams) }},
	DeleteGroup:          {groupRequired, nil},
	UpdateGroupSettings:  {groupRequired, func() paramsValidator { return new(UpdateGroupSettingsParams) }},
	GetInviteLink:        {groupRequired, nil},
	ResetInviteLink:      {groupRequired, nil},
	ApproveJoinRequests:  {groupRequired, func() paramsValidator { return new(JoinRequestsParams) }},
	RejectJoinRequests:   {groupRequired, func() paramsValidator { return new(JoinRequestsParams) }},
	RemoveParticipants:   {groupRequired, func() paramsValidator { return new(RemoveParticipantsParams) }},
	EnsureInviteTemplate: {groupForbidden, func() paramsValidator { return new(EnsureInviteTemplateParams) }},
	SendGroupInvite:      {groupOptional, func() paramsValidator { return new(SendGroupInviteParams) }},
	StartInviteCampaign:  {groupForbidden, func() paramsValidator { return new(StartInviteCampaignParams) }},
	CancelCampaign:       {groupForbidden, func() paramsValidator { return new(CancelCampaignParams) }},
}

var commandTypes = []string{
	CreateGroup, DeleteGroup, UpdateGroupSettings, GetInviteLink, ResetInviteLink,
	ApproveJoinRequests, RejectJoinRequests, RemoveParticipants,
	EnsureInviteTemplate, SendGroupInvite, StartInviteCampaign, CancelCampaign,
}

// CommandTypes returns every command type, in the order of DESIGN §3.
func CommandTypes() []string { return slices.Clone(commandTypes) }

// IsCommandType reports whether t is a known command type.
func IsCommandType(t string) bool {
	_, ok := commandSpecs[t]
	return ok
}

// GroupScoped reports whether commands of type t must name the group they act
// on in the top-level group_id (delete_group, update_group_settings, the
// invite link, join request and participant commands).
func GroupScoped(t string) bool { return commandSpecs[t].group == groupRequired }

// Command is one unit of work, as published to groups.cmd.<phone>.<type> or
// POSTed to the ingest. Marshalled with encoding/json it is the wire form.
type Command struct {
	// ID is the caller's idempotency key: 1–128 of A-Za-z0-9_-.: . The same
	// id is executed at most once while the ledger remembers it.
	ID string `json:"id"`
	// Type is one of the command type constants.
	Type string `json:"type"`
	// PhoneNumberID is the business phone number (numeric Graph id) that
	// does the work.
	PhoneNumberID string `json:"phone_number_id"`
	// GroupID is the group the command acts on; see GroupScoped.
	GroupID string `json:"group_id,omitempty"`
	// Params are the type's parameters (CreateGroupParams, …), kept raw so
	// the command can be stored and re-published byte for byte.
	Params json.RawMessage `json:"params,omitempty"`
	// Deadline, if set, is the time after which nothing is sent. A command
	// not started by then fails with reason "expired"; one that sent part
	// of its work reports the items left as failed, reason "expired",
	// beside those done; one whose earlier call may have taken effect
	// unseen fails with reason "outcome_unknown".
	Deadline *time.Time `json:"deadline,omitempty"`
}

// rfc3339RE is the strict RFC 3339 form; time.Parse alone also takes
// one-digit hours and more than nanosecond precision.
var rfc3339RE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`)

// commandWire is the body as read: deadline stays a string so a bad one is
// reported as a field error rather than a JSON error.
type commandWire struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	PhoneNumberID string          `json:"phone_number_id"`
	GroupID       string          `json:"group_id,omitempty"`
	Params        json.RawMessage `json:"params,omitempty"`
	Deadline      string          `json:"deadline,omitempty"`
}

// DecodeCommand reads and validates a command body. subject is the NATS
// subject it arrived on, or "" when it came over HTTP; when given, its phone
// number id and type must agree with the body's.
//
// Decoding is strict: unknown fields (at the top level and inside params),
// null values, duplicate keys and invalid UTF-8 are errors. Any error is a
// *ValidationError listing every problem found; the Command returned with it
// holds whatever could be read, for the rejection event.
func DecodeCommand(subject string, data []byte) (Command, error) {
	var errs errorList
	if len(data) > MaxCommandSize {
		errs.add("", "body is %d bytes, more than the %d allowed", len(data), MaxCommandSize)
		return Command{}, errs.err()
	}
	if err := checkSyntax(data); err != nil {
		errs.add("", "%v", err)
		return Command{}, errs.err()
	}
	if k := jsonKind(data); k != "an object" {
		errs.add("", "body must be a JSON object, not %s", k)
		return Command{}, errs.err()
	}
	var w commandWire
	decodeStrict("", data, &w, &errs)
	shapeErrs := len(errs)

	cmd := Command{ID: w.ID, Type: w.Type, PhoneNumberID: w.PhoneNumberID, GroupID: w.GroupID}
	if len(w.Params) > 0 && jsonKind(w.Params) == "an object" {
		cmd.Params = compact(w.Params)
	} else if len(w.Params) > 0 && !hasError(errs, "params") {
		errs.add("params", "must be an object, not %s", jsonKind(w.Params))
		shapeErrs++
	}

	// Rules on values are only checked where the value could be read, so a
	// field gets one error, not "must be a string" and then "is required".
	shape := fieldsOf(errs[:shapeErrs])
	for _, fe := range cmd.validate() {
		if !shape.covers(fe.Field) {
			errs = append(errs, fe)
		}
	}
	if w.Deadline != "" {
		if t, err := time.Parse(time.RFC3339Nano, w.Deadline); err != nil || !rfc3339RE.MatchString(w.Deadline) {
			errs.add("deadline", "must be an RFC 3339 date-time such as 2026-11-24T18:00:00Z")
		} else {
			cmd.Deadline = &t
		}
	}
	if subject != "" {
		checkSubject(subject, cmd, &errs)
	}
	sortErrors(errs)
	return cmd, errs.err()
}

// Validate checks every rule of the contract on c, including its params.
// It does not check subject agreement; DecodeCommand does.
func (c Command) Validate() error { return c.validate().err() }

func (c Command) validate() errorList {
	var errs errorList
	checkCommandID("id", c.ID, &errs)
	spec, known := commandSpecs[c.Type]
	switch {
	case c.Type == "":
		errs.add("type", "is required")
	case !known:
		errs.add("type", "unknown command type %q; known types are %s", c.Type, strings.Join(commandTypes, ", "))
	}
	checkNumericID("phone_number_id", c.PhoneNumberID, &errs)
	if known {
		switch spec.group {
		case groupRequired:
			if c.GroupID == "" {
				errs.add("group_id", "is required for %s", c.Type)
			}
		case groupForbidden:
			if c.GroupID != "" {
				errs.add("group_id", "must be left out for %s", c.Type)
			}
		}
	}
	if c.GroupID != "" {
		checkOpaqueID("group_id", c.GroupID, &errs)
	}
	if !known {
		return errs
	}
	if spec.params == nil {
		if len(c.Params) > 0 {
			var none struct{}
			decodeStrict("params", c.Params, &none, &errs)
		}
		return errs
	}
	if len(c.Params) == 0 {
		errs.add("params", "is required for %s", c.Type)
		return errs
	}
	p := spec.params()
	shape := len(errs)
	if decodeStrict("params", c.Params, p, &errs) {
		// As in DecodeCommand: one error per field, the shape's first;
		// and a rule's error on a list covers its items'.
		var rules errorList
		p.validate("params", &rules)
		seen := fieldsOf(errs[shape:])
		for _, fe := range rules {
			if !seen.covers(fe.Field) {
				errs = append(errs, fe)
				seen[fe.Field] = true
			}
		}
	}
	if sgi, ok := p.(*SendGroupInviteParams); ok && c.GroupID != "" && sgi.GroupID != "" && sgi.GroupID != c.GroupID {
		errs.add("group_id", "must equal params.group_id when both are given")
	}
	return errs
}

// DecodeParams decodes c.Params into v (a pointer to the params type of
// c.Type) strictly: unknown fields are errors. A command without params
// leaves v untouched. It does not run the params' rules; Validate does.
func (c Command) DecodeParams(v any) error {
	if len(c.Params) == 0 {
		return nil
	}
	var errs errorList
	decodeStrict("params", c.Params, v, &errs)
	return errs.err()
}

// ParseCommandSubject splits a command subject, <prefix>.cmd.<phone>.<type>,
// for the prefix of names. ok is false when subject is not a command subject
// of names; the type is returned whether or not it is known.
func ParseCommandSubject(names Names, subject string) (phone, cmdType string, ok bool) {
	prefix, phone, cmdType, ok := splitCommandSubject(subject)
	if !ok || prefix != cmp.Or(names.Prefix, DefaultPrefix) {
		return "", "", false
	}
	return phone, cmdType, true
}

func splitCommandSubject(subject string) (prefix, phone, cmdType string, ok bool) {
	tokens := strings.Split(subject, ".")
	if len(tokens) != 4 || tokens[1] != "cmd" {
		return "", "", "", false
	}
	for _, t := range tokens {
		if !ValidToken(t) {
			return "", "", "", false
		}
	}
	return tokens[0], tokens[2], tokens[3], true
}

// checkSubject demands that the subject a command arrived on agrees with its
// body, so a consumer filtering by subject never sees another type or number.
func checkSubject(subject string, c Command, errs *errorList) {
	_, phone, cmdType, ok := splitCommandSubject(subject)
	if !ok {
		errs.add("subject", "%q is not a command subject <prefix>.cmd.<phone_number_id>.<type>", subject)
		return
	}
	var diffs []string
	if phone != c.PhoneNumberID {
		diffs = append(diffs, fmt.Sprintf("phone number id %q in the subject does not match phone_number_id %q", phone, c.PhoneNumberID))
	}
	if cmdType != c.Type {
		diffs = append(diffs, fmt.Sprintf("command type %q in the subject does not match type %q", cmdType, c.Type))
	}
	if len(diffs) > 0 {
		errs.add("subject", "%s", strings.Join(diffs, "; "))
	}
}

// sortErrors orders errors as a reader meets the fields: the body, the
// envelope in its documented order (params with their own errors in
// order), unknown fields, then the subject.
func sortErrors(errs errorList) {
	order := []string{"", "id", "type", "phone_number_id", "group_id", "params", "deadline"}
	rank := func(fe FieldError) int {
		top, _, _ := strings.Cut(fe.Field, ".")
		top, _, _ = strings.Cut(top, "[")
		switch i := slices.Index(order, top); {
		case fe.Field == "subject":
			return len(order) + 1
		case i < 0:
			return len(order)
		default:
			return i
		}
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int { return rank(a) - rank(b) })
}

func hasError(errs errorList, field string) bool {
	for _, e := range errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

// fieldSet is the fields that have an error.
type fieldSet map[string]bool

func fieldsOf(errs errorList) fieldSet {
	s := make(fieldSet, len(errs))
	for _, e := range errs {
		s[e.Field] = true
	}
	return s
}

// covers reports whether field, or a parent of it, already has an error.
// It looks up each parent path rather than comparing with every error:
// a hostile list of a few hundred thousand wrong items took hours the
// other way.
func (s fieldSet) covers(field string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(field); i++ {
		if (field[i] == '.' || field[i] == '[') && s[field[:i]] {
			return true
		}
	}
	return s[field]
}
