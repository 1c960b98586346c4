package events_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
)

const migratePhone = "1555"

// legacyInstallation is a server holding a legacy command stream, with
// the rest of the topology as this version's Ensure leaves it, queued
// commands and a parked copy due in an hour.
type legacyInstallation struct {
	js      jetstream.JetStream
	cfg     events.TopologyConfig
	lastSeq uint64 // the command stream's last sequence before migrating
}

// queued are the commands legacyInstallation queues, in order: id and
// message id ("" for a publish without one).
var queued = []struct{ id, msgID string }{
	{"cmd-1", "cmd-1"}, {"cmd-2", "cmd-2"}, {"no-id", ""}, {"cmd-3", "cmd-3"},
}

func setupLegacy(t *testing.T) *legacyInstallation {
	t.Helper()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	// Settings of its own, which the migration keeps.
	cfg := events.TopologyConfig{MaxDeliver: 7, MaxAckPending: 64}
	cmds := legacyCommandStream(t, js, cfg)
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	n := cfg.Names
	for i, q := range queued {
		m := nats.NewMsg(n.Command(migratePhone, events.GetInviteLink))
		m.Data = []byte(`{"id":"` + q.id + `"}`)
		m.Header.Set("traceparent", fmt.Sprintf("00-%032d-%016d-01", i+1, i+1))
		var opts []jetstream.PublishOpt
		if q.msgID != "" {
			opts = append(opts, jetstream.WithMsgID(q.msgID))
		}
		if _, err := js.PublishMsg(ctx, m, opts...); err != nil {
			t.Fatal(err)
		}
	}
	park(t, js, n.LegacyParked(migratePhone, events.GetInviteLink, 2), n.Command(migratePhone, events.GetInviteLink),
		parkedAt, `{"id":"parked"}`, jetstream.WithMsgID(events.CopyMsgID("parked", "park", "2")))
	info, err := cmds.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &legacyInstallation{js: js, cfg: cfg, lastSeq: info.State.LastSeq}
}

// parkedAt is when the legacy installation's parked copy is due.
var parkedAt = time.Now().Add(time.Hour).Truncate(time.Millisecond)

// commands returns the command stream's messages, in order.
func (l *legacyInstallation) commands(ctx context.Context, t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	return streamMsgs(ctx, t, l.js, l.cfg.Names.CommandStream(), ">")
}

func streamMsgs(ctx context.Context, t *testing.T, js jetstream.JetStream, stream, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		seq = m.Sequence + 1
	}
}

