package jobs

import (
	"context"
	"log/slog"
	"sync"
)

// lazyWith is logger.With(attrs...) for a logger made per command: the
// JSON handler encodes With's attributes at once, which is wasted on the
// common command that logs nothing at the configured level. Here they are
// added on the first record that is logged.
func lazyWith(logger *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(&lazyHandler{next: logger.Handler(), attrs: attrs})
}

type lazyHandler struct {
	next  slog.Handler
	attrs []slog.Attr
	once  sync.Once
	with  slog.Handler
}

var _ slog.Handler = (*lazyHandler)(nil)

func (h *lazyHandler) handler() slog.Handler {
	h.once.Do(func() { h.with = h.next.WithAttrs(h.attrs) })
	return h.with
}

func (h *lazyHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.handler().Handle(ctx, r)
}

func (h *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return h.handler().WithAttrs(attrs) }

func (h *lazyHandler) WithGroup(name string) slog.Handler { return h.handler().WithGroup(name) }
