package events

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Event types (DESIGN §4): the CloudEvents "type" attribute and the last
// tokens of the subject groups.event.<phone_number_id>.<event type>.
const (
	EventCommandSucceeded          = "command.succeeded"
	EventCommandPartiallySucceeded = "command.partially_succeeded"
	EventCommandFailed             = "command.failed"
	EventCommandRejected           = "command.rejected"

	EventGroupCreated             = "group.created"
	EventGroupCreateFailed        = "group.create_failed"
	EventGroupDeleted             = "group.deleted"
	EventGroupSettingsUpdated     = "group.settings_updated"
	EventGroupParticipantsJoined  = "group.participants_joined"
	EventGroupParticipantsRemoved = "group.participants_removed"
	EventGroupParticipantLeft     = "group.participant_left"
	EventGroupJoinRequestCreated  = "group.join_request_created"
	EventGroupJoinRequestRevoked  = "group.join_request_revoked"
	EventGroupSuspended           = "group.suspended"
	EventGroupSuspensionCleared   = "group.suspension_cleared"
	EventMessageStatus            = "message.status"

	EventCampaignStarted       = "campaign.started"
	EventCampaignProgress      = "campaign.progress"
	EventCampaignCompleted     = "campaign.completed"
	EventCampaignInviteeJoined = "campaign.invitee_joined"
)

// Sources of events (the CloudEvents "source" attribute).
const (
	SourceWorker = "groupflow/worker"
	SourceIngest = "groupflow/ingest"
)

// CloudEvents extension attributes set by NewEvent, so consumers can route
// and filter without decoding data.
const (
	ExtPhoneNumberID = "phonenumberid"
	ExtCommandID     = "commandid"
	ExtGroupID       = "groupid"
	ExtCampaignID    = "campaignid"
)

// ContentType is the datacontenttype of every event.
const ContentType = "application/json"

// eventAttrs are the attributes an event takes from its data.
type eventAttrs struct {
	subject, commandID, groupID, campaignID string
}

type eventData interface{ attrs() eventAttrs }

// eventSpecs maps each event type to its data type. Adding a type here is
// what NewEvent accepts, and the tests then demand its schema, its example
// and its place in docs/asyncapi.yaml.
var eventSpecs = map[string]func() eventData{
	EventCommandSucceeded:          func() eventData { return new(CommandResult) },
	EventCommandPartiallySucceeded: func() eventData { return new(CommandResult) },
	EventCommandFailed:             func() eventData { return new(CommandResult) },
	EventCommandRejected:           func() eventData { return new(CommandResult) },
	EventGroupCreated:              func() eventData { return new(GroupCreated) },
	EventGroupCreateFailed:         func() eventData { return new(GroupCreateFailed) },
	EventGroupDeleted:              func() eventData { return new(GroupDeleted) },
	EventGroupSettingsUpdated:      func() eventData { return new(GroupSettingsUpdated) },
	EventGroupParticipantsJoined:   func() eventData { return new(ParticipantsJoined) },
	EventGroupParticipantsRemoved:  func() eventData { return new(ParticipantsRemoved) },
	EventGroupParticipantLeft:      func() eventData { return new(ParticipantLeft) },
	EventGroupJoinRequestCreated:   func() eventData { return new(JoinRequestCreated) },
	EventGroupJoinRequestRevoked:   func() eventData { return new(JoinRequestRevoked) },
	EventGroupSuspended:            func() eventData { return new(GroupSuspended) },
	EventGroupSuspensionCleared:    func() eventData { return new(GroupSuspensionCleared) },
	EventMessageStatus:             func() eventData { return new(MessageStatus) },
	EventCampaignStarted:           func() eventData { return new(CampaignStarted) },
	EventCampaignProgress:          func() eventData { return new(CampaignProgress) },
	EventCampaignCompleted:         func() eventData { return new(CampaignCompleted) },
	EventCampaignInviteeJoined:     func() eventData { return new(CampaignInviteeJoined) },
}

var eventTypes = []string{
	EventCommandSucceeded, EventCommandPartiallySucceeded, EventCommandFailed, EventCommandRejected,
	EventGroupCreated, EventGroupCreateFailed, EventGroupDeleted, EventGroupSettingsUpdated,
	EventGroupParticipantsJoined, EventGroupParticipantsRemoved, EventGroupParticipantLeft,
	EventGroupJoinRequestCreated, EventGroupJoinRequestRevoked,
	EventGroupSuspended, EventGroupSuspensionCleared, EventMessageStatus,
	EventCampaignStarted, EventCampaignProgress, EventCampaignCompleted, EventCampaignInviteeJoined,
}

// EventTypes returns every event type, in the order of DESIGN §4.
func EventTypes() []string { return slices.Clone(eventTypes) }

