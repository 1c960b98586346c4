package events

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrWorkersActive is MigrateCommandStream's refusal to run while workers
// consume commands: the deliveries under way would be acknowledged to a
// stream that no longer exists and their commands run again from the copy.
var ErrWorkersActive = errors.New("workers are consuming commands")

// MigrateOptions tunes MigrateCommandStream.
type MigrateOptions struct {
	// Force migrates even while workers are live or the command consumer
	// has deliveries under way; their commands may then be delivered
	// again (the ledger still executes each once).
	Force bool
	// Progress, if set, is told of each step as it is done, in a line.
	Progress func(step string)
}

// MigrateResult says what MigrateCommandStream did.
type MigrateResult struct {
	// AlreadyDone: the command stream had no roll-ups and no migration was
	// under way, so nothing was changed.
	AlreadyDone bool
	// Commands is how many queued messages the new command stream got
	// back; Parked, how many parked copies went to the parked stream, due
	// at their old time.
	Commands, Parked int
}

// MigrateCommandStream recreates a legacy command stream (see
// LegacyCommandStream) as Ensure now makes it, without message schedules
// and roll-ups, keeping every message:
//
//  1. The command stream is sealed: no publish is taken any more, and its
//     schedules cannot fire.
//  2. Its messages are copied, in order, to a holding stream
//     (Names.MigrationStream), with their headers and Nats-Msg-Id.
//  3. The command stream is deleted and created anew, with its settings,
//     its consumer's, and sequences going on from the old last one (the
//     parked subjects and copy ids name sequences).
//  4. The held messages are put back, in order: commands to their subjects
//     with their headers and Nats-Msg-Id (one that had none gets
//     CopyMsgID("", "migrate", <old sequence>), so that a repeat stores it
//     once), parked copies to the parked stream, due at the same time.
//
// Each message leaves the holding stream once put back, and each step
// finds where the last run stopped: run again after an interruption, it
// carries on; run on a command stream without roll-ups and no migration
// under way, it does nothing (MigrateResult.AlreadyDone). Unless
// opts.Force, it refuses with ErrWorkersActive while workers heartbeat or
// the command consumer has pull requests or deliveries under way. Callers'
// publishes are refused from step 1 until step 3 is done (the ingest
// answers 503): the ingest may keep running. Every process must run a
// version that knows the parked stream first: an older one's Ensure would
// turn schedules, and so roll-ups, back on.
func MigrateCommandStream(ctx context.Context, js jetstream.JetStream, cfg TopologyConfig, opts MigrateOptions) (MigrateResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	m := &migration{js: js, cfg: cfg, n: cfg.Names, opts: opts}
	return m.run(ctx)
}

type migration struct {
	js   jetstream.JetStream
	cfg  TopologyConfig
	n    Names
	opts MigrateOptions
	res  MigrateResult
}

// A message in the holding stream is on heldSubject: where it came from
// is in its subject, not in headers, and its own headers the holding
// stream would refuse (a parked copy's schedule) or act on (a message id
// another message held already has) are renamed, never to longer names:
// a message as large as the server takes is held all the same.
const (
	heldMsgID    = "Held-Msg-Id"   // Nats-Msg-Id, when another held message has it
	heldSchedule = "Held-Schedule" // Nats-Schedule
	heldTarget   = "Held-Target"   // Nats-Schedule-Target
)

// Metadata of the holding stream: the new command stream's configuration
// and its consumer's, as JSON, decided before the old one was deleted.
const (
	metaCommandStream   = "groupflow_command_stream"
	metaCommandConsumer = "groupflow_command_consumer"
)

func (m *migration) progress(format string, args ...any) {
	if m.opts.Progress != nil {
		m.opts.Progress(fmt.Sprintf(format, args...))
	}
}

// holdSubjects are the holding stream's subjects.
func (m *migration) holdSubjects() string { return m.n.prefix() + ".migration.commands.>" }

// heldSubject is the holding stream's subject for message seq of the
// command stream, on subject there.
func (m *migration) heldSubject(seq uint64, subject string) string {
	return m.n.prefix() + ".migration.commands." + strconv.FormatUint(seq, 10) + "." + subject
}