// checkMigrated checks that the installation's command stream was made
// anew, without roll-ups, holding every queued command once, in order,
// with its headers and message id, and that the parked copy waits in the
// parked stream, due as before.
func (l *legacyInstallation) checkMigrated(ctx context.Context, t *testing.T) {
	t.Helper()
	n := l.cfg.Names
	s, err := l.js.Stream(ctx, n.CommandStream())
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.AllowMsgSchedules || c.AllowRollup || c.Sealed || c.DenyDelete || c.DenyPurge || c.Discard != jetstream.DiscardOld ||
		!slices.Equal(c.Subjects, []string{n.AllCommands()}) || len(c.Sources) != 1 || c.Sources[0].Name != n.ParkedStream() ||
		c.Storage != jetstream.FileStorage || c.Duplicates != 2*time.Minute {
		t.Errorf("command stream after migrating: schedules %v, roll-ups %v, sealed %v, deny delete %v, deny purge %v, discard %v, subjects %v, sources %+v, storage %v, duplicates %v; "+
			"want none of the first five, discard old, %s, sourcing %s, file, 2m",
			c.AllowMsgSchedules, c.AllowRollup, c.Sealed, c.DenyDelete, c.DenyPurge, c.Discard, c.Subjects, c.Sources, c.Storage, c.Duplicates, n.AllCommands(), n.ParkedStream())
	}
	cons, err := l.js.Consumer(ctx, n.CommandStream(), n.CommandConsumer())
	if err != nil {
		t.Fatalf("command consumer after migrating: %v", err)
	}
	if c := cons.CachedInfo().Config; c.MaxDeliver != 7 || c.MaxAckPending != 64 || c.FilterSubject != n.AllCommands() {
		t.Errorf("command consumer after migrating: max deliver %d, max ack pending %d, filter %s; want its own 7, 64, %s",
			c.MaxDeliver, c.MaxAckPending, c.FilterSubject, n.AllCommands())
	}
	msgs := l.commands(ctx, t)
	if len(msgs) != len(queued) {
		t.Fatalf("%d messages in the command stream after migrating, want the %d queued", len(msgs), len(queued))
	}
	for i, q := range queued {
		m := msgs[i]
		if string(m.Data) != `{"id":"`+q.id+`"}` || m.Subject != n.Command(migratePhone, events.GetInviteLink) {
			t.Errorf("message %d after migrating: %s %s, want command %s in its place", i, m.Subject, m.Data, q.id)
		}
		if m.Sequence <= l.lastSeq {
			t.Errorf("message %d after migrating has sequence %d, not past the old stream's last, %d", i, m.Sequence, l.lastSeq)
		}
		if got, want := m.Header.Get("traceparent"), fmt.Sprintf("00-%032d-%016d-01", i+1, i+1); got != want {
			t.Errorf("message %d after migrating: traceparent %q, want %q", i, got, want)
		}
		want := q.msgID
		if want == "" {
			want = "/migrate/"
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(got, want) {
			t.Errorf("message %d after migrating: Nats-Msg-Id %q, want %q", i, got, want)
		}
	}
	parked := streamMsgs(ctx, t, l.js, n.ParkedStream(), n.AllParked())
	if len(parked) != 1 {
		t.Fatalf("%d parked copies after migrating, want 1", len(parked))
	}
	p := parked[0]
	if p.Subject != n.Parked(migratePhone, events.GetInviteLink, 2) || string(p.Data) != `{"id":"parked"}` ||
		p.Header.Get("Nats-Schedule") != "@at "+parkedAt.UTC().Format(time.RFC3339Nano) ||
		p.Header.Get("Nats-Schedule-Target") != n.Due(migratePhone, events.GetInviteLink) ||
		p.Header.Get(jetstream.MsgIDHeader) != events.CopyMsgID("parked", "park", "2") {
		t.Errorf("parked copy after migrating: %s %s %v; want it on %s, due as before on %s, with its message id",
			p.Subject, p.Data, p.Header, n.Parked(migratePhone, events.GetInviteLink, 2), n.Due(migratePhone, events.GetInviteLink))
	}
	if _, err := l.js.Stream(ctx, n.MigrationStream()); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("stream %s after migrating: %v, want it gone", n.MigrationStream(), err)
	}
}

// A legacy command stream allows roll-ups, which NATS never turns off: a
// publish with Nats-Rollup: all purges every queued command. The migration
// recreates it without them, keeping every queued command with its
// headers and message id, in order, and moves the parked copies to the
// parked stream; afterwards the roll-up is refused and purges nothing,
// and a second run finds nothing to do.
func TestMigrateRecreatesALegacyCommandStreamKeepingEveryMessage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names
	var steps []string
	res, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{Progress: func(s string) { steps = append(steps, s) }})
	if err != nil {
		t.Fatalf("migrate: %v (steps: %q)", err, steps)
	}
	if res.AlreadyDone || res.Commands != len(queued) || res.Parked != 1 {
		t.Errorf("migrate: %+v, want %d commands put back and 1 parked copy moved", res, len(queued))
	}
	l.checkMigrated(ctx, t)

	for _, rollup := range []string{"all", "sub"} {
		m := nats.NewMsg(n.Command(migratePhone, events.GetInviteLink))
		m.Header.Set("Nats-Rollup", rollup)
		if _, err := l.js.PublishMsg(ctx, m); err == nil {
			t.Errorf("a publish with Nats-Rollup: %s was taken after migrating, want it refused", rollup)
		}
	}
	if got := len(l.commands(ctx, t)); got != len(queued) {
		t.Errorf("%d messages in the command stream after the roll-ups, want the %d queued", got, len(queued))
	}
	// The message ids are known to the new stream's duplicate window: a
	// command re-sent now is stored once.
	ack, err := l.js.Publish(ctx, n.Command(migratePhone, events.GetInviteLink), []byte(`{"id":"cmd-1"}`), jetstream.WithMsgID("cmd-1"))
	if err != nil || !ack.Duplicate {
		t.Errorf("cmd-1 re-sent after migrating: %+v, %v; want a duplicate", ack, err)
	}

	again, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{})
	if err != nil || !again.AlreadyDone {
		t.Errorf("second migrate: %+v, %v; want nothing done", again, err)
	}
	l.checkMigrated(ctx, t)
}

