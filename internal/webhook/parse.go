package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
	if len(body) > math.MaxInt32 {
		// The tree addresses the body with int32 offsets; no webhook comes
		// near (the Handler caps bodies at a few MB).
		return nil, fmt.Errorf("%w: not a webhook envelope: %d bytes", ErrMalformed, len(body))
	}
	t := getTree()
	defer putTree(t)
	// One copy of the body: every string of the tree (and of the items) is
	// a substring of it, so the caller may reuse body afterwards.
	root, ok := t.parse(string(body))
	if !ok {
		return nil, notJSON(body)
	}
	if !t.isObject(root) {
		return nil, fmt.Errorf("%w: not a webhook envelope: the top level is not an object", ErrMalformed)
	}
	if obj := t.get(root, "object"); t.kind(obj) != kindString || t.text(obj) != "whatsapp_business_account" {
		return nil, fmt.Errorf("%w: not a webhook envelope: object is %q, want \"whatsapp_business_account\"", ErrMalformed, truncate(t.text(obj)))
	}
	entries := t.get(root, "entry")
	if !t.isArray(entries) || t.nodes[entries].n == 0 {
		return nil, fmt.Errorf("%w: not a webhook envelope: no entry", ErrMalformed)
	}
	// Check the whole envelope before splitting anything, as one error
	// refuses the delivery.
	for i, e := range t.elems(entries) {
		if !t.isObject(e.val) {
			return nil, fmt.Errorf("%w: entry[%d] is not an object", ErrMalformed, i)
		}
		changes := t.get(e.val, "changes")
		if !t.isArray(changes) {
			return nil, fmt.Errorf("%w: entry[%d] has no changes list", ErrMalformed, i)
		}
		for j, c := range t.elems(changes) {
			if !t.isObject(c.val) {
				return nil, fmt.Errorf("%w: entry[%d].changes[%d] is not an object", ErrMalformed, i, j)
			}
		}
	}
	p := parser{t: t}
	ents := t.nodes[entries]
	for i := range ents.n {
		entry := t.members[ents.first+i].val
		changes := t.nodes[t.get(entry, "changes")]
		for j := range changes.n {
			p.change(t.text(t.get(entry, "id")), t.members[changes.first+j].val)
		}
	}
	if len(t.items) == 0 {
		return nil, nil
	}
	// The items, their Data and their MsgIDs were written into scratch;
	// copy them out in three allocations, each item's Data capped so that
	// appending to it cannot reach the next one.
	items := slices.Clone(t.items)
	data := slices.Clone(t.out)
	ids := string(t.ids)
	for i := range items {
		start, end := t.ends[i][0], t.ends[i][1]
		items[i].Data = data[start:end:end]
		items[i].MsgID = ids[i*2*msgIDBytes : (i+1)*2*msgIDBytes]
	}
	return items, nil
}

// notJSON explains why encoding/json refuses body, in its words.
func notJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return fmt.Errorf("%w: not JSON: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: not JSON: data after the top-level value", ErrMalformed)
	}
	// Unreachable: the tree accepts what encoding/json accepts.
	return fmt.Errorf("%w: not JSON", ErrMalformed)
}

// parser splits one body. Its buffers live in the pooled tree.
type parser struct {
	t *tree
}

// base is the context shared by the items of one change.
type base struct {
	wabaID string
	field  string
	md     Metadata
}

