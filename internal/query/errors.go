package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Error codes of a failed query, in the Nats-Service-Error-Code header and
// the body's code. They follow HTTP so callers can reuse their mapping.
const (
	CodeBadRequest   = 400 // the request is malformed or invalid
	CodeNotFound     = 404 // unknown group (Graph says so), a group that is not the number's, or an unknown command id
	CodeThrottled    = 429 // retry after RetryAfterMS
	CodeInternal     = 500 // groupflow failed (NATS, ledger)
	CodeGraphRefused = 502 // Graph refused the read for another reason (see GraphCode)
	CodeUnavailable  = 503 // Graph unreachable or failing, Graph refusing groupflow's access token, or the worker is stopping
)

// RetryAfterHeader carries, on 429 replies (and 503 when Graph suggested a
// delay), the whole seconds to wait before retrying, like HTTP's.
const RetryAfterHeader = "Retry-After"

// CacheHeader is set on successful replies of cached endpoints: "hit" when
// the answer came from the cache, "miss" when from Graph.
const CacheHeader = "Groupflow-Cache"

// Error is the JSON body of a failed query (schema query.error.json).
// The same code and message are in micro's error headers.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	// ValidationErrors list every problem of a 400 request.
	ValidationErrors []events.FieldError `json:"validation_errors,omitempty"`
	// RetryAfterMS is how long to wait before retrying (429, some 503).
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// GraphCode and GraphSubcode are Meta's error code when Graph refused
	// the read (fact sheet §5), FBTraceID its trace id for Meta support.
	GraphCode    int    `json:"graph_code,omitempty"`
	GraphSubcode int    `json:"graph_subcode,omitempty"`
	FBTraceID    string `json:"fbtrace_id,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("query: %d %s", e.Code, e.Message) }

// RetryAfter is RetryAfterMS as a duration.
func (e *Error) RetryAfter() time.Duration { return time.Duration(e.RetryAfterMS) * time.Millisecond }

// ReplyError returns the *Error a reply message carries, or nil when it is
// a successful reply. It reads the micro headers first, so an error reply
// whose body is not ours still reports its code and description.
func ReplyError(msg *nats.Msg) *Error {
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	e := &Error{}
	if err := json.Unmarshal(msg.Data, e); err != nil || e.Code == 0 {
		n, _ := strconv.Atoi(code)
		e = &Error{Code: n, Message: msg.Header.Get(micro.ErrorHeader)}
	}
	return e
}

// badRequest lists at most events.MaxFieldErrors errors, the last saying
// how many more there are, as a command's rejection does: a request naming
// 100,000 unknown fields made a reply of 20 MB, more than NATS takes, and
// cost the worker minutes to build.
func badRequest(errs ...events.FieldError) *Error {
	if n := len(errs) - events.MaxFieldErrors; n > 0 {
		errs = append(errs[:events.MaxFieldErrors-1:events.MaxFieldErrors-1],
			events.FieldError{Message: fmt.Sprintf("and %d more errors like those above", n+1)})
	}
	var msg strings.Builder
	msg.WriteString("invalid request")
	for i, fe := range errs {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		msg.WriteString(sep + fe.String())
	}
	return &Error{Code: CodeBadRequest, Message: msg.String(), ValidationErrors: errs}
}

func throttled(scope string, wait time.Duration, graphCode int) *Error {
	s := retrySeconds(wait)
	msg := fmt.Sprintf("throttled (%s): retry after %ds", scope, s)
	if graphCode != 0 {
		msg = fmt.Sprintf("Graph API throttled the read (code %d, %s): retry after %ds", graphCode, scope, s)
	}
	return &Error{Code: CodeThrottled, Message: msg, RetryAfterMS: max(wait.Milliseconds(), 1), GraphCode: graphCode}
}

// retrySeconds rounds up, so that a caller waiting that long is not early.
func retrySeconds(d time.Duration) int64 {
	return max(int64(math.Ceil(d.Seconds())), 1)
}

// headers are micro's error headers for e, plus Retry-After.
func (e *Error) headers() nats.Header {
	h := nats.Header{
		micro.ErrorHeader:     []string{e.Message},
		micro.ErrorCodeHeader: []string{strconv.Itoa(e.Code)},
	}
	if e.RetryAfterMS > 0 {
		h.Set(RetryAfterHeader, strconv.FormatInt(retrySeconds(e.RetryAfter()), 10))
	}
	return h
}

// errStopping fails the requests still running when Stop gives up waiting.
var errStopping = errors.New("query: service stopping")

// asError maps what went wrong with a request to the error its caller gets.
// Graph errors keep their classification (graph.Class), so a read fails
// the way a command would: throttled → 429, transient → 503.
func asError(err error, now time.Time) *Error {
	var qe *Error
	if errors.As(err, &qe) {
		return qe
	}
	var te *ratelimit.ThrottledError
	if errors.As(err, &te) {
		return throttled(te.Scope, te.Until.Sub(now), 0)
	}
	var ge *graph.Error
	if errors.As(err, &ge) {
		return graphError(ge)
	}
	switch {
	case errors.Is(err, jobs.ErrGroupNotOwned):
		return &Error{Code: CodeNotFound, Message: "the group is not one of this phone number's groups (another number's, deleted, or no group): " +
			"Graph was not asked about it"}
	case errors.Is(err, jobs.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: "command id not in the ledger for this phone number: a command appears there once a worker takes it. " +
			"If it was accepted (published to JetStream, or 202 from the ingest), it is waiting in the command stream (a backlog, or no worker running): ask again later. " +
			"Otherwise it was never received, is another number's, or is older than the ledger's 7 days"}
	case errors.Is(err, graph.ErrInvalidArgument):
		return &Error{Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, errStopping), errors.Is(err, ratelimit.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Message: "worker stopping or request timed out: retry"}
	case graph.ClassOf(err) == graph.ClassTransient:
		// Transport errors and timeouts of the Graph call.
		return &Error{Code: CodeUnavailable, Message: "Graph API unavailable: retry"}
	}
	return &Error{Code: CodeInternal, Message: "internal error"}
}

func graphError(ge *graph.Error) *Error {
	e := &Error{GraphCode: ge.Code, GraphSubcode: ge.Subcode, FBTraceID: ge.FBTraceID}
	switch {
	case ge.Class == graph.ClassThrottled:
		t := throttled(string(ge.Scope()), max(ge.RetryAfter, time.Second), ge.Code)
		t.GraphSubcode, t.FBTraceID = e.GraphSubcode, e.FBTraceID
		return t
	case ge.Code == graph.CodeGroupUnknown,
		ge.Code == graph.CodeInvalidParameter && ge.Subcode == 33: // "object does not exist"
		e.Code, e.Message = CodeNotFound, fmt.Sprintf("unknown group, or the number is not a member (Graph code %d)", ge.Code)
	case ge.Code == graph.CodeInvalidCursor:
		e.Code, e.Message = CodeBadRequest, "invalid or expired cursor: restart from the first page (Graph code 131059)"
	case ge.Code == graph.CodeInvalidParameter, ge.Code == graph.CodeParameterMissing, ge.Code == graph.CodeParameterInvalid:
		e.Code, e.Message = CodeBadRequest, fmt.Sprintf("Graph refused a parameter (code %d): %s", ge.Code, ge.Details)
	case ge.Class == graph.ClassCredentials:
		// The worker's token, not the request: the read goes through once
		// the operators replace the token, as the commands waiting do.
		e.Code, e.Message = CodeUnavailable, fmt.Sprintf("Graph refused groupflow's access token (code %d): its operators must replace it; retry later", ge.Code)
	case ge.Class == graph.ClassTransient:
		e.Code, e.Message = CodeUnavailable, fmt.Sprintf("Graph API unavailable (code %d, HTTP %d): retry", ge.Code, ge.HTTPStatus)
		if ge.RetryAfter > 0 {
			e.RetryAfterMS = ge.RetryAfter.Milliseconds()
		}
	default:
		e.Code, e.Message = CodeGraphRefused, fmt.Sprintf("Graph API refused the read (code %d, HTTP %d)", ge.Code, ge.HTTPStatus)
	}
	return e
}
