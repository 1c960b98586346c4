package sim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// The admin API under /_sim/ drives simulated people and inspects the
// simulator. It takes and answers JSON and needs no token: it is a test
// and sandbox tool, never exposed as Meta.
//
//	POST   /_sim/users/{wa_id}/join           {"invite_link": "..."}   → JoinResult
//	POST   /_sim/users/{wa_id}/leave          {"group_id": "..."}
//	POST   /_sim/users/{wa_id}/tos            {"accepted": false}
//	POST   /_sim/users/{wa_id}/undeliverable  {"mode": "sync"|"async"|""}
//	POST   /_sim/users/{wa_id}/messages       {"group_id": "...", "text": "..."} → {"id": wamid}
//	POST   /_sim/join_requests/{id}/revoke
//	POST   /_sim/groups/{group_id}/suspend | /unsuspend
//	GET    /_sim/groups/{group_id}            → GroupState
//	POST   /_sim/numbers/{phone_number_id}    NumberSettings
//	GET    /_sim/calls?since=&limit=          → {"calls": [...], "last_seq": n}
//	DELETE /_sim/calls
//	GET    /_sim/webhooks | DELETE /_sim/webhooks
//	POST   /_sim/webhook_url                  {"url": "..."}
//	GET    /_sim/state                        → State
//	GET    /_sim/faults | POST /_sim/faults (Faults) | DELETE /_sim/faults
//	GET    /_sim/health
func (s *Server) adminMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("POST /_sim/users/{wa_id}/join", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			InviteLink string `json:"invite_link"`
		}
		if !decode(w, r, &in) {
			return
		}
		res, err := s.Join(r.PathValue("wa_id"), in.InviteLink)
		reply(w, res, err)
	})
	m.HandleFunc("POST /_sim/users/{wa_id}/leave", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			GroupID string `json:"group_id"`
		}
		if !decode(w, r, &in) {
			return
		}
		reply(w, okBody, s.Leave(r.PathValue("wa_id"), in.GroupID))
	})
	m.HandleFunc("POST /_sim/users/{wa_id}/tos", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Accepted *bool `json:"accepted"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Accepted == nil {
			adminError(w, http.StatusBadRequest, "bad_request", "accepted is required")
			return
		}
		reply(w, okBody, s.SetTOS(r.PathValue("wa_id"), *in.Accepted))
	})
	m.HandleFunc("POST /_sim/users/{wa_id}/undeliverable", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Mode *string `json:"mode"`
		}
		if !decode(w, r, &in) {
			return
		}
		mode := UndeliverableSync
		if in.Mode != nil {
			mode = *in.Mode
		}
		reply(w, okBody, s.SetUndeliverable(r.PathValue("wa_id"), mode))
	})
	m.HandleFunc("POST /_sim/users/{wa_id}/messages", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			GroupID string `json:"group_id"`
			Text    string `json:"text"`
		}
		if !decode(w, r, &in) {
			return
		}
		id, err := s.UserMessage(r.PathValue("wa_id"), in.GroupID, in.Text)
		reply(w, map[string]string{"id": id}, err)
	})
	m.HandleFunc("POST /_sim/join_requests/{id}/revoke", func(w http.ResponseWriter, r *http.Request) {
		reply(w, okBody, s.RevokeJoinRequest(r.PathValue("id")))
	})
	m.HandleFunc("POST /_sim/groups/{id}/suspend", func(w http.ResponseWriter, r *http.Request) {
		reply(w, okBody, s.Suspend(r.PathValue("id")))
	})
	m.HandleFunc("POST /_sim/groups/{id}/unsuspend", func(w http.ResponseWriter, r *http.Request) {
		reply(w, okBody, s.Unsuspend(r.PathValue("id")))
	})
	m.HandleFunc("GET /_sim/groups/{id}", func(w http.ResponseWriter, r *http.Request) {
		g, ok := s.Group(r.PathValue("id"))
		if !ok {
			reply(w, nil, ErrUnknownGroup)
			return
		}
		reply(w, g, nil)
	})
	m.HandleFunc("POST /_sim/numbers/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in NumberSettings
		if !decode(w, r, &in) {
			return
		}
		reply(w, okBody, s.SetNumber(r.PathValue("id"), in))
	})
	m.HandleFunc("GET /_sim/calls", func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		calls := s.CallsSince(since, limit)
		if calls == nil {
			calls = []Call{}
		}
		last := since
		if len(calls) > 0 {
			last = calls[len(calls)-1].Seq
		}
		reply(w, map[string]any{"calls": calls, "last_seq": last}, nil)
	})
	m.HandleFunc("DELETE /_sim/calls", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetCalls()
		reply(w, okBody, nil)
	})
	m.HandleFunc("GET /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		hooks := s.Webhooks()
		if hooks == nil {
			hooks = []WebhookRecord{}
		}
		reply(w, map[string]any{"webhooks": hooks, "pending": s.PendingWebhooks()}, nil)
	})
	m.HandleFunc("DELETE /_sim/webhooks", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetWebhooks()
		reply(w, okBody, nil)
	})
	m.HandleFunc("POST /_sim/webhook_url", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			URL string `json:"url"`
		}
		if !decode(w, r, &in) {
			return
		}
		s.SetWebhookURL(in.URL)
		reply(w, okBody, nil)
	})
	m.HandleFunc("GET /_sim/state", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, s.State(), nil)
	})
	m.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, s.Faults(), nil)
	})
	m.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var in Faults
		if !decode(w, r, &in) {
			return
		}
		if err := s.SetFaults(in); err != nil {
			adminError(w, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		reply(w, s.Faults(), nil)
	})
	m.HandleFunc("DELETE /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		_ = s.SetFaults(Faults{})
		reply(w, okBody, nil)
	})
	m.HandleFunc("GET /_sim/health", func(w http.ResponseWriter, _ *http.Request) {
		reply(w, okBody, nil)
	})
	m.HandleFunc("/_sim/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, "not_found", "no such admin endpoint: "+r.Method+" "+r.URL.Path)
	})
	return m
}

var okBody = map[string]bool{"ok": true}

// adminErrors gives each people error its HTTP status and a stable reason.
var adminErrors = []struct {
	err    error
	status int
	reason string
}{
	{ErrUnknownGroup, http.StatusNotFound, "unknown_group"},
	{ErrUnknownJoinRequest, http.StatusNotFound, "unknown_join_request"},
	{ErrInvalidLink, http.StatusNotFound, "invalid_link"},
	{ErrRemoved, http.StatusConflict, "removed"},
	{ErrAlreadyMember, http.StatusConflict, "already_member"},
	{ErrGroupFull, http.StatusConflict, "group_full"},
	{ErrNotMember, http.StatusConflict, "not_member"},
	{ErrSuspended, http.StatusConflict, "suspended"},
	{ErrInvalidWAID, http.StatusBadRequest, "invalid_wa_id"},
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		adminError(w, http.StatusBadRequest, "bad_request", "unreadable body")
		return false
	}
	if len(body) == 0 {
		return true
	}
	if err := json.Unmarshal(body, v); err != nil {
		adminError(w, http.StatusBadRequest, "bad_request", "invalid JSON: "+err.Error())
		return false
	}
	return true
}

// reply writes v as JSON, or err as {"error":{"message","reason"}} with a
// status that fits it.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		status, reason := http.StatusBadRequest, "bad_request"
		for _, m := range adminErrors {
			if errors.Is(err, m.err) {
				status, reason = m.status, m.reason
				break
			}
		}
		adminError(w, status, reason, err.Error())
		return
	}
	b, mErr := json.Marshal(v)
	if mErr != nil {
		adminError(w, http.StatusInternalServerError, "internal", mErr.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func adminError(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": msg, "reason": reason}})
	_, _ = w.Write(b)
}
