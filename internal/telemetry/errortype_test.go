package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type classified struct{ class string }

func (e classified) Error() string     { return "classified" }
func (e classified) ErrorType() string { return e.class }

func TestErrorType(t *testing.T) {
	t.Parallel()
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ErrorOther},
		{"a plain error", errors.New("boom"), ErrorOther},
		{"a wrapped plain error", fmt.Errorf("publish: %w", errors.New("boom")), ErrorOther},
		{"a class named by the error", fmt.Errorf("handle: %w", classified{"graph_throttled"}), "graph_throttled"},
		{"an empty class named by the error", classified{""}, ErrorOther},
		{"a cancelled context", fmt.Errorf("wait: %w", context.Canceled), ErrorCancelled},
		{"a context deadline", fmt.Errorf("publish: %w", context.DeadlineExceeded), ErrorTimeout},
		{"a NATS request timeout", nats.ErrTimeout, ErrorTimeout},
		{"an async publish without ack", jetstream.ErrAsyncPublishTimeout, ErrorTimeout},
		{"an I/O deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), ErrorTimeout},
		{"a network timeout", errTimeout{}, ErrorTimeout},
		{"no responders", nats.ErrNoResponders, ErrorNoResponders},
		{"no stream", jetstream.ErrNoStreamResponse, ErrorNoResponders},
		{"a JetStream API error", &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence"}, ErrorJetStream},
		{"a closed connection", fmt.Errorf("publish: %w", nats.ErrConnectionClosed), ErrorConnection},
		{"a reconnecting connection", nats.ErrConnectionReconnecting, ErrorConnection},
		{"a refused dial", dial, ErrorConnection},
		{"a connection cut short", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), ErrorConnection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ErrorType(tc.err); got != tc.want {
				t.Errorf("ErrorType(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