// heldFrom parses a heldSubject: the message's sequence and subject in
// the command stream.
func (m *migration) heldFrom(msg *jetstream.RawStreamMsg) (seq uint64, subject string, err error) {
	rest, ok := strings.CutPrefix(msg.Subject, m.n.prefix()+".migration.commands.")
	digits, subject, ok2 := strings.Cut(rest, ".")
	if seq, err = strconv.ParseUint(digits, 10, 64); !ok || !ok2 || err != nil {
		return 0, "", fmt.Errorf("migrate: held message %d is on %s, not a subject of %s", msg.Sequence, msg.Subject, m.holdSubjects())
	}
	return seq, subject, nil
}

func (m *migration) run(ctx context.Context) (MigrateResult, error) {
	cmds, err := existing(ctx, m.js, m.n.CommandStream())
	if err != nil {
		return m.res, fmt.Errorf("migrate: command stream: %w", err)
	}
	hold, err := m.js.Stream(ctx, m.n.MigrationStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		hold = nil
	} else if err != nil {
		return m.res, fmt.Errorf("migrate: stream %s: %w", m.n.MigrationStream(), err)
	}
	if hold == nil && !LegacyCommandStream(cmds) {
		if cmds == nil {
			return m.res, fmt.Errorf("migrate: there is no stream %s (a worker or the ingest creates it at start-up)", m.n.CommandStream())
		}
		m.res.AlreadyDone = true
		return m.res, nil
	}
	if !m.opts.Force {
		busy, err := m.busy(ctx)
		if err != nil {
			return m.res, fmt.Errorf("migrate: %w", err)
		}
		if busy != "" {
			return m.res, fmt.Errorf("migrate: %w (%s): stop every worker first, or pass --force", ErrWorkersActive, busy)
		}
	}
	if err := m.ensureParked(ctx); err != nil {
		return m.res, err
	}
	if LegacyCommandStream(cmds) {
		if hold, err = m.drain(ctx, cmds, hold); err != nil {
			return m.res, err
		}
	}
	if err := m.recreate(ctx, hold); err != nil {
		return m.res, err
	}
	if err := m.restore(ctx, hold); err != nil {
		return m.res, err
	}
	if err := m.js.DeleteStream(ctx, m.n.MigrationStream()); err != nil {
		return m.res, fmt.Errorf("migrate: delete %s: %w", m.n.MigrationStream(), err)
	}
	m.progress("deleted %s", m.n.MigrationStream())
	return m.res, nil
}

// busy says what shows workers at work: heartbeats, or pull requests and
// deliveries under way on the command consumer; "" when nothing does.
func (m *migration) busy(ctx context.Context) (string, error) {
	var why []string
	kv, err := m.js.KeyValue(ctx, m.n.WorkersBucket())
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		return "", fmt.Errorf("workers bucket: %w", err)
	default:
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return "", fmt.Errorf("workers bucket: %w", err)
		}
		live := 0
		for range keys.Keys() {
			live++
		}
		if live > 0 {
			why = append(why, fmt.Sprintf("%d worker(s) heartbeating in %s", live, m.n.WorkersBucket()))
		}
	}
	cons, err := m.js.Consumer(ctx, m.n.CommandStream(), m.n.CommandConsumer())
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return "", fmt.Errorf("command consumer: %w", err)
	default:
		if ci := cons.CachedInfo(); ci.NumWaiting > 0 || ci.NumAckPending > 0 {
			why = append(why, fmt.Sprintf("consumer %s has %d pull request(s) waiting and %d delivery(ies) unacknowledged",
				m.n.CommandConsumer(), ci.NumWaiting, ci.NumAckPending))
		}
	}
	return strings.Join(why, "; "), nil
}

// ensureParked creates the parked stream if no process of this version
// has yet: the parked copies go there.
func (m *migration) ensureParked(ctx context.Context) error {
	for _, sc := range m.cfg.Streams() {
		if sc.Name != m.n.ParkedStream() {
			continue
		}
		if _, err := m.js.CreateStream(ctx, sc); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("migrate: create %s: %w", sc.Name, err)
		}
	}
	return nil
}

