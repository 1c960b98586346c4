package jobs

import (
	"fmt"
	"testing"

	"github.com/groupflow/groupflow/internal/telemetry"
)

// A handler's panic is recorded on the command's span with error.type
// "panic", a class of its own, however it is wrapped.
func TestAPanicIsAClassOfError(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("handle: %w", &panicError{value: "boom"})
	if got := telemetry.ErrorType(err); got != "panic" {
		t.Errorf("error.type of a handler panic = %q, want panic", got)
	}
}
