package sim

import (
	"errors"
	"fmt"
	"net/http"
)

// Errors returned by the simulated-people methods (Join, Leave, …) and, as
// JSON, by the /_sim/ admin API. They describe what a real user would see in
// the WhatsApp app; they are never Graph API errors.
var (
	ErrInvalidLink        = errors.New("sim: invite link is not valid")
	ErrRemoved            = errors.New("sim: user was removed from the group and cannot rejoin by link")
	ErrAlreadyMember      = errors.New("sim: user is already a participant")
	ErrGroupFull          = errors.New("sim: group has reached its participant limit")
	ErrUnknownGroup       = errors.New("sim: group does not exist")
	ErrNotMember          = errors.New("sim: user is not a participant")
	ErrUnknownJoinRequest = errors.New("sim: join request does not exist or is no longer pending")
	ErrSuspended          = errors.New("sim: group is suspended")
	ErrInvalidWAID        = errors.New("sim: wa_id must be 8-15 digits")

	errBadMode  = errors.New(`sim: undeliverable mode must be "", "sync" or "async"`)
	errBadPhone = errors.New("sim: phone number id must be digits")
)

// graphError is one synchronous Graph API error answer. The JSON shape is
// Meta's: {"error":{message,type,code,error_subcode,error_data,fbtrace_id}}.
type graphError struct {
	HTTPStatus int
	Code       int
	Subcode    int
	Message    string // without the "(#code) " prefix
	Details    string // error_data.details
	UserTitle  string
	UserMsg    string
	Transient  bool
	Header     http.Header // e.g. Retry-After, X-Business-Use-Case-Usage
}

// codeInfo is the catalogue entry for one Graph error code: the HTTP status
// Meta answers with, its message and (for WhatsApp codes) the title.
type codeInfo struct {
	status  int
	message string
	title   string
}

// codes follows fact sheet §5. Titles are what Meta puts in item-level
// errors and error_user_title.
var codes = map[int]codeInfo{
	1:      {http.StatusBadRequest, "An unknown error occurred", ""},
	2:      {http.StatusServiceUnavailable, "Service temporarily unavailable", ""},
	3:      {http.StatusInternalServerError, "Application does not have the capability to make this API call.", ""},
	4:      {http.StatusTooManyRequests, "Application request limit reached", ""},
	100:    {http.StatusBadRequest, "Invalid parameter", ""},
	190:    {http.StatusUnauthorized, "Invalid OAuth access token - Cannot parse access token", ""},
	80007:  {http.StatusTooManyRequests, "Rate limit issues", "Rate limit hit"},
	130429: {http.StatusTooManyRequests, "Rate limit hit", "Cloud API message throughput has been reached."},
	131000: {http.StatusInternalServerError, "Something went wrong", "Something went wrong"},
	131008: {http.StatusBadRequest, "Required parameter is missing", "Required parameter is missing"},
	131009: {http.StatusBadRequest, "Parameter value is not valid", "Parameter value is not valid"},
	131020: {http.StatusBadRequest, "Cannot send messages to single member groups.", "Bad Group"},
	131026: {http.StatusBadRequest, "Message Undeliverable.", "Message Undeliverable."},
	131041: {http.StatusBadRequest, "The group was not found, either because it doesn't exist or you are not a member.", "Group unknown"},
	131047: {http.StatusBadRequest, "Re-engagement message", "Re-engagement message"},
	131056: {http.StatusTooManyRequests, "(Business Account, Consumer Account) pair rate limit hit", "Pair rate limit hit"},
	131059: {http.StatusBadRequest, "The pagination cursor is invalid or has expired.", "Invalid cursor"},
	131201: {http.StatusPartialContent, "Not all participant-level operations in the request succeeded.", "Request partially succeeded"},
	131202: {http.StatusBadRequest, "The request contains duplicate participants.", "Duplicate participants"},
	131203: {http.StatusBadRequest, "Recipient has not accepted our new Terms of Service and Privacy Policy.", "Unable to add participant to group"},
	131204: {http.StatusBadRequest, "The group has reached its maximum number of participants.", "Participant limit exceeded"},
	131207: {http.StatusForbidden, "The group is suspended.", "Group suspended"},
	131208: {http.StatusTooManyRequests, "Group operation failed because there were too many group operations from this phone number in a short period.", "Group Rate Limit Hit"},
	131209: {http.StatusBadRequest, "Width and height of the image must be equal.", "Invalid Group Profile Picture Aspect Ratio"},
	131210: {http.StatusBadRequest, "The image must be at least 192x192 pixels.", "Group Profile Picture Too Small"},
	131211: {http.StatusBadRequest, "Reached the limit for the maximum number of groups that can be created for this number.", "Group create limit reached"},
	131212: {http.StatusBadRequest, "Participant is not a part of the group.", "Participant is not a part of the group."},
	131213: {http.StatusBadRequest, "The join request does not exist.", "Join request not found"},
	131214: {http.StatusBadRequest, "Group creation is temporarily disabled for this phone number.", "Group creation disabled"},
	131215: {http.StatusBadRequest, "This phone number is not eligible to use the Groups API.", "Not eligible for Groups API"},
	132000: {http.StatusBadRequest, "Number of parameters does not match the expected number of params", "Number of parameters does not match"},
	132001: {http.StatusNotFound, "Template name does not exist in the translation", "Template name does not exist in the translation"},
}

