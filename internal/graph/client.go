package graph

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/groupflow/groupflow/internal/telemetry"
)

// Stable endpoint names, passed to Config.OnResponse and set in
// Error.Endpoint. Metrics and logs use them as labels, so they never change.
const (
	EndpointCreateGroup         = "create_group"
	EndpointListGroups          = "list_groups"
	EndpointGroupInfo           = "group_info"
	EndpointUpdateGroupSettings = "update_group_settings"
	EndpointUpdateGroupPicture  = "update_group_picture"
	EndpointDeleteGroup         = "delete_group"
	EndpointGetInviteLink       = "get_invite_link"
	EndpointResetInviteLink     = "reset_invite_link"
	EndpointListJoinRequests    = "list_join_requests"
	EndpointApproveJoinRequests = "approve_join_requests"
	EndpointRejectJoinRequests  = "reject_join_requests"
	EndpointRemoveParticipants  = "remove_participants"
	EndpointTemplateLibrary     = "template_library"
	EndpointAccountTemplates    = "account_templates"
	EndpointAddLibraryTemplate  = "add_library_template"
	EndpointAccountPhoneNumbers = "account_phone_numbers"
	EndpointSendGroupInvite     = "send_group_invite"
	EndpointSendGroupText       = "send_group_text"
)

// messagingProduct is the value every JSON body carries.
const messagingProduct = "whatsapp"

// maxBodyBytes bounds how much of an answer is read; Graph answers for these
// endpoints are a few KiB.
const maxBodyBytes = 8 << 20

// Config configures a Client.
type Config struct {
	// BaseURL is the Graph API root, without version. Defaults to
	// https://graph.facebook.com. Point it at the simulator in tests.
	BaseURL string
	// Version is the Graph API version prefixed to every path. Defaults to
	// v23.0.
	Version string
	// AccessToken is the system-user token. It is sent only in the
	// Authorization header: never in a URL, an error or a log. Required.
	AccessToken string
	// HTTPClient sends the requests; wrap its Transport for tracing or
	// metrics. Leave its Timeout at zero and use Timeout instead. Defaults
	// to a client over a clone of http.DefaultTransport. Its CheckRedirect
	// is not used: the client never follows a redirect (the token would
	// go with it).
	HTTPClient *http.Client
	// Timeout bounds each HTTP exchange (a paging iterator applies it per
	// page). A shorter context deadline wins. Defaults to 30 s; negative
	// means no limit beyond the context.
	Timeout time.Duration
	// UserAgent is sent with every request. Defaults to "groupflow".
	UserAgent string
	// OnResponse, when set, is called after every HTTP exchange with the
	// endpoint name (EndpointCreateGroup, …), the HTTP status (0 when no
	// answer arrived), the Graph error code (0 when none) and the duration.
	// It is called from the goroutine making the call and must be safe for
	// concurrent use.
	OnResponse func(endpoint string, status, code int, dur time.Duration)
}

