package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// State is where a command is in its life. The last four are terminal.
type State string

// Ledger states.
const (
	// StateQueued: received, and parked until its number's rate limit can
	// take it (see Worker.park); no worker has claimed it yet. Also an
	// async command whose webhook reported a transient error, waiting
	// for the copy that runs it again (see runAgain).
	StateQueued             State = "queued"
	StateRunning            State = "running"
	StateAwaitingWebhook    State = "awaiting_webhook"
	StateSucceeded          State = "succeeded"
	StatePartiallySucceeded State = "partially_succeeded"
	StateFailed             State = "failed"
	StateRejected           State = "rejected"
)

// Finished reports whether the entry's command is done (its state is
// terminal): what the ingest asks of an entry to tell a re-send from a
// duplicate in flight.
func (e Entry) Finished() bool { return e.State.Terminal() }

// Conflict says how cmd differs from the command the entry records (its
// type, phone number or group), or "" when cmd may be a re-send of it.
// Parameters are not compared: a re-send may encode them differently. A
// different command under a used id is what the ingest and groupctl refuse
// instead of answering it with the first command's state.
func (e Entry) Conflict(cmd events.Command) string {
	var group string
	if len(e.Command) > 0 {
		var c struct {
			GroupID string `json:"group_id"`
		}
		_ = json.Unmarshal(e.Command, &c)
		group = c.GroupID
	}
	switch {
	case e.CommandType != "" && e.CommandType != cmd.Type:
		return fmt.Sprintf("it was a %s, not a %s", e.CommandType, cmd.Type)
	case e.PhoneNumberID != "" && e.PhoneNumberID != cmd.PhoneNumberID:
		return fmt.Sprintf("it was for phone number %s, not %s", e.PhoneNumberID, cmd.PhoneNumberID)
	case len(e.Command) > 0 && group != cmd.GroupID:
		return fmt.Sprintf("it was for group %q, not %q", group, cmd.GroupID)
	}
	return ""
}

// Terminal reports whether nothing more will happen to a command in s.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StatePartiallySucceeded, StateFailed, StateRejected:
		return true
	}
	return false
}

// maxAttempts bounds the attempt history kept in an entry (the oldest are
// dropped) so an entry stays small whatever the redelivery count.
const maxAttempts = 32

// trimAttempts keeps the last maxAttempts attempts, and the first one
// after which a call may have taken effect unseen if it is older: the
// handlers judge "already done" answers by it (hadAmbiguous), however many
// waits (throttles, a refused token) came after.
func trimAttempts(a []Attempt) []Attempt {
	if len(a) <= maxAttempts {
		return a
	}
	kept := a[len(a)-maxAttempts:]
	if slices.ContainsFunc(kept, mayHaveTakenEffect) {
		return kept
	}
	if i := slices.IndexFunc(a, mayHaveTakenEffect); i >= 0 {
		return append([]Attempt{a[i]}, a[len(a)-maxAttempts+1:]...)
	}
	return kept
}

