package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
)

// setupLegacy is a server whose command stream was made when parked
// commands waited in it (schedules, roll-ups, the parked subjects), with
// the rest of the topology as this version makes it.
func setupLegacy(t *testing.T) bundle {
	t.Helper()
	ctx := context.Background()
	b := connect(t, natsembed.RunTest(t).ClientURL())
	cfg := events.TopologyConfig{Names: b.names, MaxDeliver: 3, Storage: jetstream.MemoryStorage}
	n := b.names
	if _, err := b.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: n.CommandStream(), Subjects: []string{n.AllCommands(), n.AllLegacyParked()},
		AllowMsgSchedules: true, AllowRollup: true,
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.MemoryStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	if err := events.Ensure(ctx, b.js, cfg); err != nil {
		t.Fatal(err)
	}
	return b
}

// groupctl migrate, on an installation from before GROUPS_PARKED: health
// warns of the roll-ups; migrate refuses while a worker heartbeats, and
// with --force keeps the queued commands and moves the parked copy; a
// roll-up is then refused, health no longer warns, and migrate again has
// nothing to do.
func TestMigrateTakesRollUpsOffTheCommandStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupLegacy(t)
	n := b.names
	for _, id := range []string{"queued-1", "queued-2"} {
		wantCode(t, b.groupctl(t, "submit", "get_invite_link", "--phone", phone, "--group", "G1", "--id", id), 0)
	}
	m := nats.NewMsg(n.LegacyParked(phone, events.GetInviteLink, 1))
	m.Data = []byte(`{}`)
	m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	m.Header.Set("Nats-Schedule-Target", n.Command(phone, events.GetInviteLink))
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	startLimiter(t, b, "worker-a")
	eventually(t, "worker-a's heartbeat", func() bool { return b.groupctl(t, "health").code == 0 })
	r := b.groupctl(t, "health")
	wantContains(t, "stdout", r.stdout, "warning: GROUPS_COMMANDS allows roll-ups", "groupctl migrate",
		"(GROUPS_COMMANDS: 1 of them parked until their rate-limit turn)")

	r = b.groupctl(t, "migrate")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "groupctl: migrate: workers are consuming commands (1 worker(s) heartbeating in groups_workers): stop every worker first, or pass --force")

	r = b.groupctl(t, "migrate", "--force")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "sealed GROUPS_COMMANDS",
		"migrated: GROUPS_COMMANDS allows no roll-ups; 2 queued message(s) kept, 1 parked copy(ies) moved to GROUPS_PARKED. Start the workers.")

	roll := nats.NewMsg(n.Command(phone, events.GetInviteLink))
	roll.Header.Set("Nats-Rollup", "all")
	if _, err := b.js.PublishMsg(ctx, roll); err == nil {
		t.Error("a publish with Nats-Rollup: all was taken after migrate, want it refused")
	}
	r = b.groupctl(t, "health", "--max-pending", "2")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "(GROUPS_PARKED: 1 of them parked until their rate-limit turn)")
	if strings.Contains(r.stdout, "allows roll-ups") {
		t.Errorf("health still warns of roll-ups after migrate:\n%s", r.stdout)
	}

	r = b.groupctl(t, "migrate")
	wantCode(t, r, 0)
	wantContains(t, "stdout", r.stdout, "GROUPS_COMMANDS allows no roll-ups: nothing to migrate")
}
