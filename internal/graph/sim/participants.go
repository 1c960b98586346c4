package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
)

type joinRequestItem struct {
	JoinRequestID     string `json:"join_request_id"`
	WAID              string `json:"wa_id"`
	CreationTimestamp string `json:"creation_timestamp"`
	UserID            string `json:"user_id,omitempty"`
	ParentUserID      string `json:"parent_user_id,omitempty"`
	Username          string `json:"username,omitempty"`
}

// GET /{GROUP_ID}/join_requests: pending requests, oldest first.
func (s *Server) listJoinRequests(rq *request) response {
	g, e := s.groupFor(rq)
	if e != nil {
		return s.fail(e)
	}
	limit, e := parseLimit(rq)
	if e != nil {
		return s.fail(e)
	}
	version := "jr-" + g.gnum
	g.mu.RLock()
	reqs := slices.Clone(g.requests)
	g.mu.RUnlock()
	start, end := 0, min(limit, len(reqs))
	switch after, before := rq.query("after"), rq.query("before"); {
	case after != "":
		c, ok := decodeCursor(after, version)
		if !ok {
			return s.fail(errCode(131059, ""))
		}
		start, _ = slices.BinarySearchFunc(reqs, c+1, func(r *joinRequest, seq uint64) int { return cmpU(r.seq, seq) })
		end = min(start+limit, len(reqs))
	case before != "":
		c, ok := decodeCursor(before, version)
		if !ok {
			return s.fail(errCode(131059, ""))
		}
		end, _ = slices.BinarySearchFunc(reqs, c, func(r *joinRequest, seq uint64) int { return cmpU(r.seq, seq) })
		start = max(end-limit, 0)
	}
	page := reqs[start:end]
	type answer struct {
		Data   []joinRequestItem `json:"data"`
		Paging *pagingJSON       `json:"paging,omitempty"`
	}
	out := answer{Data: make([]joinRequestItem, 0, len(page))}
	for _, r := range page {
		it := joinRequestItem{JoinRequestID: r.id, WAID: r.waID, CreationTimestamp: unixString(r.createdAt)}
		if s.cfg.BSUID {
			p := s.participantOf(r.waID)
			it.UserID, it.ParentUserID, it.Username = p.UserID, p.ParentUserID, p.Username
		}
		out.Data = append(out.Data, it)
	}
	if len(page) > 0 {
		pg := &pagingJSON{Cursors: cursorsJSON{
			Before: encodeCursor(page[0].seq, version),
			After:  encodeCursor(page[len(page)-1].seq, version),
		}}
		if end < len(reqs) {
			pg.Next = pageURL(rq, limit, "after", pg.Cursors.After)
		}
		if start > 0 {
			pg.Previous = pageURL(rq, limit, "before", pg.Cursors.Before)
		}
		out.Paging = pg
	}
	return s.ok(out)
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// stringList reads a required, non-empty array of strings.
func (p params) stringList(name string) ([]string, *graphError) {
	raw, ok := p[name]
	if !ok || string(raw) == "null" {
		return nil, errMissing(name)
	}
	var v []string
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, errParam("Param %s must be an array of strings.", name)
	}
	if len(v) == 0 {
		return nil, errInvalid("%s must not be empty.", name)
	}
	return v, nil
}

type failedJoinRequest struct {
	JoinRequestID string      `json:"join_request_id"`
	Errors        []itemError `json:"errors"`
}

// POST /{GROUP_ID}/join_requests approves; DELETE rejects.
func (s *Server) approveJoinRequests(rq *request) response { return s.decideJoinRequests(rq, true) }
func (s *Server) rejectJoinRequests(rq *request) response  { return s.decideJoinRequests(rq, false) }

func (s *Server) decideJoinRequests(rq *request, approve bool) response {
	g, p, e := s.groupWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	ids, e := p.stringList("join_requests")
	if e != nil {
		return s.fail(e)
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	done := []string{}
	var failed []failedJoinRequest
	var added []participantRef
	seen := map[string]bool{}
	g.mu.Lock()
	if g.suspended && approve {
		g.mu.Unlock()
		return s.fail(errCode(131207, ""))
	}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		i := slices.IndexFunc(g.requests, func(r *joinRequest) bool { return r.id == id })
		if i < 0 {
			failed = append(failed, failedJoinRequest{id, []itemError{newItemError(131213, "")}})
			continue
		}
		r := g.requests[i]
		if approve {
			if s.user(r.waID).tosRejected.Load() {
				failed = append(failed, failedJoinRequest{id, []itemError{newItemError(131203, "")}})
				continue
			}
			if len(g.participants) >= s.cfg.MaxParticipants {
				failed = append(failed, failedJoinRequest{id, []itemError{newItemError(131204, "")}})
				continue
			}
			g.participants = append(g.participants, r.waID)
			g.members[r.waID] = true
			ref := s.participantOf(r.waID)
			ref.Input = r.waID
			added = append(added, ref)
		}
		g.requests = slices.Delete(g.requests, i, i+1)
		s.joinRequests.Delete(id)
		done = append(done, id)
	}
	g.mu.Unlock()
	if len(added) > 0 {
		// Meta's "join request approved" sample carries a numeric timestamp.
		s.emitGroup(fieldParticipants, g.phone, groupEvent{
			Timestamp: rq.now.Unix(), GroupID: g.id, Type: "group_participants_add",
			Reason: "invite_link", AddedParticipants: added,
		})
	}
	key := "rejected_join_requests"
	if approve {
		key = "approved_join_requests"
	}
	switch {
	case len(failed) == 0:
		return s.ok(map[string]any{"messaging_product": "whatsapp", key: done})
	case len(done) > 0:
		return s.okStatus(http.StatusPartialContent, map[string]any{
			"messaging_product": "whatsapp", key: done, "failed_join_requests": failed,
			"errors": []itemError{newItemError(131201, "")},
		})
	default:
		first := failed[0].Errors[0]
		return s.failWith(errCode(first.Code, first.ErrorData.Details), map[string]any{
			"messaging_product": "whatsapp", key: done, "failed_join_requests": failed,
		})
	}
}

