package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"image/jpeg"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	approvalRequired = "approval_required"
	autoApprove      = "auto_approve"
	maxSubject       = 128
	maxDescription   = 2048
	maxPicture       = 5 << 20
	minPictureSide   = 192
)

// asyncAnswer is the synchronous answer of delete, settings and remove.
type asyncAnswer struct {
	MessagingProduct string `json:"messaging_product"`
	Success          bool   `json:"success"`
	RequestID        string `json:"request_id"`
}

type createAnswer struct {
	MessagingProduct string `json:"messaging_product"`
	RequestID        string `json:"request_id"`
}

// groupFor resolves the {GROUP_ID} of a path: unknown or deleted groups with
// a group-shaped id are 131041; anything else is an unsupported request.
func (s *Server) groupFor(rq *request) (*group, *graphError) {
	if g := s.liveGroup(rq.id); g != nil {
		return g, nil
	}
	if isGroupIDShape(rq.id) {
		return nil, errCode(131041, "")
	}
	return nil, errUnsupported(rq.method, rq.id)
}

// groupWrite is the start of a write to the group the path names: the
// group, the body's parameters and its messaging_product checked.
func (s *Server) groupWrite(rq *request) (*group, params, *graphError) {
	g, e := s.groupFor(rq)
	if e != nil {
		return nil, nil, e
	}
	p, e := parseParams(rq)
	if e != nil {
		return nil, nil, e
	}
	if e := p.product(); e != nil {
		return nil, nil, e
	}
	return g, p, nil
}

// numberWrite is the start of a write to the business phone number the
// path names: its parameters, with messaging_product checked.
func numberWrite(rq *request) (params, *graphError) {
	if !isDigits(rq.id) {
		return nil, errUnsupported(rq.method, rq.id)
	}
	p, e := parseParams(rq)
	if e != nil {
		return nil, e
	}
	if e := p.product(); e != nil {
		return nil, e
	}
	return p, nil
}

func checkSubject(raw string) (string, *graphError) {
	subject := strings.TrimSpace(raw)
	if n := utf8.RuneCountInString(subject); n == 0 || n > maxSubject {
		return "", errInvalid("subject must be 1 to %d characters after trimming whitespace (got %d).", maxSubject, n)
	}
	return subject, nil
}

func checkDescription(d string) *graphError {
	if n := utf8.RuneCountInString(d); n > maxDescription {
		return errInvalid("description must be at most %d characters (got %d).", maxDescription, n)
	}
	return nil
}

// POST /{PHONE_NUMBER_ID}/groups
func (s *Server) createGroup(rq *request) response {
	p, e := numberWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	raw, ok, e := p.str("subject")
	if e != nil {
		return s.fail(e)
	}
	if !ok {
		return s.fail(errMissing("subject"))
	}
	subject, e := checkSubject(raw)
	if e != nil {
		return s.fail(e)
	}
	desc, _, e := p.str("description")
	if e != nil {
		return s.fail(e)
	}
	if e := checkDescription(desc); e != nil {
		return s.fail(e)
	}
	mode, ok, e := p.str("join_approval_mode")
	if e != nil {
		return s.fail(e)
	}
	if !ok {
		mode = autoApprove
	}
	if mode != autoApprove && mode != approvalRequired {
		return s.fail(errInvalid("join_approval_mode must be approval_required or auto_approve (got %q).", mode))
	}
	n := s.number(rq.id)
	n.mu.Lock()
	ineligible, disabled := n.ineligible, n.creationDisabled
	n.mu.Unlock()
	if ineligible {
		return s.fail(errCode(131215, ""))
	}
	if disabled {
		return s.fail(errCode(131214, ""))
	}
	if e := s.groupOp(n, rq.now); e != nil {
		return s.fail(e)
	}
	reqID := s.ids.requestID()
	if s.asyncFailure() {
		s.emitGroup(fieldLifecycle, n, groupEvent{
			Timestamp: unixString(rq.now), Type: "group_create", Subject: subject, Description: desc,
			RequestID: reqID, GroupID: groupID(n.display, s.ids.groupNumber()),
			Errors: []itemError{newItemError(131000, "Group could not be created")},
		})
		return s.ok(createAnswer{"whatsapp", reqID})
	}
	g, e := s.newGroup(n, subject, desc, mode, rq.now)
	if e != nil {
		return s.fail(e)
	}
	s.emitGroup(fieldLifecycle, n, groupEvent{
		Timestamp: unixString(rq.now), GroupID: g.id, Type: "group_create", RequestID: reqID,
		Subject: subject, InviteLink: inviteURL(g.link), JoinApprovalMode: mode,
	})
	return s.ok(createAnswer{"whatsapp", reqID})
}