// drain seals the legacy command stream old, copies its messages to the
// holding stream (made now unless hold is an earlier run's) and deletes
// it.
func (m *migration) drain(ctx context.Context, old *jetstream.StreamConfig, hold jetstream.Stream) (jetstream.Stream, error) {
	cmds, err := m.js.Stream(ctx, old.Name)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", old.Name, err)
	}
	if !old.Sealed { // an earlier run may have sealed it
		sealed := *old
		sealed.Sealed, sealed.Metadata = true, userMetadata(old.Metadata)
		if cmds, err = m.js.UpdateStream(ctx, sealed); err != nil {
			return nil, fmt.Errorf("migrate: seal %s: %w", old.Name, err)
		}
	}
	m.progress("sealed %s: it takes no more messages, and its parked copies wait", old.Name)
	info, err := cmds.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s: %w", old.Name, err)
	}
	if hold == nil {
		if hold, err = m.createHold(ctx, old, info.State.LastSeq); err != nil {
			return nil, err
		}
	}
	if err := m.copy(ctx, cmds, hold, info.State); err != nil {
		return nil, err
	}
	if err := m.js.DeleteStream(ctx, old.Name); err != nil {
		return nil, fmt.Errorf("migrate: delete %s: %w", old.Name, err)
	}
	m.progress("deleted %s", old.Name)
	return hold, nil
}

// createHold makes the holding stream, with the new command stream's
// configuration (Ensure's, with old's storage, replicas, placement and
// duplicate window, and sequences from lastSeq+1 on; old may be sealed
// already, which changed its other settings) and its consumer's in its
// metadata.
func (m *migration) createHold(ctx context.Context, old *jetstream.StreamConfig, lastSeq uint64) (jetstream.Stream, error) {
	var want jetstream.StreamConfig
	for _, sc := range m.cfg.Streams() {
		if sc.Name == m.n.CommandStream() {
			want = sc
		}
	}
	want.Storage, want.Replicas, want.Placement, want.Duplicates = old.Storage, old.Replicas, old.Placement, old.Duplicates
	want.FirstSeq = lastSeq + 1
	consumer := m.cfg.Consumers()[m.n.CommandStream()]
	if c, err := m.js.Consumer(ctx, old.Name, m.n.CommandConsumer()); err == nil {
		consumer = c.CachedInfo().Config
		consumer.Metadata = userMetadata(consumer.Metadata)
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("migrate: command consumer: %w", err)
	}
	streamJSON, err := json.Marshal(want)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	consumerJSON, err := json.Marshal(consumer)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	hold, err := m.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        m.n.MigrationStream(),
		Description: "the command stream's messages while groupctl migrate recreates it",
		Subjects:    []string{m.holdSubjects()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     old.Storage,
		Replicas:    old.Replicas,
		Metadata:    map[string]string{metaCommandStream: string(streamJSON), metaCommandConsumer: string(consumerJSON)},
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: create %s: %w", m.n.MigrationStream(), err)
	}
	return hold, nil
}

// copy copies the sealed command stream's messages to the holding
// stream, from the one after the last copied on.
func (m *migration) copy(ctx context.Context, cmds, hold jetstream.Stream, state jetstream.StreamState) error {
	seq := state.FirstSeq
	last, err := hold.GetLastMsgForSubject(ctx, m.holdSubjects())
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return fmt.Errorf("migrate: last copied message: %w", err)
	default:
		done, _, err := m.heldFrom(last)
		if err != nil {
			return err
		}
		seq = max(seq, done+1)
	}
	copied := 0
	for seq <= state.LastSeq {
		msg, err := cmds.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("migrate: read message %d of %s: %w", seq, m.n.CommandStream(), err)
		}
		seq = msg.Sequence + 1
		if err := m.hold(ctx, hold, msg); err != nil {
			return fmt.Errorf("migrate: copy message %d of %s: %w", msg.Sequence, m.n.CommandStream(), err)
		}
		copied++
	}
	m.progress("copied %d message(s) of %s to %s", copied, m.n.CommandStream(), m.n.MigrationStream())
	return nil
}

