package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// ErrMalformed means the body is not JSON, or is JSON but not a
// whatsapp_business_account webhook envelope. Meta never sends such a body;
// answering 400 tells whoever did.
var ErrMalformed = errors.New("webhook: malformed payload")

// Item is one fact from a webhook delivery: one group event, one message
// status or one inbound message (or, for anything else, one whole change),
// with the context needed to route and deduplicate it on its own.
// JetStreamPublisher publishes it as JSON.
type Item struct {
	// MsgID is a stable id derived from the item's content (see Parse): the
	// same fact redelivered by Meta gets the same MsgID. Published as
	// Nats-Msg-Id.
	MsgID string `json:"msg_id"`
	// WABAID is entry.id, the WhatsApp Business Account.
	WABAID string `json:"waba_id"`
	// PhoneNumberID is value.metadata.phone_number_id. Empty for
	// account-level changes that carry no metadata.
	PhoneNumberID      string `json:"phone_number_id"`
	DisplayPhoneNumber string `json:"display_phone_number,omitempty"`
	// Field is the change's field with spelling drift normalised
	// (group_participant_update → group_participants_update). Never empty
	// ("unknown" when Meta sent none) and always a valid subject token.
	Field string `json:"field"`
	// Kind is KindGroup, KindStatus, KindMessage or KindChange.
	Kind string `json:"kind"`
	// Type is the group event type (normalised), the status value, or the
	// message type. Empty for KindChange.
	Type string `json:"type,omitempty"`
	// GroupID is the group the item is about, when it is about one.
	GroupID string `json:"group_id,omitempty"`
	// Data is the normalised item: JSON in the shape of Payload. Decode
	// reads it.
	Data json.RawMessage `json:"data"`
}

// Keys of a change value that give context to its items rather than being
// items themselves.
const (
	keyGroups   = "groups"
	keyStatuses = "statuses"
	keyMessages = "messages"
	keyContacts = "contacts"
)

// Parse decodes a webhook body and splits it into items: one per
// value.groups[], value.statuses[] and value.messages[] entry, and one
// KindChange item for whatever else a change value holds, so nothing is
// dropped. It normalises Meta's documented drift: the field
// group_participant_update, the types group_add_participants and
// group_remove_participants, participant_recipient_id, timestamps and error
// codes sent as strings, pricing nested in conversation, and initiated_by
// placed beside rather than inside the group object.
//
// MsgID is a truncated SHA-256 over what identifies the fact, so a
// redelivery (even re-serialised) gets the same id:
//   - group events: field, group_id, type, request_id, join_request_id,
//     timestamp, the participants added/removed/failed, the join requester
//     and the settings touched;
//   - statuses: wamid, status and recipient (group and participant). The
//     timestamp is left out: a participant reaches a status once per
//     message, and Meta's duplicate status webhooks do not always agree on
//     the second;
//   - inbound messages: the wamid;
//   - anything else, or items lacking their identifying fields: the
//     canonical content.
//
// Parse fails only with ErrMalformed, for a body that is not JSON or not a
// whatsapp_business_account envelope with a non-empty entry list.
func Parse(body []byte) ([]Item, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	// Numbers stay text: ids and timestamps must not pass through float64.
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: not JSON: data after the top-level value", ErrMalformed)
	}
	env, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: not a webhook envelope: the top level is not an object", ErrMalformed)
	}
	if obj, _ := env["object"].(string); obj != "whatsapp_business_account" {
		return nil, fmt.Errorf("%w: not a webhook envelope: object is %q, want \"whatsapp_business_account\"", ErrMalformed, truncate(str(env["object"])))
	}
	entries, ok := env["entry"].([]any)
	if !ok || len(entries) == 0 {
		return nil, fmt.Errorf("%w: not a webhook envelope: no entry", ErrMalformed)
	}
	var p parser
	for i, e := range entries {
		entry, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: entry[%d] is not an object", ErrMalformed, i)
		}
		changes, ok := entry["changes"].([]any)
		if !ok {
			return nil, fmt.Errorf("%w: entry[%d] has no changes list", ErrMalformed, i)
		}
		for j, c := range changes {
			change, ok := c.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: entry[%d].changes[%d] is not an object", ErrMalformed, i, j)
			}
			p.change(str(entry["id"]), change)
		}
	}
	return p.items, nil
}

