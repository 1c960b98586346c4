package sim

import (
	"slices"
	"strings"
	"time"
)

// JoinResult says what a Join did.
type JoinResult struct {
	GroupID string `json:"group_id"`
	// Joined is true when the user became a participant at once
	// (auto_approve groups).
	Joined bool `json:"joined"`
	// JoinRequestID is set when the group requires approval: the user now
	// has a pending join request (an existing one is returned again).
	JoinRequestID string `json:"join_request_id,omitempty"`
}

// linkIDOf accepts a full invite link or its bare id.
func linkIDOf(link string) string {
	link = strings.TrimSpace(link)
	for _, p := range []string{"https://chat.whatsapp.com/", "http://chat.whatsapp.com/", "chat.whatsapp.com/"} {
		if strings.HasPrefix(link, p) {
			return strings.TrimSuffix(link[len(p):], "/")
		}
	}
	return link
}

// Join has user waID open an invite link: in an auto_approve group they
// become a participant (group_participants_add webhook, reason invite_link);
// in an approval_required group a join request is created
// (group_join_request_created webhook).
func (s *Server) Join(waID, inviteLink string) (JoinResult, error) {
	wa := normalizeWAID(waID)
	if wa == "" {
		return JoinResult{}, ErrInvalidWAID
	}
	id := linkIDOf(inviteLink)
	v, ok := s.links.Load(id)
	if !ok {
		return JoinResult{}, ErrInvalidLink
	}
	g := v.(*group)
	now := s.clock.Now()
	g.mu.Lock()
	switch {
	case g.deleted || g.link != id:
		g.mu.Unlock()
		return JoinResult{}, ErrInvalidLink
	case g.suspended:
		g.mu.Unlock()
		return JoinResult{}, ErrSuspended
	case g.removed[wa]:
		g.mu.Unlock()
		return JoinResult{}, ErrRemoved
	case g.members[wa]:
		g.mu.Unlock()
		return JoinResult{}, ErrAlreadyMember
	}
	if g.approval == approvalRequired {
		if i := slices.IndexFunc(g.requests, func(r *joinRequest) bool { return r.waID == wa }); i >= 0 {
			id := g.requests[i].id
			g.mu.Unlock()
			return JoinResult{GroupID: g.id, JoinRequestID: id}, nil
		}
		g.reqSeq++
		r := &joinRequest{id: joinRequestID(wa, g.gnum), waID: wa, seq: g.reqSeq, createdAt: now}
		g.requests = append(g.requests, r)
		s.joinRequests.Store(r.id, g)
		g.mu.Unlock()
		p := s.participantOf(wa)
		s.emitGroup(fieldParticipants, g.phone, groupEvent{
			Timestamp: unixString(now), GroupID: g.id, Type: "group_join_request_created", Reason: "invite_link",
			JoinRequestID: r.id, WAID: wa, UserID: p.UserID, ParentUserID: p.ParentUserID, Username: p.Username,
		})
		return JoinResult{GroupID: g.id, JoinRequestID: r.id}, nil
	}
	if len(g.participants) >= s.cfg.MaxParticipants {
		g.mu.Unlock()
		return JoinResult{}, ErrGroupFull
	}
	g.participants = append(g.participants, wa)
	g.members[wa] = true
	g.mu.Unlock()
	s.emitGroup(fieldParticipants, g.phone, groupEvent{
		Timestamp: unixString(now), GroupID: g.id, Type: "group_participants_add", Reason: "invite_link",
		AddedParticipants: []participantRef{s.participantOf(wa)},
	})
	return JoinResult{GroupID: g.id, Joined: true}, nil
}

// Leave has a participant leave the group (group_participants_remove,
// initiated_by participant). Unlike a removed user, they may rejoin by link.
func (s *Server) Leave(waID, groupID string) error {
	wa := normalizeWAID(waID)
	if wa == "" {
		return ErrInvalidWAID
	}
	g := s.liveGroup(groupID)
	if g == nil {
		return ErrUnknownGroup
	}
	g.mu.Lock()
	if !g.members[wa] {
		g.mu.Unlock()
		return ErrNotMember
	}
	delete(g.members, wa)
	g.participants = slices.DeleteFunc(g.participants, func(w string) bool { return w == wa })
	g.mu.Unlock()
	s.emitGroup(fieldParticipants, g.phone, groupEvent{
		Timestamp: unixString(s.clock.Now()), GroupID: g.id, Type: "group_participants_remove",
		RemovedParticipants: []participantRef{s.participantOf(wa)}, InitiatedBy: "participant",
	})
	return nil
}