// hold copies msg to the holding stream on its heldSubject, with its own
// headers, its message id among them (a message as large as the server
// takes fits as it did), a parked copy's schedule renamed, and without
// the headers the server added (a schedule's roll-up, a fired copy's
// scheduler). Another message of the same id held already (two sent
// under one id apart by more than the duplicate window, both kept) is
// not a duplicate: this one is held with its id renamed. Headers of the
// names renamed to are the migration's: a command that came with them
// (whoever may publish commands sets any) would pass for a parked copy,
// which could not be parked again, or give itself a message id.
func (m *migration) hold(ctx context.Context, hold jetstream.Stream, msg *jetstream.RawStreamMsg) error {
	h := nats.Header{}
	for k, v := range msg.Header {
		switch {
		case k == heldMsgID, k == heldSchedule, k == heldTarget:
		case !strings.HasPrefix(strings.ToLower(k), "nats-") || k == jetstream.MsgIDHeader:
			h[k] = v
		}
	}
	if at := msg.Header.Get("Nats-Schedule"); at != "" {
		h.Set(heldSchedule, at)
		h.Set(heldTarget, msg.Header.Get("Nats-Schedule-Target"))
	}
	out := &nats.Msg{Subject: m.heldSubject(msg.Sequence, msg.Subject), Header: h, Data: msg.Data}
	ack, err := m.js.PublishMsg(ctx, out)
	if err != nil || !ack.Duplicate {
		return err
	}
	if first, err := hold.GetMsg(ctx, ack.Sequence); err == nil && first.Subject == out.Subject {
		return nil // this very message, held by an earlier run
	}
	h.Set(heldMsgID, h.Get(jetstream.MsgIDHeader))
	h.Del(jetstream.MsgIDHeader)
	_, err = m.js.PublishMsg(ctx, out)
	return err
}

// recreate creates the command stream and its consumer as the holding
// stream's metadata says, unless it exists.
func (m *migration) recreate(ctx context.Context, hold jetstream.Stream) error {
	info, err := hold.Info(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", m.n.MigrationStream(), err)
	}
	var sc jetstream.StreamConfig
	var cc jetstream.ConsumerConfig
	if err := json.Unmarshal([]byte(info.Config.Metadata[metaCommandStream]), &sc); err != nil {
		return fmt.Errorf("migrate: %s keeps no command stream configuration: %w", m.n.MigrationStream(), err)
	}
	if err := json.Unmarshal([]byte(info.Config.Metadata[metaCommandConsumer]), &cc); err != nil {
		return fmt.Errorf("migrate: %s keeps no command consumer configuration: %w", m.n.MigrationStream(), err)
	}
	_, err = m.js.CreateStream(ctx, sc)
	switch {
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		return nil // an earlier run made it, with its consumer
	case err != nil:
		return fmt.Errorf("migrate: create %s: %w", sc.Name, err)
	}
	if _, err := m.js.CreateOrUpdateConsumer(ctx, sc.Name, cc); err != nil {
		return fmt.Errorf("migrate: create consumer %s: %w", cc.Durable, err)
	}
	m.progress("created %s without message schedules or roll-ups, sourcing %s, sequences from %d on", sc.Name, m.n.ParkedStream(), sc.FirstSeq)
	return nil
}

// restore puts every held message back, in order, removing each from the
// holding stream once it is.
func (m *migration) restore(ctx context.Context, hold jetstream.Stream) error {
	cmds, err := m.js.Stream(ctx, m.n.CommandStream())
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", m.n.CommandStream(), err)
	}
	parked, err := m.js.Stream(ctx, m.n.ParkedStream())
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", m.n.ParkedStream(), err)
	}
	for seq := uint64(1); ; {
		// Every subject (the stream holds nothing else): the server finds
		// the next message by a narrower wildcard by going through the
		// stream's subjects, one per held message, for each message.
		msg, err := hold.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("migrate: read held message %d: %w", seq, err)
		}
		seq = msg.Sequence + 1
		from, subject, err := m.heldFrom(msg)
		if err != nil {
			return err
		}
		// A parked copy is a schedule on a parked subject, which only
		// workers publish; a caller may have put one on a command
		// subject, which the legacy stream took: it goes back a command.
		if msg.Header.Get(heldSchedule) != "" && strings.HasPrefix(subject, m.n.prefix()+".parked.") {
			err = m.repark(ctx, parked, msg, from, subject)
		} else {
			err = m.requeue(ctx, cmds, msg, from, subject)
		}
		if err != nil {
			return err
		}
		if err := hold.DeleteMsg(ctx, msg.Sequence); err != nil {
			return fmt.Errorf("migrate: remove held message %d: %w", msg.Sequence, err)
		}
	}
	m.progress("put back %d queued message(s) into %s and %d parked copy(ies) into %s",
		m.res.Commands, m.n.CommandStream(), m.res.Parked, m.n.ParkedStream())
	return nil
}