func (s *Server) newGroup(n *number, subject, desc, mode string, now time.Time) (*group, *graphError) {
	g := &group{
		phone: n, createdAt: now, approval: mode, subject: subject, description: desc,
		members: map[string]bool{}, removed: map[string]bool{}, sent: map[string]bool{},
	}
	for {
		gn := s.ids.groupNumber()
		if _, taken := s.groupNumbers.LoadOrStore(gn, g); !taken {
			g.gnum = gn
			break
		}
	}
	g.id = groupID(n.display, g.gnum)
	g.link = s.ids.linkID()
	n.mu.Lock()
	if n.active >= s.cfg.MaxGroupsPerNumber {
		n.mu.Unlock()
		s.groupNumbers.Delete(g.gnum)
		return nil, errCode(131211, "")
	}
	n.active++
	g.seq = uint64(len(n.groups) + 1)
	n.groups = append(n.groups, g)
	n.mu.Unlock()
	s.groups.Store(g.id, g)
	s.links.Store(g.link, g)
	return g, nil
}

// parseLimit reads ?limit= (default 25, 1–1024).
func parseLimit(rq *request) (int, *graphError) {
	v := rq.query("limit")
	if v == "" {
		return 25, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errParam("Param limit must be a number.")
	}
	if n < 1 || n > 1024 {
		return 0, errInvalid("limit must be between 1 and 1024 (got %d).", n)
	}
	return n, nil
}

type pagingJSON struct {
	Cursors  cursorsJSON `json:"cursors"`
	Previous string      `json:"previous,omitempty"`
	Next     string      `json:"next,omitempty"`
}

type cursorsJSON struct {
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// pageURL links to another page on this same server (never to Meta).
func pageURL(rq *request, limit int, key, cur string) string {
	scheme := "http"
	if rq.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + rq.r.Host + rq.r.URL.Path + "?limit=" + strconv.Itoa(limit) + "&" + key + "=" + cur
}

type groupListItem struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	CreatedAt string `json:"created_at"`
}

