package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Correlations maps Graph request ids to the commands that made them, over
// the groups_correlation KV bucket.
//
// A webhook may arrive before the worker that made the call has recorded
// the request id (the response is slower than the webhook, or the worker
// died in between). Both sides meet at one key per request id, each with a
// compare-and-set: the worker links the command id, the webhook consumer
// leaves the item there when no command is linked yet. Whoever comes second
// finds the other's half and completes the command. Nothing waits or polls,
// and a webhook message is never redelivered just because it was early.
type Correlations struct {
	kv jetstream.KeyValue
}

// NewCorrelations returns the correlation store over kv (the bucket named by
// events.Names.CorrelationBucket).
func NewCorrelations(kv jetstream.KeyValue) *Correlations { return &Correlations{kv: kv} }

// correlation is the JSON value of a correlation key.
type correlation struct {
	CommandID string `json:"command_id,omitempty"`
	// Early holds webhook items that arrived before CommandID was known.
	Early []json.RawMessage `json:"early,omitempty"`
}

// maxEarly bounds the early items kept per request id: Meta may deliver one
// webhook several times, and one is enough to complete.
const maxEarly = 4

func correlationKey(requestID string) string { return "req." + escapeKey(requestID) }

// Link records that requestID belongs to commandID and returns the webhook
// items that arrived before it (to be applied by the caller). Linking twice
// is harmless.
func (c *Correlations) Link(ctx context.Context, requestID, commandID string) ([]json.RawMessage, error) {
	key := correlationKey(requestID)
	for {
		b, _ := json.Marshal(correlation{CommandID: commandID})
		_, err := c.kv.Create(ctx, key, b)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("correlation: link %s: %w", requestID, err)
		}
		cur, rev, err := c.get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if cur.CommandID == commandID {
			return cur.Early, nil
		}
		if cur.CommandID != "" {
			return nil, fmt.Errorf("correlation: request %s already belongs to command %s", requestID, cur.CommandID)
		}
		early := cur.Early
		cur.CommandID = commandID
		if ok, err := c.update(ctx, key, cur, rev); err != nil {
			return nil, err
		} else if ok {
			return early, nil
		}
	}
}

// Arrive is called for a webhook item carrying requestID. It returns the
// linked command id, or "" after keeping the item for Link to find.
func (c *Correlations) Arrive(ctx context.Context, requestID string, item json.RawMessage) (string, error) {
	key := correlationKey(requestID)
	for {
		cur, rev, err := c.get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			b, _ := json.Marshal(correlation{Early: []json.RawMessage{item}})
			_, err := c.kv.Create(ctx, key, b)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return "", fmt.Errorf("correlation: keep early %s: %w", requestID, err)
			}
			return "", nil
		case err != nil:
			return "", err
		case cur.CommandID != "":
			return cur.CommandID, nil
		case len(cur.Early) >= maxEarly:
			return "", nil
		}
		cur.Early = append(cur.Early, item)
		if ok, err := c.update(ctx, key, cur, rev); err != nil {
			return "", err
		} else if ok {
			return "", nil
		}
	}
}

// Lookup returns the command id linked to requestID, or "".
func (c *Correlations) Lookup(ctx context.Context, requestID string) (string, error) {
	cur, _, err := c.get(ctx, correlationKey(requestID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	return cur.CommandID, err
}

func (c *Correlations) get(ctx context.Context, key string) (correlation, uint64, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyDeleted) {
		err = jetstream.ErrKeyNotFound
	}
	if err != nil {
		return correlation{}, 0, err
	}
	var cur correlation
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		return correlation{}, 0, fmt.Errorf("correlation: decode %s: %w", key, err)
	}
	return cur, e.Revision(), nil
}

func (c *Correlations) update(ctx context.Context, key string, cur correlation, rev uint64) (bool, error) {
	b, _ := json.Marshal(cur)
	_, err := c.kv.Update(ctx, key, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("correlation: update %s: %w", key, err)
	}
	return true, nil
}

func messageKey(wamid string) string { return "msg." + escapeKey(wamid) }

// RememberMessage records that the message wamid was sent by commandID, so
// its status events can name the command.
func (c *Correlations) RememberMessage(ctx context.Context, wamid, commandID string) error {
	_, err := c.kv.Put(ctx, messageKey(wamid), []byte(commandID))
	return err
}

