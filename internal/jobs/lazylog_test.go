package jobs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLazyWith(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})).With(slog.String("worker_id", "w1"))
	log := lazyWith(base, slog.String("command_id", "c1"))
	log.Info("dropped")
	if buf.Len() != 0 {
		t.Fatalf("a record below the level was written: %q", buf.String())
	}
	log.With(slog.Int("n", 1)).Warn("kept")
	got := buf.String()
	for _, want := range []string{"worker_id=w1", "command_id=c1", "n=1", "msg=kept"} {
		if !strings.Contains(got, want) {
			t.Errorf("record %q lacks %q", got, want)
		}
	}
}
