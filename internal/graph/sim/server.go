package sim

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the simulator: an http.Handler serving the Graph API paths (with
// or without a version prefix such as /v23.0) and the /_sim/ admin API.
type Server struct {
	cfg   Config
	clock Clock
	log   *slog.Logger
	ids   idGen

	numbers      sync.Map // phone_number_id → *number
	groups       sync.Map // group id → *group
	groupNumbers sync.Map // group JID number → *group
	links        sync.Map // link id → *group
	joinRequests sync.Map // join_request_id → *group
	users        sync.Map // wa_id → *user
	bsuids       sync.Map // user_id → wa_id
	templates    templateStore

	faults      atomic.Pointer[faultState]
	webhookURL  atomic.Pointer[string]
	accessToken atomic.Pointer[string]
	callRand    *lockedRand // call-level fault draws
	statusRand  *lockedRand // status behaviour
	hookRand    *lockedRand // webhook faults and retry jitter
	opRand      *lockedRand // async operation failures

	calls *callLog
	hooks *dispatcher
	admin *http.ServeMux

	closed    chan struct{}
	closeOnce sync.Once
}

var _ http.Handler = (*Server)(nil)

// Validate applies the defaults to a copy of c and reports what is invalid.
func (c Config) Validate() error { return c.withDefaults().validate() }

// New starts a simulator: its webhook delivery runs until Close. It panics
// when cfg is invalid (see Config.Validate).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		panic("sim: invalid config: " + err.Error())
	}
	s := &Server{
		cfg:        cfg,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		ids:        idGen{seed: uint64(cfg.Seed)},
		callRand:   newLockedRand(cfg.Seed, 1),
		statusRand: newLockedRand(cfg.Seed, 2),
		hookRand:   newLockedRand(cfg.Seed, 3),
		opRand:     newLockedRand(cfg.Seed, 4),
		calls:      newCallLog(cfg.CallLogSize),
		closed:     make(chan struct{}),
	}
	s.faults.Store(newFaultState(cfg.Faults))
	s.SetWebhookURL(cfg.WebhookURL)
	s.SetAccessToken(cfg.AccessToken)
	s.admin = s.adminMux()
	s.hooks = newDispatcher(s)
	return s
}

// Close stops webhook delivery (pending webhooks are dropped) and releases
// calls hanging on an injected timeout. It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.hooks.close()
	})
}

// ServeHTTP serves the Graph API and, under /_sim/, the admin API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sim/") || r.URL.Path == "/_sim" {
		s.admin.ServeHTTP(w, r)
		return
	}
	s.serveGraph(w, r)
}

// response is a Graph answer prepared before it is written, so that a
// "lost response" fault can perform the operation and then drop it.
type response struct {
	status int
	body   []byte
	header http.Header
	code   int // Graph error code, 0 on success
}

// request is one Graph call as the handlers see it.
type request struct {
	r       *http.Request
	method  string
	id      string // first path segment (phone, group, WABA id)
	body    []byte
	version int // major API version from the path, 0 when absent
	now     time.Time
	query   func(string) string
}

type handler func(s *Server, rq *request) response

type route struct {
	endpoint string
	h        handler
}

const maxBody = 6 << 20 // a 5 MB JPEG in multipart, plus room

func (s *Server) serveGraph(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fs := s.faults.Load()
	rq := &request{r: r, method: r.Method, now: s.clock.Now()}
	call := Call{Time: rq.now, Method: r.Method, Path: r.URL.Path, Query: redactQuery(r.URL.RawQuery)}

	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		call.Endpoint, call.Fault = "unknown", "read_error"
		s.record(call, start)
		return
	}
	rq.body = body
	if len(body) > 0 {
		call.Body = string(body[:min(len(body), maxBodyLogs)])
	}
	rt, id, version := s.route(r.Method, r.URL.Path)
	rq.id, rq.version = id, version
	call.Endpoint = rt.endpoint
	q := r.URL.Query()
	rq.query = q.Get

	if d := fs.f.Latency; d > 0 || fs.f.LatencyJitter > 0 {
		d += time.Duration(s.callRand.int64n(int64(fs.f.LatencyJitter) + 1))
		if !s.sleep(r, d) {
			call.Fault = "latency_abandoned"
			s.record(call, start)
			panic(http.ErrAbortHandler) // the client left or the simulator closed
		}
	}

	var resp response
	switch {
	case !s.authorized(r, q.Get("access_token")):
		resp = s.fail(errCode(190, "Invalid OAuth 2.0 Access Token"))
	case len(body) > maxBody:
		resp = s.fail(errParam("Request body too large"))
	default:
		switch kind := fs.draw(s.callRand, rt.endpoint); kind {
		case faultTimeout:
			call.Fault = "timeout"
			s.record(call, start)
			select {
			case <-r.Context().Done():
			case <-s.closed:
			}
			panic(http.ErrAbortHandler)
		case faultLost:
			resp = rt.h(s, rq)
			call.Fault, call.Status, call.Code = "lost_response", 0, resp.code
			s.record(call, start)
			s.dropConnection(w)
			return
		case fault5xx:
			call.Fault = "status_5xx"
			resp = response{status: []int{500, 502, 503}[s.callRand.int64n(3)]}
		case faultCode1:
			call.Fault = "code_1"
			resp = s.fail(errCode(1, ""))
		case faultCode2:
			call.Fault = "code_2"
			resp = s.fail(errCode(2, ""))
		case faultCode131000:
			call.Fault = "code_131000"
			resp = s.fail(errCode(131000, ""))
		case faultThrottle:
			call.Fault = "throttle"
			resp = s.fail(s.injectedThrottle(fs.f, rt.endpoint, id))
		default:
			resp = rt.h(s, rq)
		}
	}
	call.Status, call.Code = resp.status, resp.code
	s.write(w, resp)
	s.record(call, start)
}