// change splits one entry[].changes[] object. The map semantics of the
// former encoding/json version are kept: rest is a shallow copy of value,
// objects are shared by reference.
func (p *parser) change(wabaID string, change int32) {
	t := p.t
	b := base{wabaID: wabaID, field: normaliseField(t.text(t.get(change, "field")))}
	value := t.get(change, "value")
	if !t.isObject(value) {
		p.emitChange(&b, value)
		return
	}
	if md := t.get(value, "metadata"); t.isObject(md) {
		b.md = Metadata{DisplayPhoneNumber: t.text(t.get(md, "display_phone_number")), PhoneNumberID: t.text(t.get(md, "phone_number_id"))}
	}

	// rest collects what is not split into items; it becomes one
	// KindChange item if anything but context is left in it.
	rest := t.clone(value)
	split := false
	contactsUsed := false

	if groups := t.get(value, keyGroups); t.isArray(groups) {
		split = true
		objs, leftover := p.splitObjects(groups)
		objs, leftover = p.attachOrphanInitiatedBy(objs, leftover)
		if ib := t.get(value, "initiated_by"); t.kind(ib) == kindString && len(objs) > 0 {
			for _, g := range objs {
				if !t.has(g, "initiated_by") {
					t.set(g, "initiated_by", ib)
				}
			}
			t.del(rest, "initiated_by")
		}
		for _, g := range objs {
			p.emitGroup(&b, g)
		}
		p.setOrDelete(rest, keyGroups, leftover)
	}

	contacts := &contactIndex{list: t.get(value, keyContacts)}
	if !t.isArray(contacts.list) {
		contacts.list = noNode
	}
	if statuses := t.get(value, keyStatuses); t.isArray(statuses) {
		split = true
		objs, leftover := p.splitObjects(statuses)
		for _, s := range objs {
			p.emitStatus(&b, s, contacts)
			contactsUsed = true
		}
		p.setOrDelete(rest, keyStatuses, leftover)
	}
	if messages := t.get(value, keyMessages); t.isArray(messages) {
		split = true
		objs, leftover := p.splitObjects(messages)
		for _, m := range objs {
			p.emitMessage(&b, m, contacts)
			contactsUsed = true
		}
		p.setOrDelete(rest, keyMessages, leftover)
	}

	if !split {
		p.emitChange(&b, value)
		return
	}
	for _, m := range t.elems(rest) {
		switch t.keyOf(m) {
		case "messaging_product", "metadata":
			continue
		case keyContacts:
			if contactsUsed {
				continue
			}
		}
		p.emitChange(&b, rest)
		return
	}
}

func (p *parser) emitGroup(b *base, g int32) {
	t := p.t
	if typ := t.get(g, "type"); t.kind(typ) == kindString {
		if norm := normaliseGroupType(t.text(typ)); norm != t.text(typ) {
			t.set(g, "type", t.newString(norm))
		}
	}
	p.normaliseNumbers(g)
	ev := func(k string) string { return t.text(t.get(g, k)) }
	p.t.idKey = p.t.idKey[:0]
	for _, k := range [...]string{KindGroup, b.md.PhoneNumberID, b.field, ev("group_id"), ev("type"),
		ev("request_id"), ev("join_request_id"), ev("timestamp"), ev("wa_id"), ev("user_id")} {
		p.part(k)
	}
	for _, setting := range [...]string{"profile_picture", "group_subject", "group_description"} {
		if t.has(g, setting) {
			p.part(setting)
		}
	}
	for _, list := range [...]string{"added_participants", "removed_participants", "failed_participants"} {
		p.participantParts(list, t.get(g, list))
	}
	if ev("request_id") == "" && ev("join_request_id") == "" && ev("timestamp") == "" {
		p.partJSON(g)
	}
	p.emit(b, KindGroup, ev("type"), ev("group_id"), "group", g, noNode)
}