// IsEventType reports whether t is a known event type.
func IsEventType(t string) bool {
	_, ok := eventSpecs[t]
	return ok
}

// IsTerminal reports whether t is one of the four terminal command events.
func IsTerminal(t string) bool { return strings.HasPrefix(t, "command.") && IsEventType(t) }

// TerminalEventID is the CloudEvent id (and Nats-Msg-Id) of a command's one
// terminal event per execution. It depends only on the command id and the
// replay, so a worker that re-publishes a stored result after a crash
// publishes the same event. replay is empty for the first execution
// ("<command_id>:terminal"); a command replayed from the dead-letter queue
// (ReplayHeader) executes once more and its terminal event is
// "<command_id>:terminal:replay-<replay>", which the stream's duplicate
// window and consumers keyed on the id do not mistake for the first.
func TerminalEventID(commandID, replay string) string {
	if replay == "" {
		return commandID + ":terminal"
	}
	return commandID + ":terminal:replay-" + replay
}

// CopyMsgID is the Nats-Msg-Id of a copy of a command that groupflow
// itself publishes to the command stream: kind says why ("park",
// "requeue", "again", "resent") and parts make the copy its own (a stream
// sequence, a run). It is "<command_id>/<kind>/<part>…": '/' is not in the
// command id alphabet, so no command sent with its id as message id (as
// the ingest sends every one) can take a copy's id ahead of it and have
// the stream drop the copy as its duplicate (with ':' a command
// "<id>:again::0" did, and command <id> never ran again).
func CopyMsgID(commandID, kind string, parts ...string) string {
	return commandID + "/" + kind + "/" + strings.Join(parts, "/")
}

// ReplayHeader marks a command re-published from the dead-letter queue
// (`groupctl dlq replay`); its value names the replay (the dead letter's
// sequence in GROUPS_DLQ). The worker records it with the execution and the
// terminal event carries it (CommandResult.Replay).
const ReplayHeader = "Groupflow-Replay"

// EventID derives a deterministic event id from what identifies the fact the
// event reports, e.g. EventID("group_participants_update", groupID, "group_participants_add",
// timestamp, waID) for a webhook item, or EventID(campaignID, "completed").
// The same parts always give the same id, so duplicates are dropped by the
// stream's duplicate window and by consumers keyed on the id.
func EventID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		// Length-prefixed: ("ab","c") ≠ ("a","bc"). A hash.Hash never returns a write error.
		_, _ = fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// EventOption adjusts one event built by NewEvent.
type EventOption func(*event.Event)

// WithTime sets the event's time: for domain events, when Meta says the
// change happened (the webhook timestamp). Defaults to now.
func WithTime(t time.Time) EventOption {
	return func(e *event.Event) { e.SetTime(t.UTC()) }
}

// NewEvent builds a CloudEvents 1.0 event of eventType. data must be the Go
// type of that event type (CommandResult for command.*, GroupCreated for
// group.created, …), as a value or a pointer. The subject attribute and the
// commandid, groupid and campaignid extensions are taken from data;
// phonenumberid is phone.
func NewEvent(eventType, id, source, phone string, data any, opts ...EventOption) (event.Event, error) {
	newData, ok := eventSpecs[eventType]
	if !ok {
		return event.Event{}, fmt.Errorf("new event: unknown event type %q", eventType)
	}
	d, ok := asEventData(data)
	if want := reflect.TypeOf(newData()).Elem(); !ok || reflect.TypeOf(d).Elem() != want {
		return event.Event{}, fmt.Errorf("new event: %s needs data of type events.%s, got %T", eventType, want.Name(), data)
	}
	switch {
	case id == "":
		return event.Event{}, errors.New("new event: id is required")
	case source == "":
		return event.Event{}, errors.New("new event: source is required")
	case !ValidToken(phone):
		return event.Event{}, fmt.Errorf("new event: phone number id %q cannot stand in a subject", phone)
	}
	a := d.attrs()
	e := event.New()
	e.SetID(id)
	e.SetSource(source)
	e.SetType(eventType)
	e.SetTime(time.Now().UTC())
	if a.subject != "" {
		e.SetSubject(a.subject)
	}
	e.SetExtension(ExtPhoneNumberID, phone)
	for name, v := range map[string]string{ExtCommandID: a.commandID, ExtGroupID: a.groupID, ExtCampaignID: a.campaignID} {
		if v != "" {
			e.SetExtension(name, v)
		}
	}
	if err := e.SetData(ContentType, d); err != nil {
		return event.Event{}, fmt.Errorf("new event: encode %s data: %w", eventType, err)
	}
	for _, opt := range opts {
		opt(&e)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("new event: %w", err)
	}
	return e, nil
}