// GET /{PHONE_NUMBER_ID}/groups: active groups, newest first: the
// number's own, never another's (groupflow checks a group's number against
// this list), those deleted left out, suspended ones kept (the fact sheet
// says "active"; whether Meta lists a suspended group is not documented).
func (s *Server) listGroups(rq *request) response {
	if !isDigits(rq.id) {
		return s.fail(errUnsupported(rq.method, rq.id))
	}
	limit, e := parseLimit(rq)
	if e != nil {
		return s.fail(e)
	}
	n := s.number(rq.id)
	n.mu.Lock()
	all := n.groups // elements are never replaced; safe to read after unlock
	n.mu.Unlock()

	live := func(g *group) bool {
		g.mu.RLock()
		defer g.mu.RUnlock()
		return !g.deleted
	}
	// Walk newest → oldest (descending seq); index = seq-1.
	var page []*group
	switch after, before := rq.query("after"), rq.query("before"); {
	case after != "":
		c, ok := decodeCursor(after, n.version)
		if !ok || c > uint64(len(all)) {
			return s.fail(errCode(131059, ""))
		}
		for i := int(c) - 2; i >= 0 && len(page) < limit; i-- {
			if live(all[i]) {
				page = append(page, all[i])
			}
		}
	case before != "":
		c, ok := decodeCursor(before, n.version)
		if !ok || c > uint64(len(all)) || c == 0 {
			return s.fail(errCode(131059, ""))
		}
		var rev []*group
		for i := int(c); i < len(all) && len(rev) < limit; i++ {
			if live(all[i]) {
				rev = append(rev, all[i])
			}
		}
		for i := len(rev) - 1; i >= 0; i-- {
			page = append(page, rev[i])
		}
	default:
		for i := len(all) - 1; i >= 0 && len(page) < limit; i-- {
			if live(all[i]) {
				page = append(page, all[i])
			}
		}
	}
	type listAnswer struct {
		Data struct {
			Groups []groupListItem `json:"groups"`
		} `json:"data"`
		Paging *pagingJSON `json:"paging,omitempty"`
	}
	var out listAnswer
	out.Data.Groups = make([]groupListItem, 0, len(page))
	for _, g := range page {
		g.mu.RLock()
		out.Data.Groups = append(out.Data.Groups, groupListItem{ID: g.id, Subject: g.subject, CreatedAt: unixString(g.createdAt)})
		g.mu.RUnlock()
	}
	if len(page) > 0 {
		first, last := page[0].seq, page[len(page)-1].seq
		pg := &pagingJSON{Cursors: cursorsJSON{Before: encodeCursor(first, n.version), After: encodeCursor(last, n.version)}}
		for i := int(last) - 2; i >= 0; i-- {
			if live(all[i]) {
				pg.Next = pageURL(rq, limit, "after", pg.Cursors.After)
				break
			}
		}
		for i := int(first); i < len(all); i++ {
			if live(all[i]) {
				pg.Previous = pageURL(rq, limit, "before", pg.Cursors.Before)
				break
			}
		}
		out.Paging = pg
	}
	return s.ok(out)
}

// GET /{GROUP_ID}?fields=…
func (s *Server) groupInfo(rq *request) response {
	g, e := s.groupFor(rq)
	if e != nil {
		return s.fail(e)
	}
	out := map[string]any{"id": g.id, "messaging_product": "whatsapp"}
	g.mu.RLock()
	defer g.mu.RUnlock()
	for _, f := range strings.Split(rq.query("fields"), ",") {
		switch f = strings.TrimSpace(f); f {
		case "", "id", "messaging_product":
		case "subject":
			out[f] = g.subject
		case "description":
			out[f] = g.description
		case "participants":
			ps := make([]participantRef, 0, len(g.participants))
			for _, w := range g.participants {
				ps = append(ps, s.participantOf(w))
			}
			out[f] = ps
		case "join_approval_mode":
			out[f] = g.approval
		case "suspended":
			out[f] = g.suspended
		case "creation_timestamp":
			out[f] = g.createdAt.Unix()
		case "total_participant_count":
			out[f] = len(g.participants)
		default:
			return s.fail(errParam("Tried accessing nonexisting field (%s) on node type (WhatsAppGroup)", f))
		}
	}
	return s.ok(out)
}

// settingsInput is what a settings update asks for.
type settingsInput struct {
	subject, description *string
	picture              []byte
}