// RevokeJoinRequest has the user cancel a pending join request
// (group_join_request_revoked webhook).
func (s *Server) RevokeJoinRequest(id string) error {
	v, ok := s.joinRequests.Load(id)
	if !ok {
		return ErrUnknownJoinRequest
	}
	g := v.(*group)
	g.mu.Lock()
	i := slices.IndexFunc(g.requests, func(r *joinRequest) bool { return r.id == id })
	if i < 0 {
		g.mu.Unlock()
		return ErrUnknownJoinRequest
	}
	r := g.requests[i]
	g.requests = slices.Delete(g.requests, i, i+1)
	s.joinRequests.Delete(id)
	g.mu.Unlock()
	p := s.participantOf(r.waID)
	s.emitGroup(fieldParticipants, g.phone, groupEvent{
		Timestamp: unixString(s.clock.Now()), GroupID: g.id, Type: "group_join_request_revoked",
		JoinRequestID: r.id, WAID: r.waID, UserID: p.UserID, ParentUserID: p.ParentUserID, Username: p.Username,
	})
	return nil
}

// SetTOS records whether the user accepted WhatsApp's current terms;
// approving a join request of a user who did not fails with 131203.
func (s *Server) SetTOS(waID string, accepted bool) error {
	wa := normalizeWAID(waID)
	if wa == "" {
		return ErrInvalidWAID
	}
	s.user(wa).tosRejected.Store(!accepted)
	return nil
}

// SetUndeliverable makes messages to the user fail with 131026: mode
// UndeliverableSync in the send answer, UndeliverableAsync in a failed
// status; UndeliverableNone restores delivery.
func (s *Server) SetUndeliverable(waID, mode string) error {
	wa := normalizeWAID(waID)
	if wa == "" {
		return ErrInvalidWAID
	}
	var v int32
	switch mode {
	case UndeliverableNone:
	case UndeliverableSync:
		v = 1
	case UndeliverableAsync:
		v = 2
	default:
		return errBadMode
	}
	s.user(wa).undeliverable.Store(v)
	return nil
}

// Suspend suspends the group (group_suspend webhook): sends fail with
// 131207 and nobody can join until Unsuspend.
func (s *Server) Suspend(groupID string) error { return s.setSuspended(groupID, true) }

// Unsuspend clears a suspension (group_suspend_cleared webhook).
func (s *Server) Unsuspend(groupID string) error { return s.setSuspended(groupID, false) }

func (s *Server) setSuspended(groupID string, on bool) error {
	g := s.liveGroup(groupID)
	if g == nil {
		return ErrUnknownGroup
	}
	g.mu.Lock()
	changed := g.suspended != on
	g.suspended = on
	g.mu.Unlock()
	if !changed {
		return nil
	}
	typ := "group_suspend"
	if !on {
		typ = "group_suspend_cleared"
	}
	s.emitGroup(fieldStatus, g.phone, groupEvent{Timestamp: unixString(s.clock.Now()), Type: typ, GroupID: g.id})
	return nil
}

// UserMessage has a participant write text in the group: an inbound
// messages webhook with group_id, which also opens the group's 24-hour
// service window (free service and utility messages, fact sheet §7).
func (s *Server) UserMessage(waID, groupID, text string) (string, error) {
	wa := normalizeWAID(waID)
	if wa == "" {
		return "", ErrInvalidWAID
	}
	g := s.liveGroup(groupID)
	if g == nil {
		return "", ErrUnknownGroup
	}
	now := s.clock.Now()
	g.mu.Lock()
	if !g.members[wa] {
		g.mu.Unlock()
		return "", ErrNotMember
	}
	g.serviceUntil = now.Add(24 * time.Hour)
	g.mu.Unlock()
	u := s.user(wa)
	c := contact{Profile: profile{Name: "User " + wa[len(wa)-4:]}, WAID: wa}
	if s.cfg.BSUID {
		c.Profile.Username, c.UserID, c.ParentUserID = u.username, u.userID, u.parentUserID
	}
	id := s.ids.wamid(wa)
	s.hooks.emit(g.phone.id, fieldMessages, messagesValue{
		MessagingProduct: "whatsapp", Metadata: s.meta(g.phone), Contacts: []contact{c},
		Messages: []inboundMsg{{From: wa, GroupID: g.id, ID: id, Timestamp: unixString(now), Text: &textBody{text}, Type: "text"}},
	}, 0)
	return id, nil
}

// NumberSettings changes how one business phone number behaves.
type NumberSettings struct {
	// Ineligible makes group creation fail with 131215.
	Ineligible bool `json:"ineligible"`
	// GroupCreationDisabled makes group creation fail with 131214.
	GroupCreationDisabled bool `json:"group_creation_disabled"`
}

// SetNumber applies settings to a phone number id.
func (s *Server) SetNumber(phoneNumberID string, ns NumberSettings) error {
	if !isDigits(phoneNumberID) {
		return errBadPhone
	}
	n := s.number(phoneNumberID)
	n.mu.Lock()
	n.ineligible, n.creationDisabled = ns.Ineligible, ns.GroupCreationDisabled
	n.mu.Unlock()
	return nil
}