// Before the migration, a roll-up on the legacy command stream purges it:
// what the migration is for.
func TestALegacyCommandStreamIsPurgedByARollUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	m := nats.NewMsg(l.cfg.Names.Command(migratePhone, events.GetInviteLink))
	m.Header.Set("Nats-Rollup", "all")
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("a roll-up on the legacy command stream: %v, want it taken", err)
	}
	if got := len(l.commands(ctx, t)); got != 1 {
		t.Errorf("%d messages in the legacy command stream after a roll-up, want 1 (the roll-up)", got)
	}
}

// A migration interrupted at any step (the operator's Ctrl-C, a lost
// connection) carries on when run again, and every message ends up where
// it belongs once: copied again from where the copy stopped, put back
// without a second copy.
func TestMigrateCarriesOnAfterAnInterruption(t *testing.T) {
	t.Parallel()
	for step := range 6 {
		t.Run(fmt.Sprintf("Interrupted after step %d", step+1), func(t *testing.T) {
			t.Parallel()
			l := setupLegacy(t)
			ctx := context.Background()
			interrupted, cancel := context.WithCancel(ctx)
			var steps []string
			_, err := events.MigrateCommandStream(interrupted, l.js, l.cfg, events.MigrateOptions{Progress: func(s string) {
				steps = append(steps, s)
				if len(steps) == step+1 {
					cancel()
				}
			}})
			cancel()
			if step < 5 && err == nil {
				t.Fatalf("migrate interrupted after %q: no error", steps[step])
			}
			if step == 1 {
				// As if the copy had stopped two messages short.
				hold, err := l.js.Stream(ctx, l.cfg.Names.MigrationStream())
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range streamMsgs(ctx, t, l.js, l.cfg.Names.MigrationStream(), ">")[len(queued)-1:] {
					if err := hold.DeleteMsg(ctx, m.Sequence); err != nil {
						t.Fatal(err)
					}
				}
			}
			res, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{})
			if err != nil {
				t.Fatalf("migrate again after %q: %v", steps[step], err)
			}
			if step == 5 && !res.AlreadyDone {
				t.Errorf("migrate again after the last step: %+v, want nothing done", res)
			}
			l.checkMigrated(ctx, t)
		})
	}
}

// Workers consuming commands would acknowledge deliveries to a stream
// that is gone and see them again from the copy: the migration refuses,
// having changed nothing, until they stop, unless forced.
func TestMigrateRefusesWhileWorkersConsume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names

	t.Run("A worker heartbeating", func(t *testing.T) {
		workers, err := l.js.KeyValue(ctx, n.WorkersBucket())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := workers.Put(ctx, "worker-a", []byte(`{"worker":"worker-a"}`)); err != nil {
			t.Fatal(err)
		}
		_, err = events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{})
		if !errors.Is(err, events.ErrWorkersActive) || !strings.Contains(err.Error(), "1 worker(s) heartbeating") {
			t.Errorf("migrate with a worker heartbeating: %v, want ErrWorkersActive naming it", err)
		}
		if err := workers.Delete(ctx, "worker-a"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("A worker pulling", func(t *testing.T) {
		nc, err := nats.Connect(l.js.Conn().ConnectedUrl())
		if err != nil {
			t.Fatal(err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := js.Consumer(ctx, n.CommandStream(), n.CommandConsumer())
		if err != nil {
			t.Fatal(err)
		}
		// It holds what it is given: deliveries under way.
		cc, err := cons.Consume(func(jetstream.Msg) {})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the worker's deliveries", func() bool {
			info, err := cons.Info(ctx)
			return err == nil && info.NumAckPending > 0
		})
		_, err = events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{})
		if !errors.Is(err, events.ErrWorkersActive) || !strings.Contains(err.Error(), "--force") {
			t.Errorf("migrate with a worker pulling: %v, want ErrWorkersActive saying --force", err)
		}
		s, err := l.js.Stream(ctx, n.CommandStream())
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.Sealed || !events.LegacyCommandStream(&c) {
			t.Errorf("command stream after a refused migration: sealed %v, legacy %v; want it untouched", c.Sealed, events.LegacyCommandStream(&c))
		}
		cc.Stop()
		nc.Close() // the worker exits: its pull requests and deliveries lapse
	})

	t.Run("Forced", func(t *testing.T) {
		res, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{Force: true})
		if err != nil || res.Commands != len(queued) {
			t.Fatalf("forced migrate: %+v, %v", res, err)
		}
		l.checkMigrated(ctx, t)
	})
}

