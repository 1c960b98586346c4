package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestHealthNeedsTheTopologyAndALiveWorker(t *testing.T) {
	t.Parallel()

	t.Run("An empty server is unhealthy", func(t *testing.T) {
		t.Parallel()
		b := connect(t, natsembed.RunTest(t).ClientURL())
		r := b.groupctl(t, "health")
		wantCode(t, r, 1)
		wantContains(t, "stdout", r.stdout, "problem: stream GROUPS_COMMANDS is missing", "UNHEALTHY")
		wantContains(t, "stderr", r.stderr, "groupctl: unhealthy: stream GROUPS_COMMANDS is missing")
	})

	t.Run("Without workers it is unhealthy, with one healthy", func(t *testing.T) {
		t.Parallel()
		b := setupNATS(t)
		r := b.groupctl(t, "health")
		wantCode(t, r, 1)
		wantContains(t, "stdout", r.stdout, "GROUPS_COMMANDS/worker-commands", "GROUPS_WEBHOOKS/worker-webhooks", "workers alive: 0", "problem: no worker is alive")

		startLimiter(t, b, "worker-a")
		eventually(t, "worker-a's heartbeat", func() bool { return b.groupctl(t, "health").code == 0 })
		r = b.groupctl(t, "health")
		wantCode(t, r, 0)
		wantContains(t, "stdout", r.stdout, "workers alive: 1", "worker-a", "healthy")

		r = b.groupctl(t, "health", "--json")
		wantCode(t, r, 0)
		var rep healthReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if !rep.Healthy || len(rep.Streams) != 5 || len(rep.Workers) != 1 || len(rep.Consumers) != 2 || len(rep.Buckets) != 7 {
			t.Fatalf("report %+v, want healthy with 5 streams, 2 consumers, 7 buckets, 1 worker", rep)
		}
	})
}

func TestHealthCountsLagAndWarnsOfDeadLetters(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	startLimiter(t, b, "worker-b")
	// Two commands nobody executes: lag on the command consumer.
	for _, id := range []string{"lag-1", "lag-2"} {
		r := b.groupctl(t, "submit", "get_invite_link", "--phone", phone, "--group", "G1", "--id", id)
		wantCode(t, r, 0)
	}
	eventually(t, "worker-b's heartbeat", func() bool { return b.groupctl(t, "health").code == 0 })
	r := b.groupctl(t, "health", "--max-pending", "1")
	wantCode(t, r, 1)
	wantContains(t, "stdout", r.stdout, "problem: consumer worker-commands on GROUPS_COMMANDS lags by 2 messages")
	r = b.groupctl(t, "health", "--max-pending", "2")
	wantCode(t, r, 0)

	// A parked command is counted apart: it waits for its turn, not for a
	// worker, so it is no lag.
	m := nats.NewMsg(b.names.Parked(phone, "get_invite_link", 1))
	m.Data = []byte(`{}`)
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	m.Header.Set("Nats-Schedule-Target", b.names.Due(phone, "get_invite_link"))
	if _, err := b.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	r = b.groupctl(t, "health", "--max-pending", "2")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "(GROUPS_PARKED: 1 of them parked until their rate-limit turn)")
}