// POST /{GROUP_ID}: subject, description (JSON or form) or a picture
// (multipart/form-data, field "file").
func (s *Server) updateSettings(rq *request) response {
	g, e := s.groupFor(rq)
	if e != nil {
		return s.fail(e)
	}
	in, e := s.parseSettings(rq)
	if e != nil {
		return s.fail(e)
	}
	g.mu.RLock()
	suspended := g.suspended
	g.mu.RUnlock()
	if suspended {
		return s.fail(errCode(131207, ""))
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	reqID := s.ids.requestID()
	fail := s.asyncFailure()
	ev := groupEvent{Timestamp: unixString(rq.now), GroupID: g.id, Type: "group_settings_update", RequestID: reqID}
	var failed []itemError
	succeeded := 0
	rateErr := newItemError(131208, "")
	g.mu.Lock()
	if in.picture != nil {
		sum := sha256.Sum256(in.picture)
		res := &settingResult{MimeType: "image/jpeg", SHA256: base64.StdEncoding.EncodeToString(sum[:]), UpdateSuccessful: true}
		cfg, _ := jpeg.DecodeConfig(bytes.NewReader(in.picture))
		switch {
		case cfg.Width != cfg.Height:
			res.UpdateSuccessful, res.Errors = false, []itemError{newItemError(131209, "")}
		case cfg.Width < minPictureSide:
			res.UpdateSuccessful, res.Errors = false, []itemError{newItemError(131210, "")}
		default:
			g.pictureSHA = res.SHA256
		}
		ev.ProfilePicture = res
	}
	for _, f := range []struct {
		val *string
		dst *string
		out **settingResult
	}{{in.subject, &g.subject, &ev.GroupSubject}, {in.description, &g.description, &ev.GroupDescription}} {
		if f.val == nil {
			continue
		}
		res := &settingResult{Text: f.val, UpdateSuccessful: !fail}
		if fail {
			res.Errors = []itemError{rateErr}
		} else {
			*f.dst = *f.val
		}
		*f.out = res
	}
	g.mu.Unlock()
	for _, r := range []*settingResult{ev.GroupSubject, ev.GroupDescription, ev.ProfilePicture} {
		switch {
		case r == nil:
		case r.UpdateSuccessful:
			succeeded++
		default:
			failed = append(failed, r.Errors...)
		}
	}
	switch {
	case len(failed) > 0 && succeeded > 0:
		ev.Errors = []itemError{newItemError(131201, "")}
	case len(failed) > 0:
		ev.Errors = []itemError{failed[0]}
		if ev.GroupSubject != nil && !ev.GroupSubject.UpdateSuccessful {
			ev.Errors = []itemError{ev.GroupSubject.Errors[0]}
		}
	}
	s.emitGroup(fieldSettings, g.phone, ev)
	return s.ok(asyncAnswer{"whatsapp", true, reqID})
}

func (s *Server) parseSettings(rq *request) (settingsInput, *graphError) {
	var in settingsInput
	mt, mp, _ := mime.ParseMediaType(rq.r.Header.Get("Content-Type"))
	var p params
	if mt == "multipart/form-data" {
		p = params{}
		form, err := multipart.NewReader(bytes.NewReader(rq.body), mp["boundary"]).ReadForm(maxBody)
		if err != nil {
			return in, errParam("Malformed multipart body.")
		}
		defer func() { _ = form.RemoveAll() }()
		for k, vs := range form.Value {
			if len(vs) > 0 {
				fp, _ := formParams(k + "=" + url.QueryEscape(vs[0]))
				p[k] = fp[k]
			}
		}
		if fhs := form.File["file"]; len(fhs) > 0 {
			f, err := fhs[0].Open()
			if err != nil {
				return in, errParam("Unreadable file part.")
			}
			data, err := io.ReadAll(io.LimitReader(f, maxPicture+1))
			_ = f.Close()
			if err != nil {
				return in, errParam("Unreadable file part.")
			}
			if len(data) > maxPicture {
				return in, errInvalid("The picture must be at most 5 MB.")
			}
			if _, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil {
				return in, errInvalid("The picture must be a JPEG image.")
			}
			in.picture = data
		}
	} else {
		var e *graphError
		if p, e = parseParams(rq); e != nil {
			return in, e
		}
	}
	if e := p.product(); e != nil {
		return in, e
	}
	if raw, ok, e := p.str("subject"); e != nil {
		return in, e
	} else if ok {
		subject, e := checkSubject(raw)
		if e != nil {
			return in, e
		}
		in.subject = &subject
	}
	if d, ok, e := p.str("description"); e != nil {
		return in, e
	} else if ok {
		if e := checkDescription(d); e != nil {
			return in, e
		}
		in.description = &d
	}
	if in.subject == nil && in.description == nil && in.picture == nil {
		return in, errCode(131008, "One of subject, description or file is required.")
	}
	return in, nil
}

// DELETE /{GROUP_ID}
func (s *Server) deleteGroup(rq *request) response {
	g, e := s.groupFor(rq)
	if e != nil {
		return s.fail(e)
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	reqID := s.ids.requestID()
	ev := groupEvent{Timestamp: unixString(rq.now), GroupID: g.id, Type: "group_delete", RequestID: reqID}
	if s.asyncFailure() {
		ev.Errors = []itemError{newItemError(131000, "The group could not be deleted.")}
		s.emitGroup(fieldLifecycle, g.phone, ev)
		return s.ok(asyncAnswer{"whatsapp", true, reqID})
	}
	g.mu.Lock()
	if g.deleted {
		g.mu.Unlock()
		return s.fail(errCode(131041, ""))
	}
	g.deleted = true
	if g.link != "" {
		s.links.Delete(g.link)
		g.link = ""
	}
	for _, r := range g.requests {
		s.joinRequests.Delete(r.id)
	}
	g.requests = nil
	g.mu.Unlock()
	g.phone.mu.Lock()
	g.phone.active--
	g.phone.mu.Unlock()
	s.emitGroup(fieldLifecycle, g.phone, ev)
	return s.ok(asyncAnswer{"whatsapp", true, reqID})
}

type inviteLinkAnswer struct {
	MessagingProduct string `json:"messaging_product"`
	InviteLink       string `json:"invite_link"`
}

// GET /{GROUP_ID}/invite_link
func (s *Server) getInviteLink(rq *request) response {
	g, e := s.groupFor(rq)
	if e != nil {
		return s.fail(e)
	}
	g.mu.RLock()
	link, suspended := g.link, g.suspended
	g.mu.RUnlock()
	if suspended {
		return s.fail(errCode(131207, ""))
	}
	if link == "" {
		g.mu.Lock()
		if g.link == "" && !g.deleted {
			g.link = s.ids.linkID()
			s.links.Store(g.link, g)
		}
		link = g.link
		g.mu.Unlock()
	}
	return s.ok(inviteLinkAnswer{"whatsapp", inviteURL(link)})
}

// POST /{GROUP_ID}/invite_link: a new link; the old one stops working.
func (s *Server) resetInviteLink(rq *request) response {
	g, _, e := s.groupWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	g.mu.Lock()
	if g.suspended || g.deleted {
		g.mu.Unlock()
		if g.deleted {
			return s.fail(errCode(131041, ""))
		}
		return s.fail(errCode(131207, ""))
	}
	if g.link != "" {
		s.links.Delete(g.link)
	}
	g.link = s.ids.linkID()
	s.links.Store(g.link, g)
	link := g.link
	g.mu.Unlock()
	return s.ok(inviteLinkAnswer{"whatsapp", inviteURL(link)})
}

// DELETE /{GROUP_ID}/invite_link: the link stops working; a later GET makes
// a new one.
func (s *Server) deleteInviteLink(rq *request) response {
	g, _, e := s.groupWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	g.mu.Lock()
	if g.link != "" {
		s.links.Delete(g.link)
		g.link = ""
	}
	g.mu.Unlock()
	return s.ok(map[string]string{"success": "true"})
}

// POST /{GROUP_ID}/participants: the business cannot add people (invite only).
func (s *Server) addParticipants(rq *request) response {
	if _, e := s.groupFor(rq); e != nil {
		return s.fail(e)
	}
	e := errUnsupported(http.MethodPost, rq.id+"/participants")
	e.Details = "Participants cannot be added directly; share the invite link instead."
	return s.fail(e)
}