// errCode builds the error for a catalogued code; details goes to
// error_data.details (the part Meta advises clients to read).
func errCode(code int, details string) *graphError {
	info, ok := codes[code]
	if !ok {
		info = codeInfo{http.StatusBadRequest, "Unknown error", ""}
	}
	if details == "" {
		details = info.message
	}
	e := &graphError{
		HTTPStatus: info.status,
		Code:       code,
		Message:    info.message,
		Details:    details,
		Transient:  code == 2 || code == 131016,
	}
	if code >= 130000 {
		e.UserTitle = info.title
		e.UserMsg = details
	}
	return e
}

// errParam is Graph's generic "(#100) Invalid parameter" with a reason.
func errParam(format string, args ...any) *graphError {
	return errCode(100, fmt.Sprintf(format, args...))
}

// errMissing is 131008 for a required parameter that is absent.
func errMissing(name string) *graphError {
	return errCode(131008, fmt.Sprintf("The parameter %s is required.", name))
}

// errInvalid is 131009 for a parameter whose value is not acceptable.
func errInvalid(format string, args ...any) *graphError {
	return errCode(131009, fmt.Sprintf(format, args...))
}

// errUnsupported is what Graph answers for an unknown node or edge.
func errUnsupported(method, id string) *graphError {
	e := errCode(100, "")
	e.Subcode = 33
	verb := "get"
	switch method {
	case http.MethodPost:
		verb = "post"
	case http.MethodDelete:
		verb = "delete"
	}
	e.Message = fmt.Sprintf("Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api", verb, id)
	e.Details = e.Message
	return e
}

// itemError is the error shape inside webhook items and per-item results:
// {"code","message","title","error_data":{"details"}} (+ "href" on statuses).
type itemError struct {
	Code      int           `json:"code"`
	Title     string        `json:"title"`
	Message   string        `json:"message"`
	ErrorData itemErrorData `json:"error_data"`
	Href      string        `json:"href,omitempty"`
}

type itemErrorData struct {
	Details string `json:"details"`
}

func newItemError(code int, details string) itemError {
	info := codes[code]
	if details == "" {
		details = info.message
	}
	return itemError{Code: code, Title: info.title, Message: info.message, ErrorData: itemErrorData{Details: details}}
}

// graphErrorBody is the JSON body of a synchronous error.
type graphErrorBody struct {
	Error graphErrorJSON `json:"error"`
}

type graphErrorJSON struct {
	Message     string         `json:"message"`
	Type        string         `json:"type"`
	Code        int            `json:"code"`
	Subcode     int            `json:"error_subcode"`
	ErrorData   graphErrorData `json:"error_data"`
	UserTitle   string         `json:"error_user_title,omitempty"`
	UserMsg     string         `json:"error_user_msg,omitempty"`
	IsTransient bool           `json:"is_transient,omitempty"`
	FBTraceID   string         `json:"fbtrace_id"`
}

type graphErrorData struct {
	MessagingProduct string `json:"messaging_product"`
	Details          string `json:"details"`
}

func (e *graphError) body(fbtrace string) graphErrorBody {
	return graphErrorBody{Error: graphErrorJSON{
		Message:     fmt.Sprintf("(#%d) %s", e.Code, e.Message),
		Type:        "OAuthException",
		Code:        e.Code,
		Subcode:     e.Subcode,
		ErrorData:   graphErrorData{MessagingProduct: "whatsapp", Details: e.Details},
		UserTitle:   e.UserTitle,
		UserMsg:     e.UserMsg,
		IsTransient: e.Transient,
		FBTraceID:   fbtrace,
	}}
}