// DELETE /{GROUP_ID}/participants; outcomes come in the webhook.
func (s *Server) removeParticipants(rq *request) response {
	g, p, e := s.groupWrite(rq)
	if e != nil {
		return s.fail(e)
	}
	raw, ok := p["participants"]
	if !ok || string(raw) == "null" {
		return s.fail(errMissing("participants"))
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return s.fail(errParam("Param participants must be an array of objects."))
	}
	if len(entries) == 0 || len(entries) > MaxParticipants {
		return s.fail(errInvalid("participants must hold 1 to %d entries (got %d).", MaxParticipants, len(entries)))
	}
	type target struct{ input, waID string }
	targets := make([]target, 0, len(entries))
	seen := map[string]bool{}
	for i, ent := range entries {
		ep := params(ent)
		userVal, hasUser, e1 := ep.str("user")
		idVal, hasID, e2 := ep.str("user_id")
		if e1 != nil || e2 != nil || hasUser == hasID {
			return s.fail(errInvalid("participants[%d] must have exactly one of user or user_id.", i))
		}
		t := target{input: userVal}
		if hasUser {
			if t.waID = normalizeWAID(userVal); t.waID == "" {
				return s.fail(errInvalid("participants[%d].user is not a valid phone number or WhatsApp id.", i))
			}
		} else {
			t.input = idVal
			if w, ok := s.bsuids.Load(idVal); ok {
				t.waID = w.(string)
			}
		}
		key := t.waID
		if key == "" {
			key = "id:" + t.input
		}
		if seen[key] {
			return s.fail(errCode(131202, fmt.Sprintf("Participant %s appears more than once.", t.input)))
		}
		seen[key] = true
		targets = append(targets, t)
	}
	if e := s.groupOp(g.phone, rq.now); e != nil {
		return s.fail(e)
	}
	reqID := s.ids.requestID()
	fail := s.asyncFailure()
	ev := groupEvent{Timestamp: unixString(rq.now), GroupID: g.id, Type: "group_participants_remove",
		RequestID: reqID, InitiatedBy: "business"}
	var failCodes []int
	g.mu.Lock()
	for _, t := range targets {
		switch {
		case fail || s.asyncParticipantFailure():
			ev.FailedParticipants = append(ev.FailedParticipants, participantRef{Input: t.input, Errors: []itemError{newItemError(131000, "")}})
			failCodes = append(failCodes, 131000)
		case t.waID != "" && g.members[t.waID]:
			delete(g.members, t.waID)
			g.participants = slices.DeleteFunc(g.participants, func(w string) bool { return w == t.waID })
			g.removed[t.waID] = true
			ev.RemovedParticipants = append(ev.RemovedParticipants, participantRef{Input: t.input})
		default:
			ev.FailedParticipants = append(ev.FailedParticipants, participantRef{Input: t.input, Errors: []itemError{newItemError(131212, "")}})
			failCodes = append(failCodes, 131212)
		}
	}
	g.mu.Unlock()
	switch {
	case len(failCodes) > 0 && len(ev.RemovedParticipants) > 0:
		e := newItemError(131201, "Not all participant-level operations in the request succeeded.")
		e.Message, e.Title = "Failed to remove some participants from the group", "Not All Participants Remove Succeeded"
		ev.Errors = []itemError{e}
	case len(failCodes) > 0:
		// Total failure: Meta lists the inputs and gives the reason once.
		ev.Errors = []itemError{newItemError(failCodes[0], "")}
		for i := range ev.FailedParticipants {
			ev.FailedParticipants[i].Errors = nil
		}
	}
	s.emitGroup(fieldParticipants, g.phone, ev)
	return s.ok(asyncAnswer{"whatsapp", true, reqID})
}
