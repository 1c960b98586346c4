package config

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAttemptsLogsOncePerReasonAndInterval(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	a := &attempts{
		log:     slog.New(slog.NewTextHandler(&buf, nil)),
		url:     "nats://u:xxxxx@h:4222",
		secrets: []string{"s3cret"},
		every:   10 * time.Second,
		now:     func() time.Time { return now },
	}
	refused := errors.New("dial tcp h:4222: connect: connection refused")
	for range 5 { // a second of nats.go's retries
		a.failed(refused)
		now = now.Add(250 * time.Millisecond)
	}
	if got := strings.Count(buf.String(), "cannot connect"); got != 1 {
		t.Fatalf("%d lines for 5 refusals in a second, want 1:\n%s", got, buf.String())
	}
	now = now.Add(10 * time.Second)
	a.failed(refused)
	if !strings.Contains(buf.String(), "failed_attempts=5") {
		t.Errorf("the reminder after 10 s does not count the 5 attempts since the first line:\n%s", buf.String())
	}
	a.failed(errors.New("auth failed for s3cret"))
	if !strings.Contains(buf.String(), `error="auth failed for xxxxx"`) {
		t.Errorf("a new reason is not logged at once, or shows the secret:\n%s", buf.String())
	}
	a.connected()
	if !strings.Contains(buf.String(), "connected to NATS") || !strings.Contains(buf.String(), "failed_attempts=7") {
		t.Errorf("the connection is not logged with its 7 failed attempts:\n%s", buf.String())
	}
}

// The credentials of a NATS_URL entry without a scheme ("user:pw@host",
// as nats.go accepts it) are among the secrets masked in connection logs.
func TestSecretsIncludeSchemelessCredentials(t *testing.T) {
	t.Parallel()
	n := NATS{URL: "nats://a:pw1@h1:4222,bob:pw2@h2:4222,t0ken@h3", Password: "pw3"}
	got := n.secrets()
	for _, want := range []string{"pw1", "pw2", "t0ken", "pw3"} {
		if !slices.Contains(got, want) {
			t.Errorf("secrets %q lack %q", got, want)
		}
	}
}