// A command parked in the legacy stream and due while the migration runs
// comes back exactly once: fired there before the seal, it is copied as a
// command; after, it is parked again and fires from the parked stream.
func TestAParkedCommandDueDuringTheMigrationComesBackOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names
	park(t, l.js, n.LegacyParked(migratePhone, events.GetInviteLink, 100), n.Command(migratePhone, events.GetInviteLink),
		time.Now().Add(300*time.Millisecond), `{"id":"soon"}`)
	res, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrate: %+v", res)
	soon := func() (inCommands, elsewhere int) {
		for _, m := range l.commands(ctx, t) {
			if string(m.Data) == `{"id":"soon"}` {
				inCommands++
			}
		}
		for _, m := range streamMsgs(ctx, t, l.js, n.ParkedStream(), ">") {
			if string(m.Data) == `{"id":"soon"}` {
				elsewhere++
			}
		}
		return inCommands, elsewhere
	}
	waitFor(t, "the parked command back in the command stream", func() bool {
		in, elsewhere := soon()
		return in > 0 && elsewhere == 0
	})
	if in, _ := soon(); in != 1 {
		t.Errorf("the parked command is %d times in the command stream, want once", in)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 20 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A process that starts while the migration has the command stream sealed,
// or gone with its messages in the migration stream (interrupted between
// deleting and recreating it), must not make or change the stream: made
// now, it would number its messages from 1, the sequences the parked
// copies' subjects name, and a worker parking a new command at such a
// sequence would replace a parked copy (a schedule rolls up its subject).
// Ensure refuses, naming groupctl migrate, which then finishes as if alone.
func TestEnsureLeavesTheCommandStreamToAMigrationUnderWay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names
	refusal := func(when string) {
		t.Helper()
		if err := events.Ensure(ctx, l.js, l.cfg); err == nil || !strings.Contains(err.Error(), "groupctl migrate") {
			t.Errorf("Ensure while the migration %s: %v, want a refusal naming groupctl migrate", when, err)
		}
	}
	interrupted, cancel := context.WithCancel(ctx)
	_, err := events.MigrateCommandStream(interrupted, l.js, l.cfg, events.MigrateOptions{Progress: func(s string) {
		switch {
		case strings.HasPrefix(s, "sealed "):
			refusal("has the stream sealed")
		case strings.HasPrefix(s, "deleted "+n.CommandStream()):
			cancel()
		}
	}})
	cancel()
	if err == nil {
		t.Fatal("migrate interrupted after deleting the command stream: no error")
	}
	refusal("was interrupted with the stream gone")
	if _, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{}); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	l.checkMigrated(ctx, t)
	// A worker parks each queued command at its sequence: the parked copy
	// from before the migration is still there beside them.
	for _, m := range l.commands(ctx, t) {
		park(t, l.js, n.Parked(migratePhone, events.GetInviteLink, m.Sequence), n.Due(migratePhone, events.GetInviteLink),
			parkedAt, string(m.Data))
	}
	var bodies []string
	for _, m := range streamMsgs(ctx, t, l.js, n.ParkedStream(), n.AllParked()) {
		bodies = append(bodies, string(m.Data))
	}
	if !slices.Contains(bodies, `{"id":"parked"}`) || len(bodies) != len(queued)+1 {
		t.Errorf("parked copies after parking the queued commands: %q, want the one from before the migration and one per command", bodies)
	}
	if err := events.Ensure(ctx, l.js, l.cfg); err != nil {
		t.Errorf("Ensure after the migration: %v", err)
	}
}

