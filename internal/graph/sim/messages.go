package sim

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type sendAnswer struct {
	MessagingProduct string        `json:"messaging_product"`
	Contacts         []sendContact `json:"contacts"`
	Messages         []sentMessage `json:"messages"`
}

type sendContact struct {
	Input string `json:"input"`
	WAID  string `json:"wa_id"`
}

type sentMessage struct {
	ID            string `json:"id"`
	MessageStatus string `json:"message_status,omitempty"`
}

type templateParam struct {
	Type    string `json:"type"`
	Text    string `json:"text"`
	GroupID string `json:"group_id"`
}

type templateComponent struct {
	Type       string          `json:"type"`
	Parameters []templateParam `json:"parameters"`
}

type templateMsg struct {
	Name     string `json:"name"`
	Language struct {
		Code string `json:"code"`
	} `json:"language"`
	Components []templateComponent `json:"components"`
}

type pinMsg struct {
	Type           string `json:"type"`
	MessageID      string `json:"message_id"`
	ExpirationDays *int   `json:"expiration_days"`
}

// Message types a group accepts (fact sheet §1).
var groupTypes = []string{"text", "image", "video", "audio", "document", "sticker", "template", "pin"}

// delivery is what the status webhooks of one send need.
type delivery struct {
	n          *number
	wamid      string
	to         string // group id or wa_id
	group      bool
	recipients []string // participants (group) or the user
	pricing    *pricing
	convType   string
	version    int
	failCode   int
	failDetail string
}