// Entry is one command's ledger record (JSON in the groups_ledger bucket).
type Entry struct {
	CommandID     string `json:"command_id"`
	CommandType   string `json:"command_type,omitempty"`
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	// Subject is where the command was published; the DLQ keeps it.
	Subject string `json:"subject,omitempty"`
	// Command is the command as received. It must be valid JSON (Claim
	// checks): ledger writes store it as is, without encoding it again.
	Command json.RawMessage `json:"command,omitempty"`
	State   State           `json:"state"`
	// Owner is the claim token of the worker executing the command, empty
	// when nobody is; the claim is live until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	Attempts   []Attempt `json:"attempts,omitempty"`
	// Intent is set before a call that is not safe to repeat; Intent.Done
	// after its outcome is known. An intent that is not done on a
	// redelivery means the call may or may not have happened.
	Intent *Intent `json:"intent,omitempty"`
	// Progress is handler-specific state that must survive a redelivery
	// (for example the join requests seen before an approval).
	Progress json.RawMessage `json:"progress,omitempty"`
	// Pending lists the Graph requests whose webhook completes the command.
	Pending []Pending `json:"pending,omitempty"`
	// AwaitUntil is when the sweeper gives up waiting for Pending webhooks.
	AwaitUntil time.Time `json:"await_until,omitzero"`
	// Result is the terminal event, stored so a re-sent command id
	// re-publishes it instead of executing again.
	Result      *Terminal `json:"result,omitempty"`
	Traceparent string    `json:"traceparent,omitempty"`
	// Replay names the dead-letter replay this execution is
	// (events.ReplayHeader on the command), empty for the first: it keeps
	// the replay's terminal event apart from the first one's.
	Replay    string    `json:"replay,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Attempt is one execution attempt of a command.
type Attempt struct {
	At       time.Time `json:"at"`
	Worker   string    `json:"worker,omitempty"`
	Delivery uint64    `json:"delivery,omitempty"`
	// Outcome is "succeeded", "awaiting_webhook", "transient", "throttled",
	// "permanent", "cancelled", "panic", "ambiguous", "credentials" (Graph
	// refused the access token), "webhook_retry" (the webhook reported a
	// transient error; the command runs again) or "abandoned" (the
	// worker holding the claim stopped without releasing it: recorded by
	// the claim that took over, since whatever call it was making may have
	// taken effect).
	Outcome string `json:"outcome"`
	Code    int    `json:"code,omitempty"`
	Error   string `json:"error,omitempty"`
}

// AttemptAbandoned is the outcome of an attempt whose worker stopped
// holding the claim without releasing it.
const AttemptAbandoned = "abandoned"

// Intent records that a call that is not safe to repeat is about to be
// made.
type Intent struct {
	Op string    `json:"op"`
	At time.Time `json:"at"`
	// Before is what the call is to change, read just before it (the
	// invite link a reset replaces): a reconciliation that finds it
	// unchanged knows the call did not take effect.
	Before string `json:"before,omitempty"`
	Done   bool   `json:"done,omitempty"`
	// Outcome is what the call answered (request id, message id), once Done.
	Outcome json.RawMessage `json:"outcome,omitempty"`
}

// Pending is one Graph request awaiting its webhook.
type Pending struct {
	RequestID string `json:"request_id"`
	// Items are what the request covered (participants of a removal chunk).
	Items []string `json:"items,omitempty"`
	// Unsure marks a removal chunk sent after a call for it that may have
	// taken effect unseen (lost answer, crash): "not in group" (131212)
	// for its participants then means this command removed them.
	Unsure bool `json:"unsure,omitempty"`
	Done   bool `json:"done,omitempty"`
	// Result is the completion's outcome, filled by the webhook consumer.
	Result json.RawMessage `json:"result,omitempty"`
	// Failure is Graph's permanent refusal of the call itself, for a
	// request settled at once without a webhook: what the command's
	// failure says (code, subcode, type, message), which a webhook's
	// error shape could not hold.
	Failure *events.FailureInfo `json:"failure,omitempty"`
}

// Terminal is the terminal event of a command, as published.
type Terminal struct {
	// Type is the event type (command.succeeded, command.failed, …).
	Type    string `json:"type"`
	Subject string `json:"subject"`
	MsgID   string `json:"msg_id"`
	// Event is the CloudEvent JSON, published byte for byte again when the
	// command id is re-sent. It must be valid JSON (events.Marshal's
	// output): ledger writes store it as is, without encoding it again.
	Event json.RawMessage `json:"event"`
	// Published is set once JetStream acknowledged the event.
	Published bool      `json:"published,omitempty"`
	At        time.Time `json:"at"`
}

// Errors the ledger returns for callers to branch on.
var (
	// ErrNotFound: the ledger has no entry for the command id.
	ErrNotFound = errors.New("jobs: command not in ledger")
	// ErrNotOwner: the caller's claim was lost (expired and taken over).
	ErrNotOwner = errors.New("jobs: claim no longer held")
	// ErrTerminal: the command is already terminal.
	ErrTerminal = errors.New("jobs: command already terminal")
)

// Ledger is the idempotency record of every command, over the groups_ledger
// KV bucket. Every change is a compare-and-set on the entry's revision, so
// any number of workers can share it.
type Ledger struct {
	kv    jetstream.KeyValue
	now   func() time.Time
	cache sync.Map // command id → cached, for claims held by this process
}

// NewLedger returns a ledger over kv (the bucket named by
// events.Names.LedgerBucket). now defaults to time.Now.
func NewLedger(kv jetstream.KeyValue, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{kv: kv, now: now}
}

// LedgerKey is the KV key of a command id. Command ids may hold ':' and
// runs of '.', which KV keys may not, so every byte outside [A-Za-z0-9_-]
// is written as =XX (an injective, readable escape).
func LedgerKey(commandID string) string { return "cmd." + escapeKey(commandID) }

func awaitKey(commandID string) string { return "await." + escapeKey(commandID) }

// partKey is the KV key of part k of a command's progress kept beside its
// entry (Part, PutPart).
func partKey(commandID string, k int) string {
	return "part." + escapeKey(commandID) + "." + strconv.Itoa(k)
}

func escapeKey(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	if b.Len() == 0 {
		return "="
	}
	return b.String()
}

func unescapeKey(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '=' && i+2 < len(s) {
			var v byte
			for _, h := range []byte{s[i+1], s[i+2]} {
				v <<= 4
				switch {
				case '0' <= h && h <= '9':
					v |= h - '0'
				case 'A' <= h && h <= 'F':
					v |= h - 'A' + 10
				}
			}
			b.WriteByte(v)
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Get returns the entry of a command id and its revision, or ErrNotFound.
func (l *Ledger) Get(ctx context.Context, commandID string) (Entry, uint64, error) {
	kve, err := l.kv.Get(ctx, LedgerKey(commandID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return Entry{}, 0, ErrNotFound
	}
	if err != nil {
		return Entry{}, 0, fmt.Errorf("ledger: get %s: %w", commandID, err)
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return Entry{}, 0, fmt.Errorf("ledger: decode %s: %w", commandID, err)
	}
	return e, kve.Revision(), nil
}

// ClaimStatus says what Claim found.
type ClaimStatus int

// Claim outcomes.
const (
	// Claimed: the caller owns the command and must execute (or reconcile) it.
	Claimed ClaimStatus = iota + 1
	// AlreadyTerminal: the command finished; re-publish Entry.Result.
	AlreadyTerminal
	// HeldElsewhere: another worker's claim is live until Entry.LeaseUntil.
	HeldElsewhere
	// Awaiting: the Graph call was made; a webhook (or the sweeper) ends it.
	Awaiting
)

func (s ClaimStatus) String() string {
	switch s {
	case Claimed:
		return "claimed"
	case AlreadyTerminal:
		return "terminal"
	case HeldElsewhere:
		return "held"
	case Awaiting:
		return "awaiting"
	}
	return "unknown"
}

// ClaimRequest describes the command a worker wants to execute.
type ClaimRequest struct {
	CommandID     string
	CommandType   string
	PhoneNumberID string
	Subject       string
	Command       json.RawMessage
	// Token identifies this claim (unique per delivery and worker).
	Token       string
	Lease       time.Duration
	Traceparent string
	// Replay is the command's events.ReplayHeader, recorded when the
	// claim starts the entry.
	Replay string
}

// check refuses a command that is not valid JSON: ledger writes store it
// as is (see Entry.Command).
func (r ClaimRequest) check(op string) error {
	if len(r.Command) > 0 && !json.Valid(r.Command) {
		return fmt.Errorf("ledger: %s %s: the command is not valid JSON", op, r.CommandID)
	}
	return nil
}

// entry is the first ledger entry of the command r describes.
func (r ClaimRequest) entry(state State, now time.Time) Entry {
	return Entry{
		CommandID: r.CommandID, CommandType: r.CommandType, PhoneNumberID: r.PhoneNumberID,
		Subject: r.Subject, Command: r.Command, State: state, Traceparent: r.Traceparent,
		Replay: r.Replay, CreatedAt: now, UpdatedAt: now,
	}
}

// Claim takes a command for execution by compare-and-set. A command that
// is terminal, awaiting its webhook, or claimed by a live lease is not taken;
// the status says which, and the entry what is known.
func (l *Ledger) Claim(ctx context.Context, r ClaimRequest) (ClaimStatus, Entry, error) {
	if err := r.check("claim"); err != nil {
		return 0, Entry{}, err
	}
	key := LedgerKey(r.CommandID)
	// Most commands are new: try to create the entry first (one round
	// trip), and read only when it exists.
	tryCreate := true
	for {
		now := l.now()
		if tryCreate {
			e := r.entry(StateRunning, now)
			e.Owner, e.LeaseUntil = r.Token, now.Add(r.Lease)
			b, err := encodeEntry(e)
			if err != nil {
				return 0, Entry{}, fmt.Errorf("ledger: encode %s: %w", r.CommandID, err)
			}
			rev, err := l.kv.Create(ctx, key, b)
			switch {
			case err == nil:
				l.remember(e, rev)
				return Claimed, e, nil
			case !errors.Is(err, jetstream.ErrKeyExists):
				return 0, Entry{}, fmt.Errorf("ledger: create %s: %w", r.CommandID, err)
			}
		}
		e, rev, err := l.Get(ctx, r.CommandID)
		if errors.Is(err, ErrNotFound) {
			tryCreate = true // deleted meanwhile (Forget)
			continue
		}
		if err != nil {
			return 0, Entry{}, err
		}
		tryCreate = false
		switch {
		case e.State.Terminal():
			return AlreadyTerminal, e, nil
		case e.State == StateAwaitingWebhook:
			return Awaiting, e, nil
		case e.Owner != "" && now.Before(e.LeaseUntil):
			return HeldElsewhere, e, nil
		}
		if e.Owner != "" {
			// The lease ran out: the holder crashed or lost its
			// connection mid-command, with no record of how far it got.
			e.Attempts = append(e.Attempts, Attempt{At: now, Outcome: AttemptAbandoned,
				Error: "the worker holding the claim stopped without releasing it"})
		}
		e.State, e.Owner, e.LeaseUntil, e.UpdatedAt = StateRunning, r.Token, now.Add(r.Lease), now
		if e.Traceparent == "" {
			e.Traceparent = r.Traceparent
		}
		if rev, ok, err := l.put(ctx, key, e, rev); err != nil {
			return 0, Entry{}, err
		} else if ok {
			l.remember(e, rev)
			return Claimed, e, nil
		}
	}
}

// Queue records a command that is parked before any worker claimed it
// (StateQueued), so its status can be read, and a re-sent id is known, while
// it waits. It only starts an entry: one that exists is left as it is. The
// first claim takes the entry over.
func (l *Ledger) Queue(ctx context.Context, r ClaimRequest) error {
	if err := r.check("queue"); err != nil {
		return err
	}
	b, err := encodeEntry(r.entry(StateQueued, l.now()))
	if err != nil {
		return fmt.Errorf("ledger: encode %s: %w", r.CommandID, err)
	}
	_, err = l.kv.Create(ctx, LedgerKey(r.CommandID), b)
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("ledger: queue %s: %w", r.CommandID, err)
	}
	return nil
}

// cached is the entry of a command this process holds a claim on, as it
// last wrote it: updates under the claim start from it instead of reading
// the entry again. A stale copy only costs a failed compare-and-set and
// the usual read.
type cached struct {
	e   Entry
	rev uint64
}

// remember caches e while this process owns it, and forgets it otherwise.
func (l *Ledger) remember(e Entry, rev uint64) {
	if e.Owner == "" || e.State != StateRunning {
		l.cache.Delete(e.CommandID)
		return
	}
	l.cache.Store(e.CommandID, cached{e: e, rev: rev})
}

func cloneEntry(e Entry) Entry {
	e.Attempts = slices.Clone(e.Attempts)
	e.Pending = slices.Clone(e.Pending)
	if e.Intent != nil {
		in := *e.Intent
		e.Intent = &in
	}
	if e.Result != nil {
		t := *e.Result
		e.Result = &t
	}
	return e
}

// Update applies fn to the entry and stores it by compare-and-set, retrying
// on conflicts with a fresh read. fn may return an error to abort.
func (l *Ledger) Update(ctx context.Context, commandID string, fn func(*Entry) error) (Entry, error) {
	key := LedgerKey(commandID)
	if v, ok := l.cache.Load(commandID); ok {
		c := v.(cached)
		e := cloneEntry(c.e)
		if fn(&e) == nil {
			e.UpdatedAt = l.now()
			rev, ok, err := l.put(ctx, key, e, c.rev)
			if err != nil {
				return Entry{}, err
			}
			if ok {
				l.remember(e, rev)
				return e, nil
			}
		}
		// Stale, or fn refused the cached copy: decide on a fresh read.
		l.cache.Delete(commandID)
	}
	for {
		e, rev, err := l.Get(ctx, commandID)
		if err != nil {
			return Entry{}, err
		}
		if err := fn(&e); err != nil {
			return e, err
		}
		e.UpdatedAt = l.now()
		rev, ok, err := l.put(ctx, key, e, rev)
		if err != nil {
			return Entry{}, err
		} else if ok {
			l.remember(e, rev)
			return e, nil
		}
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
	}
}

// UpdateOwned is Update for the holder of a claim: it fails with
// ErrNotOwner when the claim token no longer matches, and with ErrTerminal
// when the command finished meanwhile.
func (l *Ledger) UpdateOwned(ctx context.Context, commandID, token string, fn func(*Entry) error) (Entry, error) {
	return l.Update(ctx, commandID, func(e *Entry) error {
		if e.State.Terminal() {
			return ErrTerminal
		}
		if e.Owner != token {
			return ErrNotOwner
		}
		return fn(e)
	})
}

// put stores e at key if its revision is still rev, and returns the new
// revision. It reports false on a conflict.
func (l *Ledger) put(ctx context.Context, key string, e Entry, rev uint64) (uint64, bool, error) {
	e.Attempts = trimAttempts(e.Attempts)
	if e.State.Terminal() {
		// The result holds what the progress was kept for. Both, for an
		// all_pending approval of thousands of requests, were more than
		// NATS takes in one entry, where either alone was not.
		e.Progress = nil
	}
	b, err := encodeEntry(e)
	if err != nil {
		return 0, false, fmt.Errorf("ledger: encode %s: %w", e.CommandID, err)
	}
	rev, err = l.kv.Update(ctx, key, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("ledger: update %s: %w", e.CommandID, err)
	}
	return rev, true, nil
}

// encodeEntry is json.Marshal(e), except that the two raw JSON parts, the
// command and the terminal event, are copied in as they are: encoding/json
// would check and compact them again on every write of the entry, which is
// half the cost of encoding it. Both are valid JSON by construction (a
// command Claim checked, an event events.Marshal encoded). Keys come in
// another order than json.Marshal's, which no decoder minds.
func encodeEntry(e Entry) ([]byte, error) {
	cmd, t := e.Command, e.Result
	e.Command, e.Result = nil, nil
	b, err := json.Marshal(e) // {"command_id":…}
	if err != nil {
		return nil, err
	}
	var tb []byte
	if t != nil {
		if tb, err = json.Marshal(terminalWire{Type: t.Type, Subject: t.Subject, MsgID: t.MsgID,
			Published: t.Published, At: t.At}); err != nil {
			return nil, err
		}
	}
	ev := []byte("null")
	if t != nil && len(t.Event) > 0 {
		ev = t.Event
	}
	out := make([]byte, 0, len(b)+len(cmd)+len(tb)+len(ev)+32)
	out = append(out, '{')
	if len(cmd) > 0 {
		out = append(out, `"command":`...)
		out = append(out, cmd...)
		out = append(out, ',')
	}
	out = append(out, b[1:len(b)-1]...)
	if t != nil {
		out = append(out, `,"result":{"event":`...)
		out = append(out, ev...)
		out = append(out, ',')
		out = append(out, tb[1:]...)
	}
	return append(out, '}'), nil
}

// terminalWire is Terminal without its event, which encodeEntry adds.
type terminalWire struct {
	Type      string    `json:"type"`
	Subject   string    `json:"subject"`
	MsgID     string    `json:"msg_id"`
	Published bool      `json:"published,omitempty"`
	At        time.Time `json:"at"`
}

// Renew extends the lease of the claim token by lease.
func (l *Ledger) Renew(ctx context.Context, commandID, token string, lease time.Duration) error {
	_, err := l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		e.LeaseUntil = l.now().Add(lease)
		return nil
	})
	return err
}

// Release gives up a claim after a failed attempt (the message will be
// redelivered), recording the attempt. Releasing a claim that was lost or a
// command that finished is not an error.
func (l *Ledger) Release(ctx context.Context, commandID, token string, a Attempt) error {
	_, err := l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		e.Owner, e.LeaseUntil = "", time.Time{}
		e.Attempts = append(e.Attempts, a)
		return nil
	})
	if errors.Is(err, ErrNotOwner) || errors.Is(err, ErrTerminal) {
		return nil
	}
	return err
}

// RecordIntent records, under the claim, that op is about to be called.
func (l *Ledger) RecordIntent(ctx context.Context, commandID, token, op string) error {
	return l.RecordIntentBefore(ctx, commandID, token, op, "")
}

// RecordIntentBefore records an intent with what the call is to change,
// as read just before it (Intent.Before).
func (l *Ledger) RecordIntentBefore(ctx context.Context, commandID, token, op, before string) error {
	_, err := l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		e.Intent = &Intent{Op: op, At: l.now(), Before: before}
		return nil
	})
	return err
}

// RecordOutcome marks the current intent done with what the call answered.
func (l *Ledger) RecordOutcome(ctx context.Context, commandID, token string, outcome any) error {
	b, err := json.Marshal(outcome)
	if err != nil {
		return fmt.Errorf("ledger: encode outcome: %w", err)
	}
	_, err = l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		if e.Intent == nil {
			e.Intent = &Intent{At: l.now()}
		}
		e.Intent.Done, e.Intent.Outcome = true, b
		return nil
	})
	return err
}

// SetProgress stores handler-specific progress under the claim.
func (l *Ledger) SetProgress(ctx context.Context, commandID, token string, progress any) error {
	b, err := json.Marshal(progress)
	if err != nil {
		return fmt.Errorf("ledger: encode progress: %w", err)
	}
	_, err = l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		e.Progress = b
		return nil
	})
	return err
}

// Part reads part k of a command's progress and its revision: progress
// that grows with a command's items (an all_pending approval of any
// number of join requests) is kept in parts of its own, since one entry
// holding it all outgrew what NATS takes in a message. A part that does
// not exist is nil, at revision 0. Parts are not removed when the
// command ends: they expire with the bucket's TTL, as its entry does.
func (l *Ledger) Part(ctx context.Context, commandID string, k int) ([]byte, uint64, error) {
	kve, err := l.kv.Get(ctx, partKey(commandID, k))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: get part %d of %s: %w", k, commandID, err)
	}
	return kve.Value(), kve.Revision(), nil
}

// PutPart writes part k of a command's progress and returns its new
// revision. rev is the revision the caller read (Part) or last wrote: a
// part written meanwhile was written by another holder of the command,
// so the caller's claim is lost (ErrNotOwner). rev 0 writes the part
// whatever is there, for a part the entry does not count yet (a crash
// between its write and the entry's, or an earlier execution of a
// command replayed from the dead-letter queue, may have left one).
// Writes under a claim are the caller's to check (UpdateOwned).
func (l *Ledger) PutPart(ctx context.Context, commandID string, k int, b []byte, rev uint64) (uint64, error) {
	key := partKey(commandID, k)
	if rev == 0 {
		rev, err := l.kv.Put(ctx, key, b)
		if err != nil {
			return 0, fmt.Errorf("ledger: put part %d of %s: %w", k, commandID, err)
		}
		return rev, nil
	}
	rev, err := l.kv.Update(ctx, key, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("ledger: put part %d of %s: %w", k, commandID, ErrNotOwner)
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: put part %d of %s: %w", k, commandID, err)
	}
	return rev, nil
}

// Await moves a claimed command to awaiting_webhook for the pending
// requests (added to those already pending), releasing the claim, and
// indexes it for the sweeper. It also marks an open intent done, since the
// request ids are the call's outcome.
func (l *Ledger) Await(ctx context.Context, commandID, token string, pending []Pending, until time.Time, a Attempt) (Entry, error) {
	e, err := l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		for _, p := range pending {
			if !hasPending(e.Pending, p.RequestID) {
				e.Pending = append(e.Pending, p)
			}
		}
		if e.Intent != nil && !e.Intent.Done {
			e.Intent.Done = true
			e.Intent.Outcome, _ = json.Marshal(pending)
		}
		e.State, e.Owner, e.LeaseUntil, e.AwaitUntil = StateAwaitingWebhook, "", time.Time{}, until
		e.Attempts = append(e.Attempts, a)
		return nil
	})
	if err != nil {
		return e, err
	}
	return e, l.IndexAwaiting(ctx, commandID, until)
}

// IndexAwaiting indexes an awaiting command for the sweeper (AwaitingIDs).
// Await does it after the state change; a redelivery of an awaiting
// command does it again, since a crash or a failed write between the two
// would leave the command awaiting a webhook that may never come, with
// nothing to time it out.
func (l *Ledger) IndexAwaiting(ctx context.Context, commandID string, until time.Time) error {
	b, _ := json.Marshal(map[string]time.Time{"until": until})
	if _, err := l.kv.Put(ctx, awaitKey(commandID), b); err != nil {
		return fmt.Errorf("ledger: index awaiting %s: %w", commandID, err)
	}
	return nil
}

// AddPending records a request id under the claim before the command
// awaits (so a crash between chunks does not resend a chunk).
func (l *Ledger) AddPending(ctx context.Context, commandID, token string, p Pending) error {
	_, err := l.UpdateOwned(ctx, commandID, token, func(e *Entry) error {
		if !hasPending(e.Pending, p.RequestID) {
			e.Pending = append(e.Pending, p)
		}
		return nil
	})
	return err
}

func hasPending(ps []Pending, id string) bool {
	for _, p := range ps {
		if p.RequestID == id {
			return true
		}
	}
	return false
}

// Finish makes a command terminal with its result, unless it already is
// (then it returns the stored entry and ErrTerminal: exactly one terminal
// result per command id). When token is not empty the caller must still
// own the claim; the empty token is for the webhook consumer and the
// sweeper, whose right to finish comes from the entry's state (guard).
func (l *Ledger) Finish(ctx context.Context, commandID, token string, state State, t Terminal, a *Attempt, guard func(*Entry) error) (Entry, error) {
	return l.Update(ctx, commandID, func(e *Entry) error {
		if e.State.Terminal() {
			return ErrTerminal
		}
		if token != "" && e.Owner != token {
			return ErrNotOwner
		}
		if guard != nil {
			if err := guard(e); err != nil {
				return err
			}
		}
		t.At = l.now()
		e.State, e.Owner, e.LeaseUntil, e.Result = state, "", time.Time{}, &t
		if a != nil {
			e.Attempts = append(e.Attempts, *a)
		}
		return nil
	})
}

// FinishNew records the terminal result of a command that was never
// claimed (a rejected command): it creates the entry or, if one exists,
// leaves it alone and returns it with ErrTerminal or ErrExists.
func (l *Ledger) FinishNew(ctx context.Context, e Entry) (Entry, error) {
	now := l.now()
	e.CreatedAt, e.UpdatedAt = now, now
	if e.Result != nil {
		e.Result.At = now
	}
	b, _ := json.Marshal(e)
	_, err := l.kv.Create(ctx, LedgerKey(e.CommandID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		old, _, gerr := l.Get(ctx, e.CommandID)
		if gerr != nil {
			return Entry{}, gerr
		}
		if old.State.Terminal() {
			return old, ErrTerminal
		}
		return old, ErrExists
	}
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: create %s: %w", e.CommandID, err)
	}
	return e, nil
}

// ErrExists is returned by FinishNew when a live (non-terminal) entry
// exists for the id.
var ErrExists = errors.New("jobs: command already in ledger")

// MarkPublished records that the terminal event was acknowledged by
// JetStream, so later webhooks for the command do not publish it again.
func (l *Ledger) MarkPublished(ctx context.Context, commandID string) error {
	_, err := l.Update(ctx, commandID, func(e *Entry) error {
		if e.Result == nil || e.Result.Published {
			return errNoChange
		}
		e.Result.Published = true
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err == nil {
		// The sweeper no longer needs to look at it.
		_ = l.kv.Delete(ctx, awaitKey(commandID))
	}
	return err
}

var errNoChange = errors.New("no change")

// AwaitingIDs lists the command ids indexed as awaiting a webhook.
func (l *Ledger) AwaitingIDs(ctx context.Context) ([]string, error) {
	lister, err := l.kv.ListKeysFiltered(ctx, "await.>")
	if err != nil {
		return nil, fmt.Errorf("ledger: list awaiting: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, unescapeKey(strings.TrimPrefix(k, "await.")))
	}
	return ids, nil
}

// Unindex removes a command from the sweeper's index.
func (l *Ledger) Unindex(ctx context.Context, commandID string) error {
	err := l.kv.Delete(ctx, awaitKey(commandID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// Forget deletes the entry of a terminal command so that its id can be
// executed again: `groupctl dlq replay` calls it before re-publishing a
// dead command. A command that is not terminal is left alone.
func (l *Ledger) Forget(ctx context.Context, commandID string) error {
	e, rev, err := l.Get(ctx, commandID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !e.State.Terminal() {
		return fmt.Errorf("ledger: forget %s: command is %s, not terminal", commandID, e.State)
	}
	if err := l.kv.Delete(ctx, LedgerKey(commandID), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("ledger: forget %s: %w", commandID, err)
	}
	return nil
}