type parser struct {
	items []Item
}

// base is the context shared by the items of one change.
type base struct {
	wabaID string
	field  string
	md     Metadata
}

func (p *parser) change(wabaID string, change map[string]any) {
	b := base{wabaID: wabaID, field: normaliseField(str(change["field"]))}
	value, ok := change["value"].(map[string]any)
	if !ok {
		p.emitChange(b, change["value"])
		return
	}
	if md, ok := value["metadata"].(map[string]any); ok {
		b.md = Metadata{DisplayPhoneNumber: str(md["display_phone_number"]), PhoneNumberID: str(md["phone_number_id"])}
	}

	// rest collects what is not split into items; it becomes one
	// KindChange item if anything but context is left in it.
	rest := make(map[string]any, len(value))
	for k, v := range value {
		rest[k] = v
	}
	split := false
	contactsUsed := false

	if groups, ok := value[keyGroups].([]any); ok {
		split = true
		objs, leftover := splitObjects(groups)
		objs, leftover = attachOrphanInitiatedBy(objs, leftover)
		if ib, ok := value["initiated_by"].(string); ok && len(objs) > 0 {
			for _, g := range objs {
				if _, has := g["initiated_by"]; !has {
					g["initiated_by"] = ib
				}
			}
			delete(rest, "initiated_by")
		}
		for _, g := range objs {
			p.emitGroup(b, g)
		}
		setOrDelete(rest, keyGroups, leftover)
	}

	contacts, _ := value[keyContacts].([]any)
	if statuses, ok := value[keyStatuses].([]any); ok {
		split = true
		objs, leftover := splitObjects(statuses)
		for _, s := range objs {
			p.emitStatus(b, s, contacts)
			contactsUsed = true
		}
		setOrDelete(rest, keyStatuses, leftover)
	}
	if messages, ok := value[keyMessages].([]any); ok {
		split = true
		objs, leftover := splitObjects(messages)
		for _, m := range objs {
			p.emitMessage(b, m, contacts)
			contactsUsed = true
		}
		setOrDelete(rest, keyMessages, leftover)
	}

	if !split {
		p.emitChange(b, value)
		return
	}
	for k := range rest {
		switch k {
		case "messaging_product", "metadata":
			continue
		case keyContacts:
			if contactsUsed {
				continue
			}
		}
		p.emitChange(b, rest)
		return
	}
}

func (p *parser) emitGroup(b base, g map[string]any) {
	if t, ok := g["type"].(string); ok {
		g["type"] = normaliseGroupType(t)
	}
	normaliseNumbers(g)
	ev := strMap(g)
	key := []string{KindGroup, b.md.PhoneNumberID, b.field, ev("group_id"), ev("type"),
		ev("request_id"), ev("join_request_id"), ev("timestamp"), ev("wa_id"), ev("user_id")}
	for _, setting := range []string{"profile_picture", "group_subject", "group_description"} {
		if _, ok := g[setting]; ok {
			key = append(key, setting)
		}
	}
	for _, list := range []string{"added_participants", "removed_participants", "failed_participants"} {
		if ids := participantIDs(g[list]); ids != nil {
			key = append(key, list, strconv.Itoa(len(ids)))
			key = append(key, ids...)
		}
	}
	if ev("request_id") == "" && ev("join_request_id") == "" && ev("timestamp") == "" {
		key = append(key, canonical(g))
	}
	p.emit(b, KindGroup, ev("type"), ev("group_id"), digest(key), payloadOut{Group: g})
}

