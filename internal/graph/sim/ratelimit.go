package sim

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// throttled builds a throttling answer: the code's HTTP status (429), a
// Retry-After and the usage headers Meta sends, keyed by objectID.
func throttled(code int, objectID, bucType string, retryAfter time.Duration) *graphError {
	e := errCode(code, "")
	secs := max(int(math.Ceil(retryAfter.Seconds())), 1)
	minutes := 0
	if retryAfter >= time.Minute {
		minutes = int(math.Ceil(retryAfter.Minutes()))
	}
	e.Header = http.Header{}
	e.Header.Set("Retry-After", strconv.Itoa(secs))
	buc, _ := json.Marshal(map[string][]map[string]any{objectID: {{
		"type":                            bucType,
		"call_count":                      100,
		"total_cputime":                   1,
		"total_time":                      1,
		"estimated_time_to_regain_access": minutes,
	}}})
	e.Header.Set("X-Business-Use-Case-Usage", string(buc))
	if code == 4 {
		e.Header.Set("X-App-Usage", `{"call_count":100,"total_cputime":1,"total_time":1}`)
	}
	return e
}

// injectedThrottle is the answer for Faults.Throttle on endpoint.
func (s *Server) injectedThrottle(f Faults, endpoint, id string) *graphError {
	code := f.ThrottleCode
	if code == 0 {
		switch {
		case endpoint == EndpointSendMessage:
			code = 130429
		case isGroupOp(endpoint):
			code = 131208
		default:
			code = 4
		}
	}
	retry := f.ThrottleRetryAfter
	if retry == 0 {
		retry = time.Second
	}
	return throttled(code, id, bucTypeFor(endpoint), retry)
}

func bucTypeFor(endpoint string) string {
	if endpoint == EndpointSendMessage {
		return "whatsapp_business_messaging"
	}
	return "whatsapp_business_management"
}

func isGroupOp(endpoint string) bool {
	switch endpoint {
	case EndpointCreateGroup, EndpointDeleteGroup, EndpointUpdateSettings, EndpointResetInviteLink,
		EndpointDeleteInviteLink, EndpointApproveJoin, EndpointRejectJoin, EndpointRemoveParticipant:
		return true
	}
	return false
}

// groupOp takes one group-operation token from n, or answers 131208.
func (s *Server) groupOp(n *number, now time.Time) *graphError {
	if n.ops == nil || n.ops.AllowN(now, 1) {
		return nil
	}
	return throttled(131208, n.id, "whatsapp_business_management", time.Second)
}

// sendAllowed takes one message token from n, or answers 130429.
func (s *Server) sendAllowed(n *number, now time.Time) *graphError {
	if n.msgs == nil || n.msgs.AllowN(now, 1) {
		return nil
	}
	return throttled(130429, n.id, "whatsapp_business_messaging", time.Second)
}

// pairAllowed enforces PairInterval between 1:1 messages to one user.
func (s *Server) pairAllowed(n *number, to string, now time.Time) *graphError {
	if s.cfg.PairInterval <= 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if last, ok := n.pairs[to]; ok && now.Sub(last) < s.cfg.PairInterval {
		return throttled(131056, n.id, "whatsapp_business_messaging", s.cfg.PairInterval-now.Sub(last))
	}
	if len(n.pairs) > 100000 {
		// Forget pairs that can no longer throttle, so memory stays bounded.
		for k, t := range n.pairs {
			if now.Sub(t) >= s.cfg.PairInterval {
				delete(n.pairs, k)
			}
		}
	}
	n.pairs[to] = now
	return nil
}