// Client calls the Graph API. It is safe for concurrent use.
type Client struct {
	base       string // scheme://host[/prefix], no trailing slash
	version    string
	root       string // [/prefix]/<version>, escaped: where each url.template starts
	auth       string // "Bearer <token>"
	token      string
	hc         *http.Client
	timeout    time.Duration
	userAgent  string
	onResponse func(endpoint string, status, code int, dur time.Duration)
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	cfg.BaseURL = cmp.Or(cfg.BaseURL, "https://graph.facebook.com")
	cfg.Version = cmp.Or(cfg.Version, "v23.0")
	cfg.Timeout = cmp.Or(cfg.Timeout, 30*time.Second)
	cfg.UserAgent = cmp.Or(cfg.UserAgent, "groupflow")
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
		if tr, ok := http.DefaultTransport.(*http.Transport); ok {
			// A clone, so that other users of the default transport do not
			// share (or close) this client's connections.
			cfg.HTTPClient.Transport = tr.Clone()
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	base := strings.TrimRight(cfg.BaseURL, "/")
	u, _ := url.Parse(base) // validate parsed it
	// Graph answers every call itself: a redirect comes from something
	// in between, and following it would send the Authorization header
	// along (Go keeps it for any port of the same host name and for its
	// subdomains), and a POST's body with a 307. The answer is returned
	// as it is, a permanent error. A copy, so the caller's client is left
	// as it was.
	hc := *cfg.HTTPClient
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cfg.HTTPClient = &hc
	return &Client{
		base:       base,
		version:    cfg.Version,
		root:       u.EscapedPath() + "/" + url.PathEscape(cfg.Version),
		auth:       "Bearer " + cfg.AccessToken,
		token:      cfg.AccessToken,
		hc:         cfg.HTTPClient,
		timeout:    cfg.Timeout,
		userAgent:  cfg.UserAgent,
		onResponse: cfg.OnResponse,
	}, nil
}

func (cfg Config) validate() error {
	if strings.TrimSpace(cfg.AccessToken) == "" {
		return fmt.Errorf("%w: Config.AccessToken is required", ErrInvalidArgument)
	}
	if strings.ContainsAny(cfg.AccessToken, "\r\n") {
		return fmt.Errorf("%w: Config.AccessToken contains a line break", ErrInvalidArgument)
	}
	u, err := url.Parse(cfg.BaseURL)
	if err != nil {
		// url.Parse's error quotes the URL, which may hold credentials.
		return fmt.Errorf("%w: Config.BaseURL does not parse", ErrInvalidArgument)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: Config.BaseURL must be an absolute http(s) URL", ErrInvalidArgument)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		// A query could smuggle access_token into every URL.
		return fmt.Errorf("%w: Config.BaseURL must not have a query or fragment", ErrInvalidArgument)
	}
	if strings.ContainsAny(cfg.Version, "/?#") {
		return fmt.Errorf("%w: Config.Version %q is not a version", ErrInvalidArgument, cfg.Version)
	}
	return nil
}

// request is one Graph call.
type request struct {
	endpoint string
	method   string
	// path is the path after the version, its ids as placeholders
	// ("{group_id}/invite_link"): with the version in front it is the
	// call's url.template. The placeholders are filled in order from ids,
	// each escaped.
	path  string
	ids   []string
	query url.Values
	json  any    // JSON body, or nil
	body  []byte // raw body (multipart) when json is nil
	ctype string // Content-Type of body
}

// response is a 2xx answer.
type response struct {
	status int
	header http.Header
	body   []byte
	// graphErr is set when a 2xx answer carries an error object (a 206
	// partial answer does).
	graphErr *Error
}

// send performs one HTTP exchange. It returns a *Error for non-2xx answers
// and a *transportError when no complete answer arrived.
func (c *Client) send(ctx context.Context, r request) (response, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return response{}, &transportError{endpoint: r.endpoint, err: err}
	}
	body, ctype := r.body, r.ctype
	if r.json != nil {
		b, err := json.Marshal(r.json)
		if err != nil {
			return response{}, fmt.Errorf("graph: %s: encode request: %w", r.endpoint, err)
		}
		body, ctype = b, "application/json"
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}

	// A traced transport names the call's span after its url.template
	// ("POST /v23.0/{phone_number_id}/groups"), not after a URL full of
	// ids, and records the endpoint's name.
	ctx = telemetry.WithEndpoint(ctx, r.endpoint, c.root+"/"+r.path)

	// The trace tells a failure before sending (nothing reached Meta) from
	// one after the request was written (Meta may have executed it).
	var triedConn, wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GetConn: func(string) { triedConn.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wrote.Store(true)
			}
		},
	})
	u, err := c.url(r)
	if err != nil {
		return response{}, err
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return response{}, &transportError{endpoint: r.endpoint, err: c.redactErr(err)}
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.observe(r.endpoint, 0, 0, time.Since(start))
		ambiguous := wrote.Load() || (!triedConn.Load() && !failedBeforeSending(err))
		return response{}, &transportError{endpoint: r.endpoint, ambiguous: ambiguous, err: c.redactErr(err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil {
		c.observe(r.endpoint, resp.StatusCode, 0, time.Since(start))
		// The answer started: Meta executed the request unless it said no.
		ambiguous := resp.StatusCode < 400 || resp.StatusCode >= 500
		return response{}, &transportError{endpoint: r.endpoint, ambiguous: ambiguous,
			err: fmt.Errorf("read answer (http %d): %w", resp.StatusCode, c.redactErr(err))}
	}
	out := response{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := c.redact(decodeError(r.endpoint, resp.StatusCode, resp.Header, b))
		c.observe(r.endpoint, resp.StatusCode, e.Code, time.Since(start))
		return out, e
	}
	if hasErrorObject(b) {
		out.graphErr = c.redact(decodeError(r.endpoint, resp.StatusCode, resp.Header, b))
		c.observe(r.endpoint, resp.StatusCode, out.graphErr.Code, time.Since(start))
		return out, nil
	}
	c.observe(r.endpoint, resp.StatusCode, 0, time.Since(start))
	return out, nil
}

// call sends r and decodes a 2xx answer into out (which may be nil). An
// error object inside a 2xx answer becomes the returned error.
func (c *Client) call(ctx context.Context, r request, out any) (response, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return resp, err
	}
	if resp.graphErr != nil {
		return resp, resp.graphErr
	}
	if err := c.decodeBody(r.endpoint, resp, out); err != nil {
		return resp, err
	}
	return resp, nil
}

// decodeBody decodes a 2xx body into out. An empty body decodes to the zero
// value; an unreadable one is a malformed answer.
func (c *Client) decodeBody(endpoint string, resp response, out any) error {
	if out == nil || len(bytes.TrimSpace(resp.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return c.malformed(endpoint, resp.status, err.Error())
	}
	return nil
}

// malformed is the error for a 2xx answer that lacks what the call needs.
// Meta executed the request, so it is ambiguous.
func (c *Client) malformed(endpoint string, status int, why string) *Error {
	return c.redact(&Error{
		Endpoint:   endpoint,
		HTTPStatus: status,
		Message:    "malformed response: " + why,
		Class:      ClassTransient,
		ambiguous:  true,
		cause:      ErrMalformedResponse,
	})
}

// url is r's URL: r.path after the version, its placeholders filled
// from r.ids.
func (c *Client) url(r request) (string, error) {
	var b strings.Builder
	b.WriteString(c.base)
	b.WriteByte('/')
	b.WriteString(url.PathEscape(c.version))
	ids := r.ids
	for seg := range strings.SplitSeq(r.path, "/") {
		b.WriteByte('/')
		if !strings.HasPrefix(seg, "{") {
			b.WriteString(seg)
			continue
		}
		if len(ids) == 0 {
			return "", invalid(r.endpoint, "no id for %s in %s", seg, r.path)
		}
		b.WriteString(url.PathEscape(ids[0]))
		ids = ids[1:]
	}
	if len(ids) > 0 {
		return "", invalid(r.endpoint, "%d ids for the placeholders of %s", len(r.ids), r.path)
	}
	if len(r.query) > 0 {
		b.WriteByte('?')
		b.WriteString(r.query.Encode())
	}
	return b.String(), nil
}

func (c *Client) observe(endpoint string, status, code int, d time.Duration) {
	if c.onResponse != nil {
		c.onResponse(endpoint, status, code, d)
	}
}

// redact removes the access token from every text of e, in case an answer
// (or a proxy in between) echoes it.
func (c *Client) redact(e *Error) *Error {
	for _, s := range []*string{&e.Message, &e.Details, &e.UserTitle, &e.UserMessage, &e.Type, &e.FBTraceID} {
		*s = c.redactString(*s)
	}
	return e
}

func (c *Client) redactString(s string) string {
	if c.token == "" || !strings.Contains(s, c.token) {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// redactErr keeps err's chain (errors.Is on timeouts still works) but
// rewrites its text if it holds the token.
func (c *Client) redactErr(err error) error {
	if !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &redactedError{msg: c.redactString(err.Error()), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// failedBeforeSending reports errors that can only happen before a request
// leaves the machine (name resolution, dialling).
func failedBeforeSending(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// hasErrorObject reports whether a 2xx body has a top-level "error" member.
func hasErrorObject(b []byte) bool {
	if !bytes.Contains(b, []byte(`"error"`)) {
		return false
	}
	var env wireEnvelope
	return json.Unmarshal(b, &env) == nil && len(env.Error) > 0 && string(env.Error) != "null"
}

// invalid returns an ErrInvalidArgument error for a call refused locally.
func invalid(endpoint, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidArgument, endpoint, fmt.Sprintf(format, args...))
}

// requireIDs refuses identifiers that would address a different Graph
// node: an empty one (DELETE /{group} becomes DELETE /), and the dot
// segments "." and "..", which path escaping keeps as they are and every
// server and proxy resolves (RFC 3986 §5.2.4): GET /v23.0/../invite_link
// is GET /invite_link there.
func requireIDs(endpoint string, ids ...string) error {
	for _, id := range ids {
		switch strings.TrimSpace(id) {
		case "":
			return invalid(endpoint, "empty id")
		case ".", "..":
			return invalid(endpoint, "id %q is a dot segment, not a Graph id", id)
		}
	}
	return nil
}