// POST /{PHONE_NUMBER_ID}/messages
func (s *Server) sendMessage(rq *request) response {
	p, e := numberWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	rtype, ok, e := p.str("recipient_type")
	if e != nil {
		return s.fail(e)
	}
	if !ok {
		rtype = "individual"
	}
	if rtype != "individual" && rtype != "group" {
		return s.fail(errInvalid("recipient_type must be individual or group (got %q).", rtype))
	}
	to, ok, e := p.str("to")
	if e != nil {
		return s.fail(e)
	}
	if !ok || to == "" {
		return s.fail(errMissing("to"))
	}
	typ, ok, e := p.str("type")
	if e != nil {
		return s.fail(e)
	}
	if !ok {
		typ = "text"
	}
	n := s.number(rq.id)
	d := delivery{n: n, to: to, group: rtype == "group", version: rq.version}

	var g *group
	if d.group {
		if g = s.liveGroup(to); g == nil || g.phone != n {
			if isGroupIDShape(to) {
				return s.fail(errCode(131041, ""))
			}
			return s.fail(errInvalid("to must be a group id when recipient_type is group."))
		}
		if !slices.Contains(groupTypes, typ) {
			return s.fail(errInvalid("Message type %s is not supported for groups.", typ))
		}
	} else {
		if isGroupIDShape(to) {
			return s.fail(errInvalid("recipient_type must be group when to is a group id."))
		}
		wa := normalizeWAID(to)
		if wa == "" {
			return s.fail(errInvalid("to must be a phone number or WhatsApp id (got %q).", to))
		}
		d.to = wa
		if typ == "pin" {
			return s.fail(errInvalid("pin messages can only be sent to groups."))
		}
	}

	// Content checks, and what the message costs (fact sheet §7).
	category := "service"
	var tpl *accountTemplate
	var pin pinMsg
	switch typ {
	case "text":
		var txt struct {
			Body *string `json:"body"`
		}
		raw, ok := p["text"]
		if !ok {
			return s.fail(errMissing("text"))
		}
		if json.Unmarshal(raw, &txt) != nil {
			return s.fail(errParam("Param text must be an object."))
		}
		if txt.Body == nil || *txt.Body == "" {
			return s.fail(errMissing("text.body"))
		}
		if utf8.RuneCountInString(*txt.Body) > 4096 {
			return s.fail(errInvalid("text.body must be at most 4096 characters."))
		}
	case "template":
		var e *graphError
		if tpl, e = s.checkTemplate(p, n); e != nil {
			return s.fail(e)
		}
		category = strings.ToLower(tpl.Category)
		if d.group && category == "authentication" {
			return s.fail(errInvalid("Authentication templates cannot be sent to groups."))
		}
	case "pin":
		raw, ok := p["pin"]
		if !ok {
			return s.fail(errMissing("pin"))
		}
		if json.Unmarshal(raw, &pin) != nil {
			return s.fail(errParam("Param pin must be an object."))
		}
		if pin.Type != "pin" && pin.Type != "unpin" {
			return s.fail(errInvalid("pin.type must be pin or unpin."))
		}
		if pin.MessageID == "" {
			return s.fail(errMissing("pin.message_id"))
		}
		if pin.Type == "pin" {
			if pin.ExpirationDays == nil {
				return s.fail(errMissing("pin.expiration_days"))
			}
			if *pin.ExpirationDays < 1 || *pin.ExpirationDays > 30 {
				return s.fail(errInvalid("pin.expiration_days must be between 1 and 30."))
			}
		}
	case "image", "video", "audio", "document", "sticker":
		var media struct {
			ID   string `json:"id"`
			Link string `json:"link"`
		}
		raw, ok := p[typ]
		if !ok {
			return s.fail(errMissing(typ))
		}
		if json.Unmarshal(raw, &media) != nil {
			return s.fail(errParam("Param %s must be an object.", typ))
		}
		if media.ID == "" && media.Link == "" {
			return s.fail(errMissing(typ + ".id or " + typ + ".link"))
		}
	default:
		if _, ok := p[typ]; !ok {
			return s.fail(errMissing(typ))
		}
	}

	if d.group {
		g.mu.RLock()
		suspended, empty := g.suspended, len(g.participants) == 0
		inWindow := rq.now.Before(g.serviceUntil)
		known := pin.MessageID == "" || g.sent[pin.MessageID]
		d.recipients = slices.Clone(g.participants)
		g.mu.RUnlock()
		switch {
		case suspended:
			return s.fail(errCode(131207, ""))
		case empty:
			return s.fail(errCode(131020, ""))
		case !known:
			return s.fail(errInvalid("pin.message_id %s is not a message of this group.", pin.MessageID))
		}
		if e := s.sendAllowed(n, rq.now); e != nil {
			return s.fail(e)
		}
		gcat := "group_" + category
		free := inWindow && (gcat == "group_service" || gcat == "group_utility")
		d.convType = gcat
		if typ != "pin" {
			d.pricing = &pricing{Billable: !free, PricingModel: "PMP", Type: "regular", Category: gcat}
			if free {
				d.pricing.Type = "free_group_customer_service"
			}
		}
	} else {
		u := s.user(d.to)
		if u.undeliverable.Load() == 1 {
			return s.fail(errCode(131026, "Message failed to send because the recipient cannot receive it."))
		}
		if e := s.sendAllowed(n, rq.now); e != nil {
			return s.fail(e)
		}
		if e := s.pairAllowed(n, d.to, rq.now); e != nil {
			return s.fail(e)
		}
		d.recipients = []string{d.to}
		d.convType = category
		switch {
		case u.undeliverable.Load() == 2:
			d.failCode, d.failDetail = 131026, "Message failed to send because the recipient cannot receive it."
		case tpl == nil:
			// No 1:1 customer service window is ever open in the simulator.
			d.failCode, d.failDetail = 131047, "Message failed to send because more than 24 hours have passed since the customer last replied to this number."
		default:
			d.pricing = &pricing{Billable: true, PricingModel: "PMP", Type: "regular", Category: category}
		}
	}

	d.wamid = s.ids.wamid(wamidKey(d, g))
	if d.group {
		g.mu.Lock()
		if len(g.sent) >= 10000 {
			clear(g.sent) // bound memory; pins name recent messages
		}
		g.sent[d.wamid] = true
		switch pin.Type {
		case "pin":
			if !slices.Contains(g.pinned, pin.MessageID) {
				g.pinned = append(g.pinned, pin.MessageID)
				if len(g.pinned) > 3 { // a fourth pin unpins the oldest
					g.pinned = g.pinned[1:]
				}
			}
		case "unpin":
			g.pinned = slices.DeleteFunc(g.pinned, func(m string) bool { return m == pin.MessageID })
		}
		g.mu.Unlock()
	}
	s.scheduleStatuses(d, rq.now, typ == "pin")
	ans := sendAnswer{MessagingProduct: "whatsapp", Contacts: []sendContact{{Input: to, WAID: d.to}}, Messages: []sentMessage{{ID: d.wamid}}}
	if tpl != nil {
		ans.Messages[0].MessageStatus = "accepted"
	}
	return s.ok(ans)
}

func wamidKey(d delivery, g *group) string {
	if g != nil {
		return g.gnum
	}
	return d.to
}