// original is held message msg as it was, on subject, without its message
// id, which it returns: its own, or for one sent without,
// CopyMsgID("", "migrate", <its old sequence>) (own is false).
func original(msg *jetstream.RawStreamMsg, from uint64, subject string) (out *nats.Msg, id string, own bool) {
	h := nats.Header{}
	for k, v := range msg.Header {
		switch k {
		case jetstream.MsgIDHeader, heldMsgID, heldSchedule, heldTarget:
		default:
			h[k] = v
		}
	}
	id = cmp.Or(msg.Header.Get(jetstream.MsgIDHeader), msg.Header.Get(heldMsgID))
	if id == "" {
		return &nats.Msg{Subject: subject, Header: h, Data: msg.Data}, migrateMsgID(from), false
	}
	return &nats.Msg{Subject: subject, Header: h, Data: msg.Data}, id, true
}

func migrateMsgID(seq uint64) string { return CopyMsgID("", "migrate", strconv.FormatUint(seq, 10)) }

// requeue publishes held message msg, message from of the old command
// stream on subject, back to the command stream. A duplicate is a message
// of the same id within the duplicate window: this one, put back by a run
// that stopped before removing it from the holding stream, or another
// message sent with the same id (apart by more than the window, as both
// were kept): that one is published with the migration's id.
func (m *migration) requeue(ctx context.Context, cmds jetstream.Stream, msg *jetstream.RawStreamMsg, from uint64, subject string) error {
	out, id, own := original(msg, from, subject)
	ack, err := m.publishWithID(ctx, out, id, own)
	if err != nil {
		return fmt.Errorf("migrate: put back message %d: %w", from, err)
	}
	if ack.Duplicate {
		stored, err := cmds.GetMsg(ctx, ack.Sequence)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("migrate: message %d of %s: %w", ack.Sequence, m.n.CommandStream(), err)
		}
		if err == nil && (stored.Subject != out.Subject || string(stored.Data) != string(out.Data)) {
			if _, err := m.publishWithID(ctx, out, migrateMsgID(from), false); err != nil {
				return fmt.Errorf("migrate: put back message %d: %w", from, err)
			}
		}
	}
	m.res.Commands++
	return nil
}

// publishWithID publishes out with message id id. An id the message did
// not have (own is false) it goes without when the two do not fit in a
// message the server takes: put back then, the message is stored again
// should a run stop before removing it from the holding stream.
func (m *migration) publishWithID(ctx context.Context, out *nats.Msg, id string, own bool) (*jetstream.PubAck, error) {
	ack, err := m.js.PublishMsg(ctx, out, jetstream.WithMsgID(id))
	if !own && errors.Is(err, nats.ErrMaxPayload) {
		out.Header.Del(jetstream.MsgIDHeader)
		return m.js.PublishMsg(ctx, out)
	}
	return ack, err
}

// repark publishes held message msg, parked copy from of the old command
// stream on subject, to the parked stream, due at the same time (at once
// if that has passed) on the new subjects. A subject that holds a
// schedule already has this copy from an earlier run.
func (m *migration) repark(ctx context.Context, parked jetstream.Stream, msg *jetstream.RawStreamMsg, from uint64, subject string) error {
	legacy, cmdPrefix := m.n.prefix()+".parked.", m.n.prefix()+".cmd."
	rest, ok := strings.CutPrefix(subject, legacy)
	target, okTarget := strings.CutPrefix(msg.Header.Get(heldTarget), cmdPrefix)
	if !ok || !okTarget {
		return fmt.Errorf("migrate: held message %d: parked copy on %s for %s, not %s… for %s…", from,
			subject, msg.Header.Get(heldTarget), legacy, cmdPrefix)
	}
	out, id, own := original(msg, from, m.n.prefix()+".park."+rest)
	out.Header.Set("Nats-Schedule", msg.Header.Get(heldSchedule))
	out.Header.Set("Nats-Schedule-Target", m.n.prefix()+".due."+target)
	// Looked up, not expected in a header: a copy as large as the server
	// takes has no room for one.
	_, err := parked.GetLastMsgForSubject(ctx, out.Subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		_, err = m.publishWithID(ctx, out, id, own)
	case err != nil:
		err = fmt.Errorf("look for it in %s: %w", m.n.ParkedStream(), err)
	}
	if err != nil {
		return fmt.Errorf("migrate: park message %d again: %w", from, err)
	}
	m.res.Parked++
	return nil
}

// userMetadata is metadata less the server's own keys (_nats.*), which it
// sets itself.
func userMetadata(md map[string]string) map[string]string {
	out := maps.Clone(md)
	maps.DeleteFunc(out, func(k, _ string) bool { return strings.HasPrefix(k, "_nats.") })
	if len(out) == 0 {
		return nil
	}
	return out
}
