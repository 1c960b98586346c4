package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/webhook"
)

// campaigns is a worker's view of the groups_campaigns bucket: entries
// read or watched (every worker watches them, so a cancel or a pause reaches
// its invites within moments), and the fan-outs this worker holds.
type campaigns struct {
	w   *Worker
	kv  jetstream.KeyValue
	cfg CampaignConfig

	mu     sync.Mutex
	known  map[string]campaignView  // campaign id → newest entry seen
	absent map[string]time.Time     // ids looked up and not found → until when to believe it
	held   map[string]chan struct{} // campaigns this worker holds → wake-up of the holder
	wake   chan struct{}
	wg     sync.WaitGroup
}

type campaignView struct {
	st  campaignState
	rev uint64
}

func newCampaigns(w *Worker, kv jetstream.KeyValue, cfg CampaignConfig) *campaigns {
	return &campaigns{w: w, kv: kv, cfg: cfg, known: map[string]campaignView{}, absent: map[string]time.Time{},
		held: map[string]chan struct{}{}, wake: make(chan struct{}, 1)}
}

// get reads a campaign's entry, or ErrNotFound.
func (c *campaigns) get(ctx context.Context, id string) (campaignState, uint64, error) {
	e, err := c.kv.Get(ctx, campaignKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return campaignState{}, 0, ErrNotFound
	}
	if err != nil {
		return campaignState{}, 0, fmt.Errorf("campaign: get %s: %w", id, err)
	}
	var st campaignState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return campaignState{}, 0, fmt.Errorf("campaign: decode %s: %w", id, err)
	}
	c.remember(st, e.Revision())
	return st, e.Revision(), nil
}

// update applies fn to a campaign's entry by compare-and-set, retrying on
// conflicts. fn returning errNoChange leaves the entry as it is; update then
// returns the entry with errNoChange.
func (c *campaigns) update(ctx context.Context, id string, fn func(*campaignState) error) (campaignState, error) {
	for {
		st, rev, err := c.get(ctx, id)
		if err != nil {
			return st, err
		}
		if err := fn(&st); err != nil {
			return st, err
		}
		st.UpdatedAt = c.w.now()
		b, _ := json.Marshal(st)
		rev, err = c.kv.Update(ctx, campaignKey(id), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("campaign: update %s: %w", id, err)
		}
		c.remember(st, rev)
		return st, nil
	}
}