func (p *parser) emitStatus(b base, s map[string]any, contacts []any) {
	if drift, ok := s["participant_recipient_id"]; ok {
		if _, has := s["recipient_participant_id"]; !has {
			s["recipient_participant_id"] = drift
			delete(s, "participant_recipient_id")
		}
	}
	if conv, ok := s["conversation"].(map[string]any); ok {
		if pricing, ok := conv["pricing"]; ok {
			if _, has := s["pricing"]; !has {
				s["pricing"] = pricing
				delete(conv, "pricing")
			}
		}
	}
	normaliseNumbers(s)
	st := strMap(s)
	groupID := ""
	if st("recipient_type") == RecipientTypeGroup {
		groupID = st("recipient_id")
	}
	key := []string{KindStatus, b.md.PhoneNumberID, st("id"), st("status"), st("recipient_id"),
		st("recipient_participant_id"), st("recipient_participant_user_id")}
	if st("id") == "" {
		key = append(key, canonical(s))
	}
	out := payloadOut{Status: s}
	// For a group send the recipient is the participant; otherwise it is
	// recipient_id itself.
	if c := findContact(contacts, st("recipient_participant_id"), st("recipient_participant_user_id")); c != nil {
		out.Contact = c
	} else if groupID == "" {
		if c := findContact(contacts, st("recipient_id"), st("recipient_user_id")); c != nil {
			out.Contact = c
		}
	}
	p.emit(b, KindStatus, st("status"), groupID, digest(key), out)
}

func (p *parser) emitMessage(b base, m map[string]any, contacts []any) {
	normaliseNumbers(m)
	msg := strMap(m)
	key := []string{KindMessage, b.md.PhoneNumberID, msg("id")}
	if msg("id") == "" {
		key = append(key, canonical(m))
	}
	out := payloadOut{Message: m}
	if c := findContact(contacts, msg("from"), msg("from_user_id")); c != nil {
		out.Contact = c
	}
	p.emit(b, KindMessage, msg("type"), msg("group_id"), digest(key), out)
}

func (p *parser) emitChange(b base, value any) {
	key := []string{KindChange, b.wabaID, b.md.PhoneNumberID, b.field, canonical(value)}
	p.emit(b, KindChange, "", "", digest(key), payloadOut{Value: value})
}

func (p *parser) emit(b base, kind, typ, groupID, msgID string, out payloadOut) {
	out.WABAID, out.Field, out.Metadata = b.wabaID, b.field, b.md
	p.items = append(p.items, Item{
		MsgID:              msgID,
		WABAID:             b.wabaID,
		PhoneNumberID:      b.md.PhoneNumberID,
		DisplayPhoneNumber: b.md.DisplayPhoneNumber,
		Field:              b.field,
		Kind:               kind,
		Type:               typ,
		GroupID:            groupID,
		Data:               marshal(out),
	})
}

// payloadOut is Payload as Parse writes it: the normalised objects stay
// generic so that fields groupflow does not type are kept.
type payloadOut struct {
	WABAID   string   `json:"waba_id"`
	Field    string   `json:"field"`
	Metadata Metadata `json:"metadata"`
	Group    any      `json:"group,omitempty"`
	Status   any      `json:"status,omitempty"`
	Message  any      `json:"message,omitempty"`
	Contact  any      `json:"contact,omitempty"`
	Value    any      `json:"value,omitempty"`
}

// normaliseField maps the generic reference's spelling to the canonical one
// and makes the result a safe subject token.
func normaliseField(f string) string {
	if f == "group_participant_update" {
		return FieldGroupParticipants
	}
	f = subjectToken(f)
	if f == "" {
		return "unknown"
	}
	return f
}

func normaliseGroupType(t string) string {
	switch t {
	case "group_add_participants":
		return TypeParticipantsAdd
	case "group_remove_participants":
		return TypeParticipantsRemove
	}
	return t
}

// subjectToken keeps [A-Za-z0-9_-] and turns every other rune into '_', so
// a value from the payload can never add subject tokens or wildcards.
func subjectToken(s string) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if !tokenByte(s[i]) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		if r < 0x80 && tokenByte(byte(r)) {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	return sb.String()
}

func tokenByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// splitObjects separates the objects of a list from anything else in it.
func splitObjects(list []any) (objs []map[string]any, leftover []any) {
	for _, v := range list {
		if m, ok := v.(map[string]any); ok {
			objs = append(objs, m)
		} else {
			leftover = append(leftover, v)
		}
	}
	return objs, leftover
}

// attachOrphanInitiatedBy handles a doc sample that puts "initiated_by"
// after the group object inside groups[]: an element holding nothing but
// initiated_by belongs to the group object before it (or, if first, after
// it).
func attachOrphanInitiatedBy(objs []map[string]any, leftover []any) ([]map[string]any, []any) {
	isOrphan := func(m map[string]any) bool {
		_, ok := m["initiated_by"]
		return ok && len(m) == 1
	}
	owner := func(i int) map[string]any {
		for j := i - 1; j >= 0; j-- {
			if !isOrphan(objs[j]) {
				return objs[j]
			}
		}
		for j := i + 1; j < len(objs); j++ {
			if !isOrphan(objs[j]) {
				return objs[j]
			}
		}
		return nil
	}
	kept := objs[:0:0]
	for i, m := range objs {
		if !isOrphan(m) {
			kept = append(kept, m)
			continue
		}
		o := owner(i)
		if o == nil {
			leftover = append(leftover, m)
			continue
		}
		if _, has := o["initiated_by"]; has {
			// The owner already says who initiated it; keep the orphan
			// rather than drop or overwrite anything.
			leftover = append(leftover, m)
			continue
		}
		o["initiated_by"] = m["initiated_by"]
	}
	return kept, leftover
}

func setOrDelete(m map[string]any, key string, leftover []any) {
	if len(leftover) == 0 {
		delete(m, key)
		return
	}
	m[key] = leftover
}

// normaliseNumbers turns timestamps and error codes sent as strings of
// digits into JSON numbers, in the object and in every nested errors[]
// (participants, settings outcomes).
func normaliseNumbers(m map[string]any) {
	for _, k := range []string{"timestamp", "expiration_timestamp"} {
		numberise(m, k)
	}
	if conv, ok := m["conversation"].(map[string]any); ok {
		numberise(conv, "expiration_timestamp")
	}
	normaliseErrors(m)
}

func normaliseErrors(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			if k == "errors" {
				if list, ok := child.([]any); ok {
					for _, e := range list {
						if em, ok := e.(map[string]any); ok {
							numberise(em, "code")
							numberise(em, "error_subcode")
						}
					}
				}
			}
			normaliseErrors(child)
		}
	case []any:
		for _, child := range v {
			normaliseErrors(child)
		}
	}
}

// numberise replaces m[k] by a JSON number when it is a string holding an
// int64 (or a number spelled non-canonically, like 007).
func numberise(m map[string]any, k string) {
	var s string
	switch v := m[k].(type) {
	case string:
		s = strings.TrimSpace(v)
	case json.Number:
		s = string(v)
	default:
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return
	}
	m[k] = json.Number(strconv.FormatInt(n, 10))
}

// participantIDs returns the sorted identifiers of a participants list, or
// nil if v is not a list.
func participantIDs(v any) []string {
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	ids := make([]string, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			pm := strMap(m)
			ids = append(ids, pm("input")+"|"+pm("wa_id")+"|"+pm("user_id"))
		} else {
			ids = append(ids, canonical(e))
		}
	}
	slices.Sort(ids)
	return ids
}

// findContact returns the contacts[] entry whose wa_id is waID or whose
// user_id is userID.
func findContact(contacts []any, waID, userID string) any {
	if waID == "" && userID == "" {
		return nil
	}
	for _, c := range contacts {
		cm, ok := c.(map[string]any)
		if !ok {
			continue
		}
		if waID != "" && str(cm["wa_id"]) == waID || userID != "" && str(cm["user_id"]) == userID {
			return cm
		}
	}
	return nil
}

// str returns a string or number as text, and "" for anything else.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return string(v)
	}
	return ""
}

func strMap(m map[string]any) func(string) string {
	return func(k string) string { return str(m[k]) }
}

func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