func (s *Server) record(c Call, start time.Time) {
	c.Duration = time.Since(start)
	s.calls.add(c)
}

// sleep waits d unless the client gives up or the server closes.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closed:
		return false
	}
}

// dropConnection closes the client's connection without an answer.
func (s *Server) dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

func (s *Server) write(w http.ResponseWriter, resp response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	if len(resp.body) > 0 {
		h.Set("Content-Type", "application/json; charset=UTF-8")
		h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	}
	w.WriteHeader(resp.status)
	if len(resp.body) > 0 {
		_, _ = w.Write(resp.body)
	}
}

func (s *Server) authorized(r *http.Request, queryToken string) bool {
	tok := queryToken
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, rest, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		tok = strings.TrimSpace(rest)
	}
	return tok != "" && constantTimeEqual(tok, *s.accessToken.Load())
}

// SetAccessToken replaces the token the simulator accepts, as rotating or
// revoking a token in Meta's business settings does: calls with the old
// one are refused with code 190 from now on.
func (s *Server) SetAccessToken(tok string) { s.accessToken.Store(&tok) }

// ok answers 200 with v as JSON.
func (s *Server) ok(v any) response { return s.okStatus(http.StatusOK, v) }

func (s *Server) okStatus(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		return s.fail(errCode(1, "internal: "+err.Error()))
	}
	return response{status: status, body: b}
}

// fail answers with Meta's error shape.
func (s *Server) fail(e *graphError) response {
	trace := s.ids.fbtraceID()
	b, _ := json.Marshal(e.body(trace))
	h := http.Header{}
	for k, v := range e.Header {
		h[k] = v
	}
	h.Set("X-Fb-Trace-Id", trace)
	if e.Code == 190 {
		h.Set("Www-Authenticate", `OAuth "Facebook Platform" "invalid_token" "`+e.Message+`"`)
	}
	return response{status: e.HTTPStatus, body: b, header: h, code: e.Code}
}

// failWith answers an error status with extra top-level properties beside
// "error" (used for all-failed bulk join request answers).
func (s *Server) failWith(e *graphError, extra map[string]any) response {
	resp := s.fail(e)
	var m map[string]any
	_ = json.Unmarshal(resp.body, &m)
	for k, v := range extra {
		m[k] = v
	}
	resp.body, _ = json.Marshal(m)
	return resp
}

// redactQuery hides access_token in logged query strings.
func redactQuery(q string) string {
	if !strings.Contains(q, "access_token") {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if strings.HasPrefix(p, "access_token=") {
			parts[i] = "access_token=REDACTED"
		}
	}
	return strings.Join(parts, "&")
}

// Endpoint names, as in Call.Endpoint and Faults.Endpoints.
const (
	EndpointCreateGroup       = "create_group"
	EndpointListGroups        = "list_groups"
	EndpointGroupInfo         = "group_info"
	EndpointUpdateSettings    = "update_group_settings"
	EndpointDeleteGroup       = "delete_group"
	EndpointGetInviteLink     = "get_invite_link"
	EndpointResetInviteLink   = "reset_invite_link"
	EndpointDeleteInviteLink  = "delete_invite_link"
	EndpointListJoinRequests  = "list_join_requests"
	EndpointApproveJoin       = "approve_join_requests"
	EndpointRejectJoin        = "reject_join_requests"
	EndpointRemoveParticipant = "remove_participants"
	EndpointAddParticipants   = "add_participants"
	EndpointSendMessage       = "send_message"
	EndpointTemplateLibrary   = "template_library"
	EndpointListTemplates     = "list_templates"
	EndpointCreateTemplate    = "create_template"
	EndpointPhoneNumbers      = "phone_numbers"
	EndpointUnknown           = "unknown"
)

var unknownRoute = route{EndpointUnknown, func(s *Server, rq *request) response {
	return s.fail(errUnsupported(rq.method, rq.id))
}}