// MessageCommand returns the command that sent wamid, or "".
func (c *Correlations) MessageCommand(ctx context.Context, wamid string) (string, error) {
	e, err := c.kv.Get(ctx, messageKey(wamid))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// createdKey is where the create_group command a group belongs to is kept.
func createdKey(groupID string) string { return "created." + escapeKey(groupID) }

// GroupHolder returns the command that claimed groupID, or "".
func (c *Correlations) GroupHolder(ctx context.Context, groupID string) (string, error) {
	e, err := c.kv.Get(ctx, createdKey(groupID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("correlation: read the claim on group %s: %w", groupID, err)
	}
	return string(e.Value()), nil
}

// ClaimGroup records that groupID was created by commandID, unless another
// command holds it: it returns the command that holds the group now. A
// create_group completed by its webhook claims its group, and one that
// adopts a group found after an ambiguous call adopts only a group nobody
// holds, so two commands never report the same new group.
func (c *Correlations) ClaimGroup(ctx context.Context, groupID, commandID string) (holder string, err error) {
	key := createdKey(groupID)
	for {
		_, err := c.kv.Create(ctx, key, []byte(commandID))
		if err == nil {
			return commandID, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", fmt.Errorf("correlation: claim group %s: %w", groupID, err)
		}
		e, err := c.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // expired meanwhile
		}
		if err != nil {
			return "", fmt.Errorf("correlation: read the claim on group %s: %w", groupID, err)
		}
		return string(e.Value()), nil
	}
}

// creatingKey is where the create_group commands of one number and subject
// note their calls, so that one reconciling an ambiguous call can tell
// whether another is still waiting to claim its group.
func creatingKey(phoneNumberID, subject string) string {
	sum := sha256.Sum256([]byte(subject))
	return "creating." + escapeKey(phoneNumberID) + "." + hex.EncodeToString(sum[:12])
}

// Creating notes that commandID is about to create a group with subject,
// at, and forgets notes older than keep.
func (c *Correlations) Creating(ctx context.Context, phoneNumberID, subject, commandID string, at time.Time, keep time.Duration) error {
	key := creatingKey(phoneNumberID, subject)
	for {
		notes := map[string]time.Time{}
		var rev uint64
		e, err := c.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return fmt.Errorf("correlation: read creates of a subject: %w", err)
		default:
			rev = e.Revision()
			_ = json.Unmarshal(e.Value(), &notes)
		}
		for id, t := range notes {
			if at.Sub(t) > keep {
				delete(notes, id)
			}
		}
		notes[commandID] = at
		b, _ := json.Marshal(notes)
		if _, ok, err := putAtRevision(ctx, c.kv, key, b, rev); err != nil {
			return fmt.Errorf("correlation: note a create: %w", err)
		} else if ok {
			return nil
		}
	}
}

// putAtRevision stores b at key if the key is still at rev (0: the key
// must not exist yet), and returns the new revision. ok is false when
// another writer got there first: read again and retry.
func putAtRevision(ctx context.Context, kv jetstream.KeyValue, key string, b []byte, rev uint64) (newRev uint64, ok bool, err error) {
	if rev == 0 {
		newRev, err = kv.Create(ctx, key, b)
	} else {
		newRev, err = kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, nil
	}
	return newRev, err == nil, err
}

// OthersCreating returns the commands other than commandID that noted a
// create of subject on the number since since.
func (c *Correlations) OthersCreating(ctx context.Context, phoneNumberID, subject, commandID string, since time.Time) ([]string, error) {
	e, err := c.kv.Get(ctx, creatingKey(phoneNumberID, subject))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("correlation: read creates of a subject: %w", err)
	}
	notes := map[string]time.Time{}
	_ = json.Unmarshal(e.Value(), &notes)
	var out []string
	for id, t := range notes {
		if id != commandID && !t.Before(since) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// approvalKey is where an approval leaves its command id for the join it
// lets in: per group and user (a wa_id or a business-scoped user id).
func approvalKey(groupID, user string) string {
	return "join." + escapeKey(groupID) + "." + escapeKey(user)
}

// Approving records that commandID approves the join requests of users in
// groupID, before the call: the group_participants_add webhook that follows
// may come before the call's answer. An approval that then fails forgets
// its users (Forget); one that is never answered leaves its keys to the
// bucket's TTL.
func (c *Correlations) Approving(ctx context.Context, groupID, commandID string, users []string) error {
	b, _ := json.Marshal(correlation{CommandID: commandID})
	for _, u := range users {
		if _, err := c.kv.Put(ctx, approvalKey(groupID, u), b); err != nil {
			return fmt.Errorf("correlation: record approval of %s: %w", u, err)
		}
	}
	return nil
}

// ApprovedBy returns the command that approved one of users into groupID,
// if any, and the keys that said so, to Forget once the join is reported.
func (c *Correlations) ApprovedBy(ctx context.Context, groupID string, users []string) (commandID string, keys []string, err error) {
	for _, u := range users {
		key := approvalKey(groupID, u)
		cur, _, err := c.get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue
		case err != nil:
			return "", nil, err
		}
		keys = append(keys, key)
		if commandID == "" {
			commandID = cur.CommandID
		}
	}
	return commandID, keys, nil
}

// Forget deletes approval keys, best effort: a join reported, or an
// approval that failed, must not name a later join's command.
func (c *Correlations) Forget(ctx context.Context, keys []string) {
	for _, k := range keys {
		_ = c.kv.Delete(ctx, k)
	}
}

// ForgetApprovals is Forget for the approvals of users in groupID.
func (c *Correlations) ForgetApprovals(ctx context.Context, groupID string, users []string) {
	keys := make([]string, 0, len(users))
	for _, u := range users {
		keys = append(keys, approvalKey(groupID, u))
	}
	c.Forget(ctx, keys)
}
