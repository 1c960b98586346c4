package graph

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrInvalidArgument reports a call the client refused to send because an
// argument was empty or out of range. ClassOf returns ClassPermanent for it.
var ErrInvalidArgument = errors.New("graph: invalid argument")

// ErrMalformedResponse reports a 2xx answer the client could not read. The
// request was executed, so IsAmbiguous is true and ClassOf is ClassTransient.
var ErrMalformedResponse = errors.New("graph: malformed response")

// Class says what a caller may do after an error.
type Class int

const (
	// ClassNone is the class of a nil error.
	ClassNone Class = iota
	// ClassTransient means retry with backoff (RetryAfter, when set, is a floor).
	ClassTransient
	// ClassThrottled means a rate limit was hit: wait RetryAfter, then retry.
	// Scope says what the limit covers.
	ClassThrottled
	// ClassPermanent means retrying the same request will fail the same way.
	ClassPermanent
	// ClassPartial means some items succeeded and some failed; read the
	// per-item outcomes instead of retrying the whole request.
	ClassPartial
	// ClassCredentials means Graph refused the caller's access token
	// (expired, revoked, wrong: code 190, or HTTP 401). Nothing is wrong
	// with the request: it will succeed once the token is replaced.
	ClassCredentials
)

func (c Class) String() string {
	switch c {
	case ClassNone:
		return "none"
	case ClassTransient:
		return "transient"
	case ClassThrottled:
		return "throttled"
	case ClassPermanent:
		return "permanent"
	case ClassPartial:
		return "partial"
	case ClassCredentials:
		return "credentials"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Scope is what a throttle covers, so that a caller pauses the right thing:
// one phone number, one recipient, the whole app, the whole business
// account, or (for the spam limit) the campaign sending from the number.
type Scope string

// The scopes of a throttle; ScopeNone is the scope of any other error.
const (
	ScopeNone      Scope = ""
	ScopeNumber    Scope = "number"    // 130429 throughput, 131208 group ops
	ScopeRecipient Scope = "recipient" // 131056 pair rate, 131049 withheld
	ScopeApp       Scope = "app"       // 4 app call-count limit
	ScopeAccount   Scope = "account"   // 80007 WABA limit
	ScopeSpam      Scope = "spam"      // 131048 quality restriction: pause the campaign
)

// Graph error codes callers branch on. The full classification lives in
// codeTable.
const (
	CodeAuth                  = 0
	CodeUnknown               = 1
	CodeServiceUnavailable    = 2
	CodeCapability            = 3
	CodeAppRateLimit          = 4
	CodePermissionDenied      = 10
	CodeInvalidParameter      = 100
	CodeAccessTokenExpired    = 190
	CodePolicyBlocked         = 368
	CodeAccountRateLimit      = 80007
	CodeThroughput            = 130429
	CodeSendUnknown           = 131000
	CodeAccessDenied          = 131005
	CodeParameterMissing      = 131008
	CodeParameterInvalid      = 131009
	CodeSendUnavailable       = 131016
	CodeGroupOnlyMember       = 131020
	CodeUndeliverable         = 131026
	CodeAccountLocked         = 131031
	CodeGroupUnknown          = 131041
	CodeOutsideWindow         = 131047
	CodeSpamRateLimit         = 131048
	CodeWithheld              = 131049
	CodePairRateLimit         = 131056
	CodeInvalidCursor         = 131059
	CodePartialSuccess        = 131201
	CodeDuplicateParticipant  = 131202
	CodeTermsNotAccepted      = 131203
	CodeParticipantLimit      = 131204
	CodeGroupSuspended        = 131207
	CodeGroupRateLimit        = 131208
	CodePictureNotSquare      = 131209
	CodePictureTooSmall       = 131210
	CodeGroupCreateLimit      = 131211
	CodeParticipantNotInGroup = 131212
	CodeJoinRequestUnknown    = 131213
	CodeGroupCreateDisabled   = 131214
	CodeNumberNotEligible     = 131215
)

// codeInfo is what the fact sheet (§5.2, §5.3) says about one code. delay is
// the wait used for a throttle when no usage header suggests one; Meta
// publishes none, so these are conservative guesses tied to the limit's
// window (1 s for mps, ≈ 6 s for the pair rate, …).
type codeInfo struct {
	class Class
	scope Scope
	delay time.Duration
}

var codeTable = map[int]codeInfo{
	// §5.2 groups-specific.
	CodeGroupOnlyMember:       {class: ClassPermanent}, // until someone joins
	CodeGroupUnknown:          {class: ClassPermanent},
	CodeInvalidCursor:         {class: ClassPermanent}, // for that cursor: restart paging
	CodePartialSuccess:        {class: ClassPartial},
	CodeDuplicateParticipant:  {class: ClassPermanent},
	CodeTermsNotAccepted:      {class: ClassPermanent}, // for that user
	CodeParticipantLimit:      {class: ClassPermanent},
	CodeGroupSuspended:        {class: ClassPermanent}, // until group_suspend_cleared
	CodeGroupRateLimit:        {class: ClassThrottled, scope: ScopeNumber, delay: 10 * time.Second},
	CodePictureNotSquare:      {class: ClassPermanent},
	CodePictureTooSmall:       {class: ClassPermanent},
	CodeGroupCreateLimit:      {class: ClassPermanent},
	CodeParticipantNotInGroup: {class: ClassPermanent},
	CodeJoinRequestUnknown:    {class: ClassPermanent},
	CodeGroupCreateDisabled:   {class: ClassPermanent}, // lifts after days: beyond any retry budget
	CodeNumberNotEligible:     {class: ClassPermanent},

	// §5.3 general Cloud API codes. Code 0 (AuthException) is absent on
	// purpose: 0 is also what a missing code decodes to, so it is classified
	// by status, and AuthException comes with 401 → credentials.
	CodeUnknown:            {class: ClassTransient}, // "maybe transient": the caller's retry budget limits it
	CodeServiceUnavailable: {class: ClassTransient},
	CodeCapability:         {class: ClassPermanent},
	CodeAppRateLimit:       {class: ClassThrottled, scope: ScopeApp, delay: time.Minute},
	CodePermissionDenied:   {class: ClassPermanent},
	CodeInvalidParameter:   {class: ClassPermanent},
	CodeAccessTokenExpired: {class: ClassCredentials}, // "permanent until re-auth": the token's fault, not the request's
	CodePolicyBlocked:      {class: ClassPermanent},
	CodeAccountRateLimit:   {class: ClassThrottled, scope: ScopeAccount, delay: time.Minute},
	CodeThroughput:         {class: ClassThrottled, scope: ScopeNumber, delay: time.Second},
	CodeSendUnknown:        {class: ClassTransient},
	CodeAccessDenied:       {class: ClassPermanent},
	CodeParameterMissing:   {class: ClassPermanent},
	CodeParameterInvalid:   {class: ClassPermanent},
	CodeSendUnavailable:    {class: ClassTransient},
	CodeUndeliverable:      {class: ClassPermanent},
	CodeAccountLocked:      {class: ClassPermanent},
	CodeOutsideWindow:      {class: ClassPermanent},
	// The spam limit is not short-term retryable: throttled with a long
	// wait, scoped so that the caller pauses the campaign.
	CodeSpamRateLimit: {class: ClassThrottled, scope: ScopeSpam, delay: time.Hour},
	// "Do not retry within 24 h" — for that recipient only.
	CodeWithheld:      {class: ClassThrottled, scope: ScopeRecipient, delay: 24 * time.Hour},
	CodePairRateLimit: {class: ClassThrottled, scope: ScopeRecipient, delay: 6 * time.Second},
}

// defaultThrottleDelay is the wait for a throttle with an unknown code and no
// usage header (say a bare HTTP 429).
const defaultThrottleDelay = 5 * time.Second

func lookupCode(code int) (codeInfo, bool) {
	if code == CodeAuth {
		return codeInfo{}, false
	}
	if info, ok := codeTable[code]; ok {
		return info, true
	}
	if code >= 200 && code <= 299 { // permission family
		return codeInfo{class: ClassPermanent}, true
	}
	return codeInfo{}, false
}

// Classify returns the retry class of a Graph answer from its error code and
// HTTP status. A known code decides (Meta sends throttles with HTTP 400 as
// well as 429); an unknown one falls back to the status: 429 throttled, 5xx
// transient, 206 partial, other 4xx permanent. Messages are never read.
func Classify(code, httpStatus int) Class {
	if info, ok := lookupCode(code); ok {
		return info.class
	}
	return classifyStatus(httpStatus)
}

// WebhookError is an error a webhook reports for an asynchronous request
// (a group event's errors[]), classified by its code as Graph's answer with
// that code would be: Class, and RetryAfter for a throttle. An unknown
// code is permanent: there is no HTTP status to fall back on.
func WebhookError(endpoint string, code int, message string) *Error {
	e := &Error{Endpoint: endpoint, Code: code, Message: message, Class: ClassPermanent}
	if info, ok := lookupCode(code); ok {
		e.Class = info.class
		if e.Class == ClassThrottled {
			e.RetryAfter = cmp.Or(info.delay, defaultThrottleDelay)
		}
	}
	return e
}

func classifyStatus(httpStatus int) Class {
	switch {
	case httpStatus == http.StatusTooManyRequests:
		return ClassThrottled
	case httpStatus >= 500:
		return ClassTransient
	case httpStatus == http.StatusPartialContent:
		return ClassPartial
	case httpStatus == http.StatusUnauthorized:
		return ClassCredentials
	case httpStatus >= 300:
		return ClassPermanent
	}
	return ClassNone
}

// Error is a failed Graph call: the fields of Graph's error object, the HTTP
// status, and what the caller may do about it (Class, RetryAfter, Scope).
type Error struct {
	// Endpoint is the stable name of the call, such as "create_group".
	Endpoint   string
	HTTPStatus int
	Code       int
	Subcode    int
	Type       string
	Message    string
	// Details is error_data.details, which Meta advises branching on
	// together with Code.
	Details     string
	UserTitle   string
	UserMessage string
	FBTraceID   string
	IsTransient bool
	Class       Class
	// RetryAfter is how long to wait before retrying: from Retry-After and
	// the usage headers, else a per-code default for throttles.
	RetryAfter time.Duration

	scope     Scope
	ambiguous bool
	cause     error
}

// ErrorType is the error's class, "graph_" and Class ("graph_throttled"):
// the error.type of the spans that record it, few values where the Go
// type would say only *graph.Error (Code says which error it was).
func (e *Error) ErrorType() string { return "graph_" + e.Class.String() }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("graph: ")
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
		b.WriteString(": ")
	}
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, "http %d: ", e.HTTPStatus)
	}
	fmt.Fprintf(&b, "code %d", e.Code)
	if e.Subcode != 0 {
		fmt.Fprintf(&b, "/%d", e.Subcode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Details != "" {
		b.WriteString(": ")
		b.WriteString(e.Details)
	}
	fmt.Fprintf(&b, " (%s", e.Class)
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	if e.FBTraceID != "" {
		b.WriteString(", fbtrace_id ")
		b.WriteString(e.FBTraceID)
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns the cause of a client-side failure (ErrMalformedResponse),
// nil for errors Graph reported.
func (e *Error) Unwrap() error { return e.cause }

// Scope returns what a throttle covers (ScopeNone for other classes).
func (e *Error) Scope() Scope {
	if e.Class != ClassThrottled {
		return ScopeNone
	}
	if e.scope != ScopeNone {
		return e.scope
	}
	if info, ok := lookupCode(e.Code); ok && info.scope != ScopeNone {
		return info.scope
	}
	// A throttle with no known code: the narrowest pause that is still safe.
	return ScopeNumber
}

// ClassOf returns the retry class of any error returned by this package:
// the *Error's Class; ClassPermanent for ErrInvalidArgument; ClassTransient
// for transport failures, timeouts and anything else; ClassNone for nil.
func ClassOf(err error) Class {
	if err == nil {
		return ClassNone
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Class
	}
	if errors.Is(err, ErrInvalidArgument) {
		return ClassPermanent
	}
	return ClassTransient
}

// IsAmbiguous reports whether a failed request may nonetheless have been
// executed by Meta, so that a non-idempotent call (create group, reset
// invite link, send) must not be blindly repeated: a timeout or a broken
// connection after the request was written, a 5xx answer, or an unreadable
// 2xx answer. Errors raised before anything was sent are not ambiguous, nor
// is a 5xx answer whose code is a refusal (a permanent class, such as the
// capability error 3 that Graph sends with HTTP 500).
func IsAmbiguous(err error) bool {
	if err == nil {
		return false
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.ambiguous || ge.HTTPStatus >= 500 && ge.Class != ClassPermanent
	}
	var te *transportError
	if errors.As(err, &te) {
		return te.ambiguous
	}
	return false
}

// transportError is a failure to exchange a request and its answer with
// Graph (dial, TLS, timeout, reset). ambiguous records whether the request
// had been fully written when it happened.
type transportError struct {
	endpoint  string
	ambiguous bool
	err       error
}

func (e *transportError) Error() string { return "graph: " + e.endpoint + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// wireError is Graph's error object with every type drift tolerated.
type wireError struct {
	Message     string        `json:"message"`
	Type        string        `json:"type"`
	Code        flexInt       `json:"code"`
	Subcode     flexInt       `json:"error_subcode"`
	ErrorData   wireErrorData `json:"error_data"`
	UserTitle   string        `json:"error_user_title"`
	UserMessage string        `json:"error_user_msg"`
	IsTransient flexBool      `json:"is_transient"`
	FBTraceID   string        `json:"fbtrace_id"`
}

// wireErrorData is error_data: an object, or (in older Graph answers) that
// object JSON-encoded into a string, or a bare details string.
type wireErrorData struct {
	Details string
}

func (d *wireErrorData) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		var obj struct {
			Details string `json:"details"`
		}
		if json.Unmarshal([]byte(s), &obj) == nil {
			d.Details = obj.Details
		} else {
			d.Details = s
		}
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return nil // null or something Meta never documented: ignore
	}
	var obj struct {
		Details flexString `json:"details"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return err
	}
	d.Details = string(obj.Details)
	return nil
}

// wireEnvelope is an answer that may hold an error object. "error" is
// sometimes a bare string (OAuth-style answers).
type wireEnvelope struct {
	Error json.RawMessage `json:"error"`
}

// decodeError builds the *Error for a non-2xx answer (or a 2xx answer
// carrying an error object). It never fails: an unreadable body still gives
// an Error classified by HTTP status.
func decodeError(endpoint string, status int, h http.Header, body []byte) *Error {
	e := &Error{Endpoint: endpoint, HTTPStatus: status}
	known := false
	var env wireEnvelope
	if json.Unmarshal(body, &env) == nil && len(env.Error) > 0 && string(env.Error) != "null" {
		var w wireError
		switch raw := bytes.TrimSpace(env.Error); {
		case raw[0] == '{' && json.Unmarshal(raw, &w) == nil:
			known = true
		case raw[0] == '{':
			// Some field broke decoding: keep what a lenient pass yields.
			known = decodeLenient(raw, &w)
		case raw[0] == '"':
			_ = json.Unmarshal(raw, &w.Message)
			known = true
		}
		e.Code, e.Subcode = int(w.Code), int(w.Subcode)
		e.Type, e.Message, e.Details = w.Type, w.Message, w.ErrorData.Details
		e.UserTitle, e.UserMessage, e.FBTraceID = w.UserTitle, w.UserMessage, w.FBTraceID
		e.IsTransient = bool(w.IsTransient)
	}
	if !known {
		e.Message = describeBody(status, body)
	}

	e.classify(h)
	return e
}

// classify sets Class, scope and RetryAfter from Code, HTTPStatus,
// IsTransient and the usage headers.
func (e *Error) classify(h http.Header) {
	info, codeKnown := lookupCode(e.Code)
	if codeKnown {
		e.Class, e.scope = info.class, info.scope
	} else {
		e.Class = classifyStatus(e.HTTPStatus)
		u := parseUsage(h)
		switch {
		case e.Class == ClassThrottled || u.accountExhausted || u.appExhausted:
			// A bare 429, or an unknown code while a usage header says a
			// budget is spent: a throttle.
			e.Class = ClassThrottled
			if u.accountExhausted {
				e.scope = ScopeAccount
			} else if u.appExhausted {
				e.scope = ScopeApp
			}
		case e.IsTransient && e.Class != ClassPartial:
			e.Class = ClassTransient
		case e.Class == ClassNone:
			// An error object inside a 2xx answer.
			e.Class = ClassPermanent
		}
	}
	hint := SuggestedDelay(h)
	switch e.Class {
	case ClassThrottled:
		e.RetryAfter = cmp.Or(hint, info.delay, defaultThrottleDelay)
	case ClassTransient:
		e.RetryAfter = hint
	}
}

// decodeLenient decodes each field of an error object on its own, so that
// one field of an unexpected type does not lose the code.
func decodeLenient(raw []byte, w *wireError) bool {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return false
	}
	set := func(key string, v any) {
		if r, ok := fields[key]; ok {
			_ = json.Unmarshal(r, v)
		}
	}
	set("message", &w.Message)
	set("type", &w.Type)
	set("code", &w.Code)
	set("error_subcode", &w.Subcode)
	set("error_data", &w.ErrorData)
	set("error_user_title", &w.UserTitle)
	set("error_user_msg", &w.UserMessage)
	set("is_transient", &w.IsTransient)
	set("fbtrace_id", &w.FBTraceID)
	return true
}

// describeBody summarises an answer without a Graph error object: the status
// text and the start of the body (proxies answer 502 with HTML), printable
// characters only.
func describeBody(status int, body []byte) string {
	msg := http.StatusText(status)
	if msg == "" {
		msg = "status " + strconv.Itoa(status)
	}
	const maxLen = 120
	snippet := strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, string(bytes.TrimSpace(body)))
	snippet = strings.Join(strings.Fields(snippet), " ")
	if r := []rune(snippet); len(r) > maxLen {
		snippet = string(r[:maxLen]) + "…"
	}
	if snippet == "" {
		return msg
	}
	return msg + ": " + snippet
}