func (p *parser) emitStatus(b *base, s int32, contacts *contactIndex) {
	t := p.t
	if drift := t.get(s, "participant_recipient_id"); drift != noNode {
		if !t.has(s, "recipient_participant_id") {
			t.set(s, "recipient_participant_id", drift)
			t.del(s, "participant_recipient_id")
		}
	}
	if conv := t.get(s, "conversation"); t.isObject(conv) {
		if pricing := t.get(conv, "pricing"); pricing != noNode {
			if !t.has(s, "pricing") {
				t.set(s, "pricing", pricing)
				t.del(conv, "pricing")
			}
		}
	}
	p.normaliseNumbers(s)
	st := func(k string) string { return t.text(t.get(s, k)) }
	groupID := ""
	if st("recipient_type") == RecipientTypeGroup {
		groupID = st("recipient_id")
	}
	p.t.idKey = p.t.idKey[:0]
	for _, k := range [...]string{KindStatus, b.md.PhoneNumberID, st("id"), st("status"), st("recipient_id"),
		st("recipient_participant_id"), st("recipient_participant_user_id")} {
		p.part(k)
	}
	if st("id") == "" {
		p.partJSON(s)
	}
	// For a group send the recipient is the participant; otherwise it is
	// recipient_id itself.
	contact := contacts.find(t, st("recipient_participant_id"), st("recipient_participant_user_id"))
	if contact == noNode && groupID == "" {
		contact = contacts.find(t, st("recipient_id"), st("recipient_user_id"))
	}
	p.emit(b, KindStatus, st("status"), groupID, "status", s, contact)
}

func (p *parser) emitMessage(b *base, m int32, contacts *contactIndex) {
	t := p.t
	p.normaliseNumbers(m)
	msg := func(k string) string { return t.text(t.get(m, k)) }
	p.t.idKey = p.t.idKey[:0]
	for _, k := range [...]string{KindMessage, b.md.PhoneNumberID, msg("id")} {
		p.part(k)
	}
	if msg("id") == "" {
		p.partJSON(m)
	}
	contact := contacts.find(t, msg("from"), msg("from_user_id"))
	p.emit(b, KindMessage, msg("type"), msg("group_id"), "message", m, contact)
}

func (p *parser) emitChange(b *base, value int32) {
	p.t.idKey = p.t.idKey[:0]
	for _, k := range [...]string{KindChange, b.wabaID, b.md.PhoneNumberID, b.field} {
		p.part(k)
	}
	p.partJSON(value)
	if p.t.kind(value) == kindNull {
		value = noNode // a null value is left out, as before
	}
	p.emit(b, KindChange, "", "", "value", value, noNode)
}

// emit appends an item whose Data is the Payload JSON: the context, the
// object under slot (left out when noNode) and the contact (when found).
func (p *parser) emit(b *base, kind, typ, groupID, slot string, obj, contact int32) {
	t := p.t
	start := len(t.out)
	d := append(t.out, `{"waba_id":`...)
	d = appendString(d, b.wabaID)
	d = append(d, `,"field":`...)
	d = appendString(d, b.field)
	d = append(d, `,"metadata":{`...)
	if b.md.DisplayPhoneNumber != "" {
		d = append(d, `"display_phone_number":`...)
		d = appendString(d, b.md.DisplayPhoneNumber)
		if b.md.PhoneNumberID != "" {
			d = append(d, ',')
		}
	}
	if b.md.PhoneNumberID != "" {
		d = append(d, `"phone_number_id":`...)
		d = appendString(d, b.md.PhoneNumberID)
	}
	d = append(d, '}')
	if obj != noNode {
		d = append(d, ',', '"')
		d = append(d, slot...)
		d = append(d, '"', ':')
		d = t.appendJSON(d, obj)
	}
	if contact != noNode {
		d = append(d, `,"contact":`...)
		d = t.appendJSON(d, contact)
	}
	t.out = append(d, '}')
	t.ends = append(t.ends, [2]int{start, len(t.out)})
	p.appendMsgID()
	t.items = append(t.items, Item{
		WABAID:             b.wabaID,
		PhoneNumberID:      b.md.PhoneNumberID,
		DisplayPhoneNumber: b.md.DisplayPhoneNumber,
		Field:              b.field,
		Kind:               kind,
		Type:               typ,
		GroupID:            groupID,
	})
}