func asEventData(data any) (eventData, bool) {
	if data == nil {
		return nil, false
	}
	v := reflect.ValueOf(data)
	if v.Kind() != reflect.Pointer {
		p := reflect.New(v.Type())
		p.Elem().Set(v)
		v = p
	} else if v.IsNil() {
		return nil, false
	}
	d, ok := v.Interface().(eventData)
	return d, ok
}

// NewTerminalEvent builds the one terminal event of a command: its type
// follows r.Outcome, its id is TerminalEventID(r.CommandID, r.Replay).
func NewTerminalEvent(source string, r CommandResult, opts ...EventOption) (event.Event, error) {
	if !IsTerminal(r.EventType()) {
		return event.Event{}, fmt.Errorf("new terminal event: unknown outcome %q", r.Outcome)
	}
	if r.CommandID == "" {
		return event.Event{}, errors.New("new terminal event: command id is required")
	}
	return NewEvent(r.EventType(), TerminalEventID(r.CommandID, r.Replay), source, r.PhoneNumberID, r, opts...)
}

// Marshal encodes e in the CloudEvents JSON format after checking it is a
// valid CloudEvent.
func Marshal(e event.Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("marshal event: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a CloudEvents JSON event and checks it is valid
// CloudEvents 1.0. It accepts event types it does not know, so consumers
// keep working when new events are added.
func Unmarshal(data []byte) (event.Event, error) {
	var e event.Event
	if err := e.UnmarshalJSON(data); err != nil {
		return event.Event{}, fmt.Errorf("unmarshal event: %w", err)
	}
	if e.SpecVersion() != event.CloudEventsVersionV1 {
		return event.Event{}, fmt.Errorf("unmarshal event: spec version %q, want %s", e.SpecVersion(), event.CloudEventsVersionV1)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("unmarshal event: %w", err)
	}
	return e, nil
}

// DataOf decodes e's data into the Go type of its event type and returns a
// pointer to it (*CommandResult for command.*, *GroupCreated, …). Unknown
// fields are ignored, so older consumers read newer events.
func DataOf(e event.Event) (any, error) {
	newData, ok := eventSpecs[e.Type()]
	if !ok {
		return nil, fmt.Errorf("event data: unknown event type %q", e.Type())
	}
	d := newData()
	if err := e.DataAs(d); err != nil {
		return nil, fmt.Errorf("event data: decode %s: %w", e.Type(), err)
	}
	return d, nil
}

func (r *CommandResult) attrs() eventAttrs {
	return eventAttrs{subject: r.CommandID, commandID: r.CommandID, groupID: r.GroupID}
}
func (d *GroupCreated) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, commandID: d.CommandID, groupID: d.GroupID}
}
func (d *GroupCreateFailed) attrs() eventAttrs {
	return eventAttrs{subject: cmp.Or(d.GroupID, d.CommandID, d.RequestID), commandID: d.CommandID, groupID: d.GroupID}
}
func (d *GroupDeleted) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, commandID: d.CommandID, groupID: d.GroupID}
}
func (d *GroupSettingsUpdated) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, commandID: d.CommandID, groupID: d.GroupID}
}
func (d *ParticipantsJoined) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, commandID: d.CommandID, groupID: d.GroupID}
}
func (d *ParticipantsRemoved) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, commandID: d.CommandID, groupID: d.GroupID}
}
func (d *ParticipantLeft) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, groupID: d.GroupID}
}
func (d *JoinRequestCreated) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, groupID: d.GroupID}
}
func (d *JoinRequestRevoked) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, groupID: d.GroupID}
}
func (d *GroupSuspended) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, groupID: d.GroupID}
}
func (d *GroupSuspensionCleared) attrs() eventAttrs {
	return eventAttrs{subject: d.GroupID, groupID: d.GroupID}
}
func (d *MessageStatus) attrs() eventAttrs {
	return eventAttrs{subject: d.MessageID, commandID: d.CommandID, groupID: d.GroupID, campaignID: d.CampaignID}
}
func (d *CampaignStarted) attrs() eventAttrs {
	return eventAttrs{subject: d.CampaignID, commandID: d.CommandID, campaignID: d.CampaignID}
}
func (d *CampaignProgress) attrs() eventAttrs {
	return eventAttrs{subject: d.CampaignID, campaignID: d.CampaignID}
}
func (d *CampaignCompleted) attrs() eventAttrs {
	return eventAttrs{subject: d.CampaignID, commandID: d.CommandID, campaignID: d.CampaignID}
}
func (d *CampaignInviteeJoined) attrs() eventAttrs {
	return eventAttrs{subject: d.CampaignID, groupID: d.GroupID, campaignID: d.CampaignID}
}
