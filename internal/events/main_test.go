package events

import (
	"testing"

	"go.uber.org/goleak"
)

// Some tests run an embedded NATS server; none may leave goroutines behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
