package events

import (
	"fmt"
	"strings"
)

// FieldError is one reason a command was refused.
type FieldError struct {
	// Field is the JSON path of the offending value ("params.invites[3].to"),
	// "subject" for disagreements with the NATS subject, or "" for the body as
	// a whole (not JSON, too large).
	Field string `json:"field"`
	// Message says what is wrong, for a person.
	Message string `json:"message"`
}

func (e FieldError) String() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// ValidationError lists every reason a command was refused, not just the
// first, so a caller can fix them all at once. Invalid commands are never
// retried: the worker answers them with a command.rejected event carrying
// these errors.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.String()
	}
	return "invalid command: " + strings.Join(msgs, "; ")
}

// errorList collects field errors while validating.
type errorList []FieldError

func (l *errorList) add(field, format string, args ...any) {
	*l = append(*l, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// MaxFieldErrors is the most errors a ValidationError lists; the last
// one then says how many more were found. A 1 MiB list of wrong items
// holds hundreds of thousands of them: listed whole, the command.rejected
// event was tens of megabytes, more than NATS takes, and was never
// published.
const MaxFieldErrors = 100

func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	if n := len(l) - MaxFieldErrors; n > 0 {
		l = append(l[:MaxFieldErrors-1:MaxFieldErrors-1], FieldError{
			Message: fmt.Sprintf("and %d more errors like those above", n+1)})
	}
	return &ValidationError{Errors: l}
}

// join builds a child path: join("params", "subject") == "params.subject".
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