func appendString(dst []byte, s string) []byte { return appendJSONString(dst, s, plainString(s)) }

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
		if r < 0x80 && tokenByte(byte(r)) { //nolint:gosec // G115: r < 0x80 is checked first
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
// The slices are scratch, valid until the next call.
func (p *parser) splitObjects(list int32) (objs, leftover []int32) {
	t := p.t
	objs, leftover = p.t.objs[:0], p.t.left[:0]
	for _, m := range t.elems(list) {
		if t.isObject(m.val) {
			objs = append(objs, m.val)
		} else {
			leftover = append(leftover, m.val)
		}
	}
	p.t.objs, p.t.left = objs, leftover
	return objs, leftover
}

// attachOrphanInitiatedBy handles a doc sample that puts "initiated_by"
// after the group object inside groups[]: an element holding nothing but
// initiated_by belongs to the nearest group object before it (or, when
// there is none, the nearest after it).
//
// An empty object given initiated_by looks like an orphan from then on, so
// later orphans look past it, as they did when each one searched the list
// (the golden file pins this). That search made a list of orphans cost its
// square; this is one pass: below stacks the objects before i that are not
// orphans (only its top is ever attached to, so only its top can turn into
// one), and next finds the first object after i that is not, for orphans
// with nothing below.
func (p *parser) attachOrphanInitiatedBy(objs, leftover []int32) ([]int32, []int32) {
	t := p.t
	isOrphan := func(m int32) bool {
		return t.nodes[m].n == 1 && t.has(m, "initiated_by")
	}
	kept, below := p.t.kept[:0], p.t.below[:0]
	next := 0
	for i, m := range objs {
		if !isOrphan(m) {
			kept = append(kept, m)
			below = append(below, m)
			continue
		}
		o := noNode
		if len(below) > 0 {
			o = below[len(below)-1]
		} else {
			// Objects after i only turn into orphans, so next never
			// moves back.
			next = max(next, i+1)
			for next < len(objs) && isOrphan(objs[next]) {
				next++
			}
			if next < len(objs) {
				o = objs[next]
			}
		}
		if o == noNode || t.has(o, "initiated_by") {
			// No owner, or the owner already says who initiated it: keep
			// the orphan rather than drop or overwrite anything.
			leftover = append(leftover, m)
			continue
		}
		t.set(o, "initiated_by", t.get(m, "initiated_by"))
		if len(below) > 0 && isOrphan(o) {
			below = below[:len(below)-1]
		}
	}
	p.t.kept, p.t.below, p.t.left = kept, below, leftover
	return kept, leftover
}

func (p *parser) setOrDelete(obj int32, key string, leftover []int32) {
	if len(leftover) == 0 {
		p.t.del(obj, key)
		return
	}
	p.t.set(obj, key, p.t.newArray(leftover))
}

// normaliseNumbers turns timestamps and error codes sent as strings of
// digits into JSON numbers, in the object and in every nested errors[]
// (participants, settings outcomes).
func (p *parser) normaliseNumbers(m int32) {
	p.numberise(m, "timestamp")
	p.numberise(m, "expiration_timestamp")
	if conv := p.t.get(m, "conversation"); p.t.isObject(conv) {
		p.numberise(conv, "expiration_timestamp")
	}
	p.normaliseErrors(m)
}

func (p *parser) normaliseErrors(v int32) {
	t := p.t
	switch t.kind(v) {
	case kindObject, kindArray:
		// numberise only replaces values of existing keys, so v's members
		// stay where they are while they are walked.
		n := t.nodes[v]
		for i := range n.n {
			m := t.members[n.first+i]
			if n.kind == kindObject && t.keyOf(m) == "errors" && t.isArray(m.val) {
				for _, e := range t.elems(m.val) {
					if t.isObject(e.val) {
						p.numberise(e.val, "code")
						p.numberise(e.val, "error_subcode")
					}
				}
			}
			p.normaliseErrors(m.val)
		}
	}
}

// numberise replaces m[k] by a JSON number when it is a string holding an
// int64 (or a number spelled non-canonically, like 007).
func (p *parser) numberise(m int32, k string) {
	t := p.t
	v := t.get(m, k)
	var s string
	switch t.kind(v) {
	case kindString:
		s = strings.TrimSpace(t.text(v))
	case kindNumber:
		s = t.text(v)
	default:
		return
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return
	}
	var buf [24]byte
	canon := strconv.AppendInt(buf[:0], n, 10)
	switch {
	case t.kind(v) == kindNumber && s == string(canon):
		// Already the canonical number.
	case s == string(canon):
		t.set(m, k, t.newNumber(s))
	default:
		t.set(m, k, t.newNumber(string(canon)))
	}
}

// participantParts adds a participants list to the MsgID key: its name,
// length and the sorted "input|wa_id|user_id" of its entries. Nothing is
// added when v is not a list.
func (p *parser) participantParts(name string, v int32) {
	t := p.t
	if !t.isArray(v) {
		return
	}
	buf, spans := p.t.idBuf[:0], p.t.idSpans[:0]
	for _, e := range t.elems(v) {
		start := len(buf)
		if t.isObject(e.val) {
			buf = append(buf, t.text(t.get(e.val, "input"))...)
			buf = append(buf, '|')
			buf = append(buf, t.text(t.get(e.val, "wa_id"))...)
			buf = append(buf, '|')
			buf = append(buf, t.text(t.get(e.val, "user_id"))...)
		} else {
			buf = t.appendJSON(buf, e.val)
		}
		spans = append(spans, [2]int{start, len(buf)})
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return bytes.Compare(buf[a[0]:a[1]], buf[b[0]:b[1]]) })
	p.part(name)
	var n [20]byte
	p.partBytes(strconv.AppendInt(n[:0], int64(len(spans)), 10))
	for _, sp := range spans {
		p.partBytes(buf[sp[0]:sp[1]])
	}
	p.t.idBuf, p.t.idSpans = buf, spans
}