// remember keeps st if it is newer than what this worker knew, and wakes
// the holder of the campaign, if it is here.
func (c *campaigns) remember(st campaignState, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.known[st.CampaignID]; ok && v.rev >= rev {
		return
	}
	c.known[st.CampaignID] = campaignView{st: st, rev: rev}
	delete(c.absent, st.CampaignID)
	if wake, ok := c.held[st.CampaignID]; ok {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

// view returns the newest entry of a campaign this worker has seen.
func (c *campaigns) view(id string) (campaignView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.known[id]
	return v, ok
}

// lookup returns a campaign's entry as last seen (kept fresh by the
// watch), reading it when this worker has not seen it.
func (c *campaigns) lookup(ctx context.Context, id string) (campaignState, bool, error) {
	c.mu.Lock()
	v, ok := c.known[id]
	until, absent := c.absent[id]
	c.mu.Unlock()
	if ok {
		return v.st, true, nil
	}
	if absent && c.w.now().Before(until) {
		return campaignState{}, false, nil
	}
	st, _, err := c.get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		now := c.w.now()
		c.mu.Lock()
		if len(c.absent) >= 4096 { // ids like "order:7" that are no campaign's
			for k, until := range c.absent {
				if now.After(until) {
					delete(c.absent, k)
				}
			}
		}
		c.absent[id] = now.Add(5 * time.Second)
		c.mu.Unlock()
		return campaignState{}, false, nil
	}
	return st, err == nil, err
}

// campaignOf names the campaign a command id belongs to, if this worker
// knows the campaign (no I/O: for annotating events).
func (c *campaigns) campaignOf(commandID string) string {
	cid, n, ok := parseInviteID(commandID)
	if !ok {
		return ""
	}
	if v, ok := c.view(cid); ok && n < v.st.Total {
		return cid
	}
	return ""
}

func (c *campaigns) wakeSupervisor() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// indexInvite records which campaign invite went to a recipient for a
// group, for the join webhooks.
func (c *campaigns) indexInvite(ctx context.Context, groupID, to string, ix inviteIndex) error {
	b, _ := json.Marshal(ix)
	_, err := c.kv.Put(ctx, inviteIndexKey(groupID, to), b)
	return err
}

// campaignJoins turns joins through an invite link (group_participants_add,
// reason invite_link) of campaign recipients into campaign.invitee_joined
// events and counts them. Both are idempotent: the event id names the
// invite, the count is a bit per invite.
func (w *Worker) campaignJoins(ctx context.Context, it webhook.Item, g *webhook.GroupEvent, h nats.Header) error {
	if g == nil || g.Type != webhook.TypeParticipantsAdd || g.Reason != "invite_link" {
		return nil
	}
	phone := cmpStr(it.PhoneNumberID)
	if !events.ValidToken(phone) {
		return nil
	}
	for _, pt := range g.AddedParticipants {
		wa := cmpStr(pt.WAID, pt.Input)
		if digitsOf(wa) == "" {
			continue
		}
		e, err := w.campaigns.kv.Get(ctx, inviteIndexKey(g.GroupID, wa))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue // not invited by a campaign
		}
		if err != nil {
			return fmt.Errorf("campaign: read invite index: %w", err)
		}
		var ix inviteIndex
		if err := json.Unmarshal(e.Value(), &ix); err != nil || ix.CampaignID == "" {
			continue
		}
		// Once per invitee, whenever the join comes again (a leave and a
		// rejoin, Meta's retry hours later): the event stream's duplicate
		// window is two minutes. The event goes out before the bit is
		// set, so a failed publish is retried rather than skipped.
		joined, err := w.campaigns.isJoined(ctx, ix.CampaignID, ix.N)
		if err != nil {
			return err
		}
		if joined {
			continue
		}
		ev := domainEvent{typ: events.EventCampaignInviteeJoined, id: events.EventID(ix.CampaignID, strconv.Itoa(ix.N), "joined"),
			phone: phone, at: g.Time(), data: events.CampaignInviteeJoined{CampaignID: ix.CampaignID, GroupID: g.GroupID,
				To: ix.To, Participant: participantRef(pt), MessageID: ix.MessageID}}
		if err := w.publishEvent(ctx, ev, h); err != nil {
			return fmt.Errorf("publish %s: %w", ev.typ, err)
		}
		if err := w.campaigns.markJoined(ctx, ix.CampaignID, ix.N); err != nil {
			return err
		}
		w.log.DebugContext(ctx, "campaign invitee joined", slog.String("campaign_id", ix.CampaignID), slog.Int("invite", ix.N))
	}
	return nil
}

// joinedChunkAt reads the chunk of joined bits holding invite n, with its
// revision (0: none yet).
func (c *campaigns) joinedChunkAt(ctx context.Context, campaignID string, n int) (joinedChunk, uint64, error) {
	var jc joinedChunk
	e, err := c.kv.Get(ctx, joinedChunkKey(campaignID, n/campaignChunkSize))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return jc, 0, nil
	case err != nil:
		return jc, 0, fmt.Errorf("campaign: read joined: %w", err)
	}
	_ = json.Unmarshal(e.Value(), &jc)
	return jc, e.Revision(), nil
}

// isJoined reports whether invite n's joined bit is set.
func (c *campaigns) isJoined(ctx context.Context, campaignID string, n int) (bool, error) {
	jc, _, err := c.joinedChunkAt(ctx, campaignID, n)
	bit := n % campaignChunkSize
	return err == nil && bitSet(jc.Joined, bit), err
}

