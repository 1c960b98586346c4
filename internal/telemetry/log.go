package telemetry

import (
	"context"
	"encoding/hex"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// NewLogHandler returns groupflow's log handler: JSON lines on w at level
// and above, each carrying trace_id and span_id when logged with a context
// that holds a span, with secrets masked by RedactAttr.
//
//	logger := slog.New(telemetry.NewLogHandler(os.Stderr, slog.LevelInfo))
//	logger.InfoContext(ctx, "command done", slog.String("command_id", id))
func NewLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return NewTraceHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		ReplaceAttr: RedactAttr,
	}))
}

// TraceHandler adds trace_id and span_id (hex) from the record's context to
// every record before passing it on. Under a logger.WithGroup the two ids
// land inside that group, like any attribute added there.
type TraceHandler struct{ next slog.Handler }

var _ slog.Handler = (*TraceHandler)(nil)

// NewTraceHandler wraps next.
func NewTraceHandler(next slog.Handler) *TraceHandler { return &TraceHandler{next: next} }

// Enabled defers to the wrapped handler.
func (h *TraceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// Handle adds the ids, when ctx has a valid span context, and passes r on.
func (h *TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// Both ids in hex from one allocation: every traced line pays it.
		tid, sid := sc.TraceID(), sc.SpanID()
		var b [48]byte
		hex.Encode(b[:32], tid[:])
		hex.Encode(b[32:], sid[:])
		ids := string(b[:])
		r = r.Clone() // r's attrs may be shared with the caller's copy
		r.AddAttrs(slog.String("trace_id", ids[:32]), slog.String("span_id", ids[32:]))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs wraps the wrapped handler's WithAttrs.
func (h *TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &TraceHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup wraps the wrapped handler's WithGroup.
func (h *TraceHandler) WithGroup(name string) slog.Handler {
	return &TraceHandler{next: h.next.WithGroup(name)}
}

// RedactAttr is a slog.HandlerOptions.ReplaceAttr that masks secrets, a
// safety net under the rule that code never logs them: the value of any key
// IsSensitiveKey matches (token, secret, authorization, password, …) becomes
// "REDACTED", and credentials inside string and error values (a bearer
// token, access_token=… in a URL, "app_secret":"…" in a body) are masked by
// RedactString. Values that are structs are not inspected: log fields, not
// config structs.
func RedactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindGroup {
		return a // its members come through here one by one
	}
	if IsSensitiveKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); s != "" {
			if r := RedactString(s); r != s {
				return slog.String(a.Key, r)
			}
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, RedactString(err.Error()))
		}
	}
	return a
}