// route maps method and path (with an optional /vNN.N prefix) to a handler.
func (s *Server) route(method, path string) (route, string, int) {
	p := strings.Trim(path, "/")
	version := 0
	if first, rest, _ := strings.Cut(p, "/"); len(first) > 1 && first[0] == 'v' {
		if major, _, _ := strings.Cut(first[1:], "."); isDigits(major) && isDigits(strings.ReplaceAll(first[1:], ".", "")) {
			version, _ = strconv.Atoi(major)
			p = rest
		}
	}
	id, edge, _ := strings.Cut(p, "/")
	if strings.Contains(edge, "/") || id == "" {
		return unknownRoute, id, version
	}
	if edge == "" {
		if id == "message_template_library" {
			if method == http.MethodGet {
				return route{EndpointTemplateLibrary, (*Server).templateLibrary}, id, version
			}
			return unknownRoute, id, version
		}
		switch method {
		case http.MethodGet:
			return route{EndpointGroupInfo, (*Server).groupInfo}, id, version
		case http.MethodPost:
			return route{EndpointUpdateSettings, (*Server).updateSettings}, id, version
		case http.MethodDelete:
			return route{EndpointDeleteGroup, (*Server).deleteGroup}, id, version
		}
		return unknownRoute, id, version
	}
	type key struct{ edge, method string }
	switch (key{edge, method}) {
	case key{"groups", http.MethodPost}:
		return route{EndpointCreateGroup, (*Server).createGroup}, id, version
	case key{"groups", http.MethodGet}:
		return route{EndpointListGroups, (*Server).listGroups}, id, version
	case key{"messages", http.MethodPost}:
		return route{EndpointSendMessage, (*Server).sendMessage}, id, version
	case key{"message_templates", http.MethodGet}:
		return route{EndpointListTemplates, (*Server).listTemplates}, id, version
	case key{"message_templates", http.MethodPost}:
		return route{EndpointCreateTemplate, (*Server).createTemplate}, id, version
	case key{"phone_numbers", http.MethodGet}:
		return route{EndpointPhoneNumbers, (*Server).phoneNumbers}, id, version
	case key{"invite_link", http.MethodGet}:
		return route{EndpointGetInviteLink, (*Server).getInviteLink}, id, version
	case key{"invite_link", http.MethodPost}:
		return route{EndpointResetInviteLink, (*Server).resetInviteLink}, id, version
	case key{"invite_link", http.MethodDelete}:
		return route{EndpointDeleteInviteLink, (*Server).deleteInviteLink}, id, version
	case key{"join_requests", http.MethodGet}:
		return route{EndpointListJoinRequests, (*Server).listJoinRequests}, id, version
	case key{"join_requests", http.MethodPost}:
		return route{EndpointApproveJoin, (*Server).approveJoinRequests}, id, version
	case key{"join_requests", http.MethodDelete}:
		return route{EndpointRejectJoin, (*Server).rejectJoinRequests}, id, version
	case key{"participants", http.MethodDelete}:
		return route{EndpointRemoveParticipant, (*Server).removeParticipants}, id, version
	case key{"participants", http.MethodPost}:
		return route{EndpointAddParticipants, (*Server).addParticipants}, id, version
	}
	return unknownRoute, id, version
}

// params is a request body decoded to its top-level properties. JSON bodies
// and form-encoded bodies are both accepted, as Graph does.
type params map[string]json.RawMessage

func parseParams(rq *request) (params, *graphError) {
	ct := rq.r.Header.Get("Content-Type")
	body := strings.TrimSpace(string(rq.body))
	if strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		return formParams(body)
	}
	if body == "" {
		return params{}, nil
	}
	var p params
	if err := json.Unmarshal([]byte(body), &p); err != nil || p == nil {
		return nil, errParam("The request body must be a JSON object.")
	}
	return p, nil
}

func formParams(body string) (params, *graphError) {
	p := params{}
	for _, kv := range strings.Split(body, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, errParam("Malformed form body.")
		}
		if t := strings.TrimSpace(v); (strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{")) && json.Valid([]byte(t)) {
			p[k] = json.RawMessage(t)
			continue
		}
		b, _ := json.Marshal(v)
		p[k] = b
	}
	return p, nil
}

// str reads an optional string property.
func (p params) str(name string) (string, bool, *graphError) {
	raw, ok := p[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, errParam("Param %s must be a string.", name)
	}
	return v, true, nil
}

// product checks messaging_product, which every WhatsApp body must carry.
func (p params) product() *graphError {
	v, ok, err := p.str("messaging_product")
	if err != nil {
		return err
	}
	if !ok {
		return errParam("The parameter messaging_product is required.")
	}
	if !strings.EqualFold(v, "whatsapp") {
		return errParam("Param messaging_product must be one of {WHATSAPP} - got %q.", v)
	}
	return nil
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