// markJoined sets the joined bit of invite n.
func (c *campaigns) markJoined(ctx context.Context, campaignID string, n int) error {
	key := joinedChunkKey(campaignID, n/campaignChunkSize)
	bit := n % campaignChunkSize
	for {
		jc, rev, err := c.joinedChunkAt(ctx, campaignID, n)
		if err != nil {
			return err
		}
		if len(jc.Joined) < campaignChunkSize/8 {
			jc.Joined = append(jc.Joined, make([]byte, campaignChunkSize/8-len(jc.Joined))...)
		}
		if bitSet(jc.Joined, bit) {
			return nil
		}
		setBit(jc.Joined, bit)
		b, _ := json.Marshal(jc)
		if _, ok, err := putAtRevision(ctx, c.kv, key, b, rev); err != nil {
			return fmt.Errorf("campaign: count joined: %w", err)
		} else if ok {
			return nil
		}
	}
}

// joinedCount reads how many recipients of a campaign joined.
func (c *campaigns) joinedCount(ctx context.Context, campaignID string, total int) (int, error) {
	return joinedCount(ctx, c.kv, campaignID, total)
}

func joinedCount(ctx context.Context, kv jetstream.KeyValue, campaignID string, total int) (int, error) {
	n := 0
	for k := range chunksFor(total) {
		e, err := kv.Get(ctx, joinedChunkKey(campaignID, k))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("campaign: read joined: %w", err)
		}
		var jc joinedChunk
		if err := json.Unmarshal(e.Value(), &jc); err == nil {
			n += popcount(jc.Joined)
		}
	}
	return n, nil
}

// CampaignStatus is an invite campaign as the groups_campaigns bucket
// holds it (for groupctl and status queries).
type CampaignStatus struct {
	CampaignID    string `json:"campaign_id"`
	CommandID     string `json:"command_id"`
	PhoneNumberID string `json:"phone_number_id"`
	// State is running, cancelling, completed or cancelled; Paused tells a
	// running campaign held back until PausedUntil.
	State       string                `json:"state"`
	Paused      bool                  `json:"paused"`
	PausedUntil time.Time             `json:"paused_until,omitzero"`
	PauseReason string                `json:"pause_reason,omitempty"`
	Counts      events.CampaignCounts `json:"counts"`
	// FannedOut is how many invites were published as commands (as of the
	// last checkpoint).
	FannedOut   int       `json:"fanned_out"`
	Holder      string    `json:"holder,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// ReadCampaign reads a campaign's state from the groups_campaigns bucket
// (events.Names.CampaignBucket): its entry, with the joins counted since
// the entry was written. ErrNotFound if there is no such campaign.
func ReadCampaign(ctx context.Context, kv jetstream.KeyValue, campaignID string) (CampaignStatus, error) {
	e, err := kv.Get(ctx, campaignKey(campaignID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return CampaignStatus{}, ErrNotFound
	}
	if err != nil {
		return CampaignStatus{}, fmt.Errorf("campaign: get %s: %w", campaignID, err)
	}
	var st campaignState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return CampaignStatus{}, fmt.Errorf("campaign: decode %s: %w", campaignID, err)
	}
	joined, err := joinedCount(ctx, kv, campaignID, st.Total)
	if err != nil {
		return CampaignStatus{}, err
	}
	cs := CampaignStatus{
		CampaignID: st.CampaignID, CommandID: st.CommandID, PhoneNumberID: st.PhoneNumberID, State: st.State,
		PausedUntil: st.PausedUntil, PauseReason: st.PauseReason, Counts: st.Counts, FannedOut: st.FannedOut,
		CreatedAt: st.CreatedAt, UpdatedAt: st.UpdatedAt, CompletedAt: st.CompletedAt,
	}
	cs.Counts.Joined = max(cs.Counts.Joined, joined)
	cs.Paused = !st.final() && time.Now().Before(st.PausedUntil)
	if !st.final() && time.Now().Before(st.LeaseUntil) {
		cs.Holder = st.Owner
	}
	return cs, nil
}