// contactScanMax is the longest contacts[] list searched in place; a
// longer one is indexed on its first lookup. Meta sends one contact per
// status or message, and aggregates group statuses for at most a group's
// participants.
const contactScanMax = 16

// contactIndex finds the value.contacts[] entries of one change by wa_id or
// user_id. Searching the list for every status made a change with n
// statuses and n contacts cost n²; a long list is indexed once instead.
type contactIndex struct {
	list int32 // the contacts array, or noNode
	// byID maps an id to the positions (plus one; 0 is none) of the first
	// entries holding it as wa_id and as user_id. Nil until a long list
	// is first searched.
	byID map[string]contactPos
}

type contactPos struct{ wa, user int32 }

// find returns the first entry whose wa_id is waID or whose user_id is
// userID, or noNode.
func (c *contactIndex) find(t *tree, waID, userID string) int32 {
	if c.list == noNode || waID == "" && userID == "" {
		return noNode
	}
	elems := t.elems(c.list)
	if len(elems) <= contactScanMax {
		for _, e := range elems {
			if t.isObject(e.val) && (waID != "" && t.text(t.get(e.val, "wa_id")) == waID || userID != "" && t.text(t.get(e.val, "user_id")) == userID) {
				return e.val
			}
		}
		return noNode
	}
	if c.byID == nil {
		c.byID = make(map[string]contactPos, len(elems))
		for i, e := range elems {
			if !t.isObject(e.val) {
				continue
			}
			pos := int32(i) + 1 //nolint:gosec // G115: a list's length is an int32
			if id := t.text(t.get(e.val, "wa_id")); id != "" {
				if p := c.byID[id]; p.wa == 0 {
					p.wa = pos
					c.byID[id] = p
				}
			}
			if id := t.text(t.get(e.val, "user_id")); id != "" {
				if p := c.byID[id]; p.user == 0 {
					p.user = pos
					c.byID[id] = p
				}
			}
		}
	}
	var pos int32
	if waID != "" {
		pos = c.byID[waID].wa
	}
	if userID != "" {
		if u := c.byID[userID].user; u != 0 && (pos == 0 || u < pos) {
			pos = u
		}
	}
	if pos == 0 {
		return noNode
	}
	return elems[pos-1].val
}

func truncate(s string) string {
	const limit = 64
	if len(s) > limit {
		return s[:limit] + "…"
	}
	return s
}
