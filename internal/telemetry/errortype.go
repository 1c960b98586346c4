package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The values of error.type on groupflow's spans (RecordError, and the
// Graph client's spans for a call that got no answer): classes of failure,
// few and stable, as the semantic conventions ask, rather than the Go type
// of the error, which said *errors.errorString or *fmt.wrapError for most
// and told nothing apart. An error in whose chain a type has an
// ErrorType() string method is of the class that method names (a
// *graph.Error: graph_transient, graph_throttled, graph_permanent,
// graph_partial or graph_credentials; a worker's handler panic: panic).
const (
	// ErrorTimeout: a deadline passed, the context's, a NATS request's or
	// the network's.
	ErrorTimeout = "timeout"
	// ErrorCancelled: the context was cancelled (a process shutting down).
	ErrorCancelled = "cancelled"
	// ErrorNoResponders: nothing answered on the subject, a stream or
	// service that is not there (or not yet).
	ErrorNoResponders = "no_responders"
	// ErrorConnection: the NATS or network connection failed or is closed.
	ErrorConnection = "connection"
	// ErrorJetStream: JetStream refused the request (its error code is in
	// the span's status description).
	ErrorJetStream = "jetstream_api"
	// ErrorOther is the conventions' fallback, for any other error.
	ErrorOther = "_OTHER"
)

// ErrorType is err's class for error.type: see ErrorTimeout and the
// others. nil is ErrorOther.
func ErrorType(err error) string {
	var typed interface{ ErrorType() string }
	if errors.As(err, &typed) {
		if t := typed.ErrorType(); t != "" {
			return t
		}
	}
	var (
		netErr net.Error
		apiErr *jetstream.APIError
	)
	isNet := errors.As(err, &netErr)
	switch {
	case err == nil:
		return ErrorOther
	case errors.Is(err, context.Canceled):
		return ErrorCancelled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		isNet && netErr.Timeout():
		return ErrorTimeout
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return ErrorNoResponders
	case errors.As(err, &apiErr):
		return ErrorJetStream
	case isNet,
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return ErrorConnection
	}
	return ErrorOther
}