// A process of an earlier version started after the migration (README,
// Upgrades, step 1, not followed) turns schedules back on and drops the
// command stream's source: parked copies that fall due meanwhile wait in
// the parked stream. Migrating again brings them back. The new stream's
// source starts from the parked stream's first due copy, not from the
// time of its own last message, which the server picks for a source it
// sets up without a position of its own on a stream whose first sequence
// is past 1 (as the migration makes it): every copy due before was passed
// over and stayed in the parked stream for good.
func TestMigratingAgainBringsBackCopiesDueWhileAnEarlierVersionRan(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names
	if _, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.js.UpdateStream(ctx, legacyStreamConfig(n)); err != nil {
		t.Fatalf("an earlier version's Ensure: %v", err)
	}
	park(t, l.js, n.Parked(migratePhone, events.GetInviteLink, 100), n.Due(migratePhone, events.GetInviteLink),
		time.Now(), `{"id":"due-meanwhile"}`)
	due := func(stream, subject string) bool {
		for _, m := range streamMsgs(ctx, t, l.js, stream, subject) {
			if string(m.Data) == `{"id":"due-meanwhile"}` {
				return true
			}
		}
		return false
	}
	waitFor(t, "parked copy due in the parked stream", func() bool { return due(n.ParkedStream(), n.AllDue()) })
	// More commands come in before the migration.
	if _, err := l.js.Publish(ctx, n.Command(migratePhone, events.GetInviteLink), []byte(`{"id":"later"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{}); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	waitFor(t, "copy due meanwhile back in the command stream", func() bool { return due(n.CommandStream(), n.AllCommands()) })
}

// Messages as large as the server takes are kept too: the migration's own
// bookkeeping goes in the holding stream's subjects, and a header it must
// set aside is renamed no longer, so no held copy outgrows its message (a
// copy that did was refused, with the command stream sealed for good: no
// message can be removed from a sealed stream, and no run could go on).
// A command without a message id that has no room for the migration's
// is put back without one.
func TestMigrateKeepsMessagesAsLargeAsTheServerTakes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTestWith(t, natsembed.Options{MaxPayload: 64 << 10}).ClientURL())
	cfg := events.TopologyConfig{}
	n := cfg.Names
	legacyCommandStream(t, js, cfg)
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	subject := n.Command(migratePhone, events.GetInviteLink)
	type large struct {
		subject string
		headers map[string]string
	}
	traceparent := "00-00000000000000000000000000000001-0000000000000001-01"
	msgs := []large{
		{subject, map[string]string{jetstream.MsgIDHeader: "large-1", "traceparent": traceparent}},
		{subject, nil},
		{subject, map[string]string{"traceparent": traceparent}},
		{n.LegacyParked(migratePhone, events.GetInviteLink, 4), map[string]string{
			jetstream.MsgIDHeader: events.CopyMsgID("large-4", "park", "4"), "traceparent": traceparent,
			"Nats-Schedule": "@at " + parkedAt.UTC().Format(time.RFC3339Nano), "Nats-Schedule-Target": subject}},
	}
	bodies := map[string]large{}
	for i, l := range msgs {
		m := nats.NewMsg(l.subject)
		for k, v := range l.headers {
			m.Header.Set(k, v)
		}
		fillTo(t, js.Conn(), m, fmt.Sprintf("large-%d", i+1))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish a message of max_payload: %v", err)
		}
		bodies[string(m.Data)] = l
	}
	res, err := events.MigrateCommandStream(ctx, js, cfg, events.MigrateOptions{})
	if err != nil {
		t.Fatalf("migrate with messages of max_payload: %v", err)
	}
	if res.Commands != 3 || res.Parked != 1 {
		t.Errorf("migrate: %+v, want 3 commands put back and 1 parked copy moved", res)
	}
	back := append(streamMsgs(ctx, t, js, n.CommandStream(), ">"), streamMsgs(ctx, t, js, n.ParkedStream(), n.AllParked())...)
	if len(back) != len(msgs) {
		t.Fatalf("%d messages after migrating, want the %d", len(back), len(msgs))
	}
	for _, m := range back {
		l, ok := bodies[string(m.Data)]
		if !ok {
			t.Errorf("message on %s after migrating: a body unlike any sent (%d bytes)", m.Subject, len(m.Data))
			continue
		}
		for _, k := range []string{"traceparent", jetstream.MsgIDHeader} {
			if want := l.headers[k]; want != "" && m.Header.Get(k) != want {
				t.Errorf("message %s after migrating: %s %q, want %q", m.Subject, k, m.Header.Get(k), want)
			}
		}
	}
}

// fillTo gives m a body, starting with name, that makes it exactly as
// large as nc's server takes (its headers included).
func fillTo(t *testing.T, nc *nats.Conn, m *nats.Msg, name string) {
	t.Helper()
	size := 0
	if len(m.Header) > 0 {
		size = len("NATS/1.0\r\n\r\n")
		for k, vs := range m.Header {
			for _, v := range vs {
				size += len(k) + len(": \r\n") + len(v)
			}
		}
	}
	m.Data = append([]byte(name+" "), bytes.Repeat([]byte("x"), int(nc.MaxPayload())-size-len(name)-1)...)
	// One byte more would be refused.
	probe := &nats.Msg{Subject: "probe", Header: m.Header, Data: append(m.Data, 'x')}
	if err := nc.PublishMsg(probe); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("a message one byte larger than %s's: %v, want it refused", name, err)
	}
}

// Two queued messages of one id (sent apart by more than the stream's
// duplicate window, so both were kept) are both put back: the holding
// stream, which keeps message ids as they are, holds the second under a
// renamed one.
func TestMigrateKeepsTwoMessagesOfOneID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js := jetStreamAt(t, natsembed.RunTest(t).ClientURL())
	cfg := events.TopologyConfig{}
	n := cfg.Names
	legacyCommandStream(t, js, cfg)
	if err := events.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	sc := legacyStreamConfig(n)
	sc.Duplicates = 100 * time.Millisecond
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	subject := n.Command(migratePhone, events.GetInviteLink)
	if _, err := js.Publish(ctx, subject, []byte(`{"id":"first"}`), jetstream.WithMsgID("same")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second message of the id stored", func() bool {
		ack, err := js.Publish(ctx, subject, []byte(`{"id":"second"}`), jetstream.WithMsgID("same"))
		return err == nil && !ack.Duplicate
	})
	if _, err := events.MigrateCommandStream(ctx, js, cfg, events.MigrateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range streamMsgs(ctx, t, js, n.CommandStream(), ">") {
		got = append(got, string(m.Data)+" "+m.Header.Get(jetstream.MsgIDHeader))
	}
	if len(got) != 2 || !strings.HasPrefix(got[0], `{"id":"first"} same`) || !strings.HasPrefix(got[1], `{"id":"second"} `) {
		t.Errorf("after migrating: %q, want both messages of id same, in order", got)
	}
}

// The names the holding stream renames a message's own headers to are the
// migration's: a command that came with headers of those names (anyone
// allowed groups.cmd.> may set any) made it take the command for a parked
// copy it could not park again, and no run could get past it. They are
// not kept, nor taken for a message id. Nor is a schedule a caller put on
// a command subject (the legacy stream takes one) a parked copy: it goes
// back as a command, without its schedule.
func TestMigrateTakesNoCommandsHeadersForItsOwn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := setupLegacy(t)
	n := l.cfg.Names
	park(t, l.js, n.Command(migratePhone, events.DeleteGroup), n.Command(migratePhone, events.CreateGroup), parkedAt, `{"id":"scheduled"}`)
	m := nats.NewMsg(n.Command(migratePhone, events.GetInviteLink))
	m.Data = []byte(`{"id":"posing"}`)
	m.Header.Set("Held-Schedule", "@at "+parkedAt.UTC().Format(time.RFC3339Nano))
	m.Header.Set("Held-Target", n.Command(migratePhone, events.GetInviteLink))
	m.Header.Set("Held-Msg-Id", "cmd-1")
	m.Header.Set("traceparent", "00-00000000000000000000000000000009-0000000000000009-01")
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if _, err := events.MigrateCommandStream(ctx, l.js, l.cfg, events.MigrateOptions{}); err != nil {
		t.Fatalf("migrate with a command carrying the migration's header names: %v", err)
	}
	var found, scheduled bool
	for _, c := range l.commands(ctx, t) {
		if string(c.Data) == `{"id":"scheduled"}` {
			scheduled = c.Subject == n.Command(migratePhone, events.DeleteGroup) && c.Header.Get("Nats-Schedule") == ""
		}
		if string(c.Data) != `{"id":"posing"}` {
			continue
		}
		found = true
		if c.Header.Get("traceparent") != m.Header.Get("traceparent") || !strings.HasPrefix(c.Header.Get(jetstream.MsgIDHeader), "/migrate/") ||
			c.Header.Get("Held-Schedule") != "" || c.Header.Get("Held-Target") != "" || c.Header.Get("Held-Msg-Id") != "" {
			t.Errorf("the command after migrating: headers %v; want its traceparent, the migration's message id and none of its Held-*", c.Header)
		}
	}
	if !found {
		t.Errorf("the command carrying the migration's header names is not in the command stream after migrating")
	}
	if !scheduled {
		t.Errorf("the caller's schedule on %s is not back there as a command after migrating", n.Command(migratePhone, events.DeleteGroup))
	}
}