// checkTemplate validates a template send against the WABA's templates; a
// group invite template needs a group_id body parameter naming an active
// group of the sending number.
func (s *Server) checkTemplate(p params, n *number) (*accountTemplate, *graphError) {
	raw, ok := p["template"]
	if !ok {
		return nil, errMissing("template")
	}
	var tm templateMsg
	if json.Unmarshal(raw, &tm) != nil {
		return nil, errParam("Param template must be an object.")
	}
	if tm.Name == "" {
		return nil, errMissing("template.name")
	}
	if tm.Language.Code == "" {
		return nil, errMissing("template.language.code")
	}
	tpl := s.templates.find(tm.Name, tm.Language.Code)
	if tpl == nil || tpl.Status != "APPROVED" {
		return nil, errCode(132001, "template name ("+tm.Name+") does not exist in "+tm.Language.Code)
	}
	var body []templateParam
	for _, c := range tm.Components {
		if strings.EqualFold(c.Type, "body") {
			body = append(body, c.Parameters...)
		}
	}
	if len(body) != tpl.ParamCount {
		return nil, errCode(132000, "body: number of localizable_params ("+strconv.Itoa(len(body))+") does not match the expected number of params ("+strconv.Itoa(tpl.ParamCount)+")")
	}
	if strings.EqualFold(tpl.Topic, TopicGroupInviteLink) {
		i := slices.IndexFunc(body, func(tp templateParam) bool { return tp.Type == "group_id" })
		if i < 0 || body[i].GroupID == "" {
			return nil, errCode(131008, "A body parameter of type group_id is required by group invite link templates.")
		}
		g := s.liveGroup(body[i].GroupID)
		if g == nil || g.phone != n {
			return nil, errInvalid("group_id %s is not an active group of this phone number.", body[i].GroupID)
		}
		g.mu.RLock()
		suspended := g.suspended
		g.mu.RUnlock()
		if suspended {
			return nil, errCode(131207, "")
		}
	}
	return tpl, nil
}

// scheduleStatuses emits sent, then delivered and read per recipient. Group
// statuses: sent names the group only; delivered/read name each participant
// and are sometimes aggregated into one webhook per status; a reader's
// delivered is sometimes skipped.
func (s *Server) scheduleStatuses(d delivery, now time.Time, pin bool) {
	step := s.cfg.WebhookDelay
	base := statusObject{ID: d.wamid, RecipientID: d.to}
	if d.group {
		base.RecipientType = "group"
	}
	convID := s.ids.conversationID()
	conv := func(o *statusObject) {
		if d.version > 0 && d.version <= 23 && d.pricing != nil {
			o.Conversation = &conversation{ID: convID, Origin: conversationOrigin{Type: d.convType},
				ExpirationTimestamp: unixString(now.Add(24 * time.Hour))}
		}
	}
	emit := func(items []statusObject, contacts []contact, after time.Duration) {
		s.hooks.emit(d.n.id, fieldMessages, messagesValue{MessagingProduct: "whatsapp", Metadata: s.meta(d.n),
			Contacts: contacts, Statuses: items}, after)
	}
	if d.failCode != 0 {
		f := base
		f.Status, f.Timestamp = "failed", unixString(now)
		e := newItemError(d.failCode, d.failDetail)
		e.Href = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
		f.Errors = []itemError{e}
		emit([]statusObject{f}, nil, 0)
		return
	}
	sent := base
	sent.Status, sent.Timestamp = "sent", unixString(now)
	if !d.group {
		sent.Pricing = d.pricing
		conv(&sent)
	}
	emit([]statusObject{sent}, nil, 0)

	sb := s.cfg.Statuses
	var delivered, read []statusObject
	var dContacts, rContacts []contact
	for _, w := range d.recipients {
		if s.user(w).undeliverable.Load() != 0 {
			continue
		}
		reads := !pin && s.statusRand.chance(sb.Read)
		skipDelivered := reads && s.statusRand.chance(sb.ReadWithoutDelivered)
		o := base
		o.Pricing = d.pricing
		if d.group {
			o.RecipientParticipantID = w
			if s.cfg.BSUID {
				u := s.user(w)
				o.RecipientParticipantUserID, o.RecipientParticipantParentUserID = u.userID, u.parentUserID
			}
		}
		conv(&o)
		var c contact
		if s.cfg.BSUID {
			u := s.user(w)
			c = contact{Profile: profile{Name: "User " + w[len(w)-4:], Username: u.username}, WAID: w, UserID: u.userID, ParentUserID: u.parentUserID}
		}
		if !skipDelivered {
			o.Status, o.Timestamp = "delivered", unixString(now.Add(step))
			delivered = append(delivered, o)
			dContacts = append(dContacts, c)
		}
		if reads {
			o.Status, o.Timestamp = "read", unixString(now.Add(2*step))
			read = append(read, o)
			rContacts = append(rContacts, c)
		}
	}
	if !s.cfg.BSUID {
		dContacts, rContacts = nil, nil
	}
	for _, batch := range []struct {
		items    []statusObject
		contacts []contact
		after    time.Duration
	}{{delivered, dContacts, step}, {read, rContacts, 2 * step}} {
		if len(batch.items) == 0 {
			continue
		}
		if d.group && len(batch.items) > 1 && s.statusRand.chance(sb.Aggregate) {
			emit(batch.items, batch.contacts, batch.after)
			continue
		}
		for i, it := range batch.items {
			var cs []contact
			if batch.contacts != nil {
				cs = batch.contacts[i : i+1]
			}
			jitter := time.Duration(s.statusRand.int64n(int64(step/2) + 1))
			emit([]statusObject{it}, cs, batch.after+jitter)
		}
	}
}
