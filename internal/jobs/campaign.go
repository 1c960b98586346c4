package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
)

// Invite campaigns.
//
// start_invite_campaign records the campaign in the groups_campaigns
// bucket and leaves the command awaiting the campaign's end. The fan-out is
// not bound to that command's delivery: one worker at a time holds the
// campaign's lease (renewed in its entry) and publishes one send_group_invite
// per invite, with the deterministic id "<campaign_id>:<n>" as Nats-Msg-Id,
// keeping at most CampaignConfig.Window invites queued (published and not
// terminal). The window keeps the command stream fair to other commands,
// bounds what a pause leaves waiting in the consumer, and makes a cancel
// cheap: invites never published need no command at all. When the holder
// dies its lease runs out and another worker resumes from the checkpoint in
// the entry; re-publishing a prefix is harmless (Nats-Msg-Id, then the
// ledger), and the reservation written before each block of publishes tells
// the new holder which invites may exist as commands.
//
// An invite of an object store list that repeats an earlier one
// (events.Invite.Key) is never published: it counts as a duplicate. The
// holder remembers a hash of each invite it has passed (seenSet); a new
// holder rebuilds that from the list it re-reads up to its checkpoint
// anyway, so every holder makes the same decision for each invite.
//
// The holder also counts. It reads the terminal events of the campaign's
// invites (and their message statuses) from the event stream, from the
// sequence of its checkpoint, and records each invite's outcome as one bit
// in chunked bitmaps with per-chunk counters. One writer, no contention at
// any send rate, and exact: an outcome is counted once however often its
// event is re-published, and a checkpoint (chunks first, then the entry
// with the stream sequence) is consistent whenever the holder dies.
// Joins are counted by the webhook consumer in separate bitmaps (a join may
// come long after the campaign ended), by compare-and-set.
//
// Keys of the groups_campaigns bucket (ids escaped as in LedgerKey):
//
//	m.<campaign>       campaignState: definition, state, checkpoint, counts
//	b.<campaign>.<k>   campaignChunk: outcomes of invites k·4096 … k·4096+4095
//	j.<campaign>.<k>   joined bits of the same invites
//	i.<group>.<wa_id>  inviteIndex: the campaign invite a recipient got for a group

// CampaignConfig tunes invite campaigns.
type CampaignConfig struct {
	// Window is how many invites of one campaign may be queued (published
	// as commands and not yet terminal) at once. It must leave room in the
	// command consumer's MaxAckPending for other work. Defaults to 512.
	Window int
	// CheckpointEvery is how many invites the fan-out reserves, and so
	// publishes at most, between two writes of its checkpoint. Defaults to 500.
	CheckpointEvery int
	// ProgressInterval is the least time between two campaign.progress
	// events of one campaign (and between two writes of its counters).
	// Defaults to 1 second.
	ProgressInterval time.Duration
	// Lease is how long a worker holds a campaign's fan-out without
	// renewing it; another worker takes over after. Defaults to the command
	// consumer's AckWait.
	Lease time.Duration
	// MaxPublishesInFlight bounds one fan-out's unacknowledged publishes.
	// Defaults to 256.
	MaxPublishesInFlight int
	// FunnelGrace is how long after its end a campaign's message statuses
	// (delivered, read, failed) are still counted. Joins are counted for as long
	// as the campaign is kept. Defaults to 2 minutes.
	FunnelGrace time.Duration
}

func (c CampaignConfig) withDefaults(ackWait time.Duration) CampaignConfig {
	c.Window = cmp.Or(c.Window, 512)
	c.CheckpointEvery = cmp.Or(c.CheckpointEvery, 500)
	c.ProgressInterval = cmp.Or(c.ProgressInterval, time.Second)
	c.Lease = cmp.Or(c.Lease, ackWait, 30*time.Second)
	c.MaxPublishesInFlight = cmp.Or(c.MaxPublishesInFlight, 256)
	c.FunnelGrace = cmp.Or(c.FunnelGrace, 2*time.Minute)
	return c
}

// Internal campaign states; the final ones are events.CampaignStateCompleted
// and events.CampaignStateCancelled.
const (
	campaignRunning    = "running"
	campaignCancelling = "cancelling"
)

// campaignChunkSize is how many invites one chunk of bitmaps covers.
const campaignChunkSize = 4096

// maxCancelCommands bounds the cancel commands a campaign remembers to
// complete; more cancels of one campaign are answered at once.
const maxCancelCommands = 32

// campaignState is a campaign's entry (m.<campaign>).
type campaignState struct {
	CampaignID    string             `json:"campaign_id"`
	CommandID     string             `json:"command_id"`
	PhoneNumberID string             `json:"phone_number_id"`
	Template      events.TemplateRef `json:"template"`
	// Object is where the invites are; nil when they are inline in the
	// start command (kept in its ledger entry).
	Object       *events.ObjectRef `json:"invites_object,omitempty"`
	ObjectDigest string            `json:"object_digest,omitempty"`
	Deadline     *time.Time        `json:"deadline,omitempty"`
	Total        int               `json:"total"`
	// State is running, cancelling, completed or cancelled.
	State string `json:"state"`
	// Counts are as of the last checkpoint (Joined as of the holder's
	// last look; ReadCampaign adds the joins since).
	Counts events.CampaignCounts `json:"counts"`

	// FannedOut: invites [0, FannedOut) were published and acknowledged.
	FannedOut int `json:"fanned_out"`
	// Reserved: no invite at or past it was ever published.
	Reserved int `json:"reserved"`
	// EventSeq: the chunks count every event of the stream up to it.
	EventSeq uint64 `json:"event_seq"`

	// PausedUntil: no invite of the campaign is sent before (Meta's spam
	// rate limit, 131048).
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PauseReason string    `json:"pause_reason,omitempty"`
	// CancelCommands are the cancel_campaign commands waiting for the end.
	CancelCommands []string `json:"cancel_commands,omitempty"`
	// AwaitSeq is the event stream sequence of a replayed invite's result:
	// the holder does not let go of the campaign before it counted it.
	AwaitSeq uint64 `json:"await_seq,omitempty"`

	// Owner is the worker holding the fan-out until LeaseUntil.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Ended: campaign.completed was published and the waiting commands
	// were completed.
	Ended bool `json:"ended,omitempty"`
	// Finished: campaign.completed was published, the waiting commands
	// were completed and the funnel's grace is over: nobody holds it any more.
	Finished bool `json:"finished,omitempty"`

	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

func (s *campaignState) final() bool {
	return s.State == events.CampaignStateCompleted || s.State == events.CampaignStateCancelled
}

// stopping reports whether invites not yet sent must not be sent any more.
func (s *campaignState) stopping() bool {
	return s.State == campaignCancelling || s.State == events.CampaignStateCancelled
}

// needsHolder reports whether a worker has to run the campaign.
func (s *campaignState) needsHolder() bool { return !s.final() || !s.Finished }

// campaignChunk holds the outcomes of campaignChunkSize invites
// (b.<campaign>.<k>). Each counter agrees with the Done bits.
type campaignChunk struct {
	Done      []byte `json:"done"`
	Delivered []byte `json:"delivered,omitempty"`
	Read      []byte `json:"read,omitempty"`
	// Undelivered: sent invites with a failed status, by code in
	// UndeliveredByCode.
	Undelivered       []byte         `json:"undelivered,omitempty"`
	UndeliveredByCode map[string]int `json:"undelivered_by_code,omitempty"`
	// Dead holds, by bit, the failure code counted for invites that went
	// to the dead-letter queue (deadLettered): a replay's result takes
	// the place of that count.
	Dead         map[string]string `json:"dead,omitempty"`
	Sent         int               `json:"sent,omitempty"`
	Failed       int               `json:"failed,omitempty"`
	Cancelled    int               `json:"cancelled,omitempty"`
	Unknown      int               `json:"unknown,omitempty"`
	Duplicates   int               `json:"duplicates,omitempty"`
	FailedByCode map[string]int    `json:"failed_by_code,omitempty"`
}

// joinedChunk holds which invites' recipients joined (j.<campaign>.<k>).
type joinedChunk struct {
	Joined []byte `json:"joined"`
}

// inviteIndex says which campaign invite a recipient got for a group
// (i.<group>.<wa_id>), for the join webhooks.
type inviteIndex struct {
	CampaignID string `json:"campaign_id"`
	N          int    `json:"n"`
	To         string `json:"to"`
	MessageID  string `json:"message_id,omitempty"`
}

func campaignKey(id string) string             { return "m." + escapeKey(id) }
func campaignChunkKey(id string, k int) string { return "b." + escapeKey(id) + "." + strconv.Itoa(k) }
func joinedChunkKey(id string, k int) string   { return "j." + escapeKey(id) + "." + strconv.Itoa(k) }
func inviteIndexKey(groupID, waID string) string {
	return "i." + escapeKey(groupID) + "." + escapeKey(digitsOf(waID))
}

func digitsOf(phone string) string {
	return strings.Map(func(r rune) rune {
		if '0' <= r && r <= '9' {
			return r
		}
		return -1
	}, phone)
}

// inviteID is the command id of invite n of a campaign.
func inviteID(campaignID string, n int) string { return campaignID + ":" + strconv.Itoa(n) }

// parseInviteID splits "<campaign_id>:<n>"; campaign ids may hold ':'.
func parseInviteID(id string) (campaignID string, n int, ok bool) {
	i := strings.LastIndexByte(id, ':')
	if i <= 0 || i == len(id)-1 {
		return "", 0, false
	}
	s := id[i+1:]
	if len(s) > 1 && s[0] == '0' {
		return "", 0, false
	}
	for j := 0; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return "", 0, false
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return "", 0, false
	}
	return id[:i], n, true
}

// campaignTaken is the refusal of a campaign id that command st.CommandID
// started. That command is named only to its own number: campaign ids are
// one space for every number, and the caller may be another business.
func campaignTaken(job *Job, st campaignState) error {
	if st.PhoneNumberID != job.Command.PhoneNumberID {
		return notTheNumbers(job, st.CampaignID)
	}
	return Permanent(fmt.Errorf("campaign %q was started by command %q", st.CampaignID, st.CommandID))
}

// notTheNumbers is the refusal of another number's campaign, which says
// nothing of whose it is (as NotOwnedError of a group).
func notTheNumbers(job *Job, campaignID string) error {
	return Permanent(fmt.Errorf("campaign %q is not one of phone number %s's campaigns (campaign ids are one space for every number)",
		campaignID, job.Command.PhoneNumberID))
}

func startRequestID(campaignID string) string { return "campaign:" + campaignID }
func cancelRequestID(commandID string) string { return "campaign-cancel:" + commandID }

func chunksFor(total int) int { return (total + campaignChunkSize - 1) / campaignChunkSize }

func bitSet(b []byte, i int) bool { return i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 }

func setBit(b []byte, i int) { b[i/8] |= 1 << (i % 8) }

func clearBit(b []byte, i int) { b[i/8] &^= 1 << (i % 8) }

func popcount(b []byte) int {
	n := 0
	for _, x := range b {
		for ; x != 0; x &= x - 1 {
			n++
		}
	}
	return n
}

// inviteCommand is the send_group_invite command of invite n.
func inviteCommand(st *campaignState, n int, inv events.Invite) events.Command {
	p, _ := json.Marshal(events.SendGroupInviteParams{To: inv.To, GroupID: inv.GroupID, Template: st.Template})
	return events.Command{ID: inviteID(st.CampaignID, n), Type: events.SendGroupInvite,
		PhoneNumberID: st.PhoneNumberID, Params: p, Deadline: st.Deadline}
}

// errCampaignPaused is the error of an invite held back by a campaign pause.
var errCampaignPaused = errors.New("the campaign is paused")

// startInviteCampaign records the campaign and leaves the command awaiting
// its end; a campaign holder (any worker) fans it out. Before anything is
// recorded, an invite list in an object store is read once as a stream, to
// count and check every invite: a bad line fails the campaign before
// anything is sent.
func (w *Worker) startInviteCampaign(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.StartInviteCampaignParams](job)
	if err != nil {
		return Result{}, err
	}
	c := w.campaigns
	st, _, err := c.get(ctx, p.CampaignID)
	switch {
	case errors.Is(err, ErrNotFound):
		st, err = c.create(ctx, job, p)
		if err != nil {
			return Result{}, err
		}
	case err != nil:
		return Result{}, err
	case st.CommandID != job.Command.ID:
		return Result{}, campaignTaken(job, st)
	case st.Ended:
		// Over, and its end already handed out: the command is re-sent or
		// replayed after its ledger entry expired (the campaign's lives
		// longer). Nobody would end it again; its result is the campaign's.
		return Result{Data: events.CampaignResult{CampaignID: st.CampaignID, Counts: st.Counts}}, nil
	}
	if err := w.publishCampaignEvent(ctx, st.PhoneNumberID, events.EventCampaignStarted, events.EventID(st.CampaignID, "started"),
		events.CampaignStarted{CampaignID: st.CampaignID, CommandID: st.CommandID, Template: st.Template, Total: st.Total}); err != nil {
		return Result{}, err
	}
	c.wakeSupervisor()
	return Result{Await: []Pending{{RequestID: startRequestID(st.CampaignID)}}}, nil
}

// create checks the invites and creates the campaign's entry. A lost race
// with a redelivery of the same command returns the entry it created.
func (c *campaigns) create(ctx context.Context, job *Job, p events.StartInviteCampaignParams) (campaignState, error) {
	now := c.w.now()
	st := campaignState{
		CampaignID: p.CampaignID, CommandID: job.Command.ID, PhoneNumberID: job.Command.PhoneNumberID,
		Template: p.Template, Object: p.InvitesObject, Deadline: job.Command.Deadline,
		State: campaignRunning, CreatedAt: now, UpdatedAt: now,
	}
	groups := map[string]bool{}
	if p.InvitesObject == nil {
		st.Total = len(p.Invites)
		for _, inv := range p.Invites {
			groups[inv.GroupID] = true
		}
	} else {
		total, digest, err := c.survey(ctx, &st, groups)
		if err != nil {
			return campaignState{}, err
		}
		st.Total, st.ObjectDigest = total, digest
	}
	if st.Total > 0 && !validCommandID(inviteID(st.CampaignID, st.Total-1)) {
		return campaignState{}, Permanent(fmt.Errorf("campaign_id %q is too long: invite ids %q must be at most 128 characters",
			st.CampaignID, inviteID(st.CampaignID, st.Total-1)))
	}
	// Once for the campaign, not per invite: its groups are then recorded
	// as the number's, and each invite's own check finds its group there.
	if err := c.w.checkGroups(ctx, job, slices.Sorted(maps.Keys(groups))); err != nil {
		return campaignState{}, err
	}
	// Events before now cannot be about this campaign's invites.
	stream, err := c.w.js.Stream(ctx, c.w.names.EventStream())
	if err != nil {
		return campaignState{}, fmt.Errorf("campaign: event stream: %w", err)
	}
	st.EventSeq = stream.CachedInfo().State.LastSeq
	st.Counts = events.CampaignCounts{Total: st.Total, Pending: st.Total}
	b, _ := json.Marshal(st)
	rev, err := c.kv.Create(ctx, campaignKey(st.CampaignID), b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			cur, _, gerr := c.get(ctx, st.CampaignID)
			if gerr != nil {
				return campaignState{}, gerr
			}
			if cur.CommandID != st.CommandID {
				return campaignState{}, campaignTaken(job, cur)
			}
			return cur, nil
		}
		return campaignState{}, fmt.Errorf("campaign: create %s: %w", st.CampaignID, err)
	}
	c.remember(st, rev) // this worker's supervisor may take it at once
	c.w.log.InfoContext(ctx, "campaign created", "campaign_id", st.CampaignID, "command_id", st.CommandID, "invites", st.Total)
	return st, nil
}

// survey reads an invite list once, as a stream, checking every invite as
// the worker will check its command, and returns how many there are and
// the object's digest (the list must not change while the campaign runs).
// It adds the invites' groups to groups.
func (c *campaigns) survey(ctx context.Context, st *campaignState, groups map[string]bool) (int, string, error) {
	l, err := c.openObject(ctx, st)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = l.Close() }() // read only: the count and digest are all it gives
	n := 0
	for {
		inv, err := l.Next()
		if errors.Is(err, errEndOfList) {
			break
		}
		if err != nil {
			return 0, "", err
		}
		if err := inviteCommand(st, n, inv).Validate(); err != nil {
			return 0, "", Permanent(fmt.Errorf("invites_object %s/%s, invite %d: %w", st.Object.Bucket, st.Object.Name, n+1, err))
		}
		groups[inv.GroupID] = true
		n++
	}
	return n, l.Digest(), nil
}

// cancelCampaign stops a campaign: invites not yet sent are not sent, and
// count as cancelled. The command completes, with the final counts, when
// the campaign has ended.
func (w *Worker) cancelCampaign(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.CancelCampaignParams](job)
	if err != nil {
		return Result{}, err
	}
	c := w.campaigns
	var phoneMismatch bool
	answerNow := false
	st, err := c.update(ctx, p.CampaignID, func(st *campaignState) error {
		if st.PhoneNumberID != job.Command.PhoneNumberID {
			phoneMismatch = true
			return errNoChange
		}
		if st.final() {
			return errNoChange
		}
		if st.State == campaignRunning {
			st.State = campaignCancelling
		}
		switch {
		case slices.Contains(st.CancelCommands, job.Command.ID):
		case len(st.CancelCommands) >= maxCancelCommands:
			answerNow = true
		default:
			st.CancelCommands = append(st.CancelCommands, job.Command.ID)
		}
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Result{}, Permanent(fmt.Errorf("campaign %q does not exist", p.CampaignID))
	case phoneMismatch:
		return Result{}, notTheNumbers(job, p.CampaignID)
	case errors.Is(err, errNoChange), err == nil && answerNow:
		return Result{Data: events.CampaignResult{CampaignID: st.CampaignID, Counts: st.Counts}}, nil
	case err != nil:
		return Result{}, err
	}
	w.log.InfoContext(ctx, "campaign cancelled", "campaign_id", st.CampaignID, "command_id", job.Command.ID)
	c.wakeSupervisor()
	return Result{Await: []Pending{{RequestID: cancelRequestID(job.Command.ID)}}}, nil
}

// campaignInvite wraps the send_group_invite handler for invites of a
// campaign: a cancelled campaign's invites are not sent (cancelled), a
// paused campaign's wait, Meta's spam limit (131048) pauses the whole
// campaign, and a sent invite is indexed for the join webhooks. Per-recipient
// throttling (131056) and undeliverable recipients (131026) concern that
// invite alone and are left to the handler.
func (w *Worker) campaignInvite(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, job *Job) (Result, error) {
		cid, n, ok := parseInviteID(job.Command.ID)
		if !ok {
			return next.Handle(ctx, job)
		}
		st, found, err := w.campaigns.lookup(ctx, cid)
		if err != nil {
			return Result{}, Transient(err)
		}
		if !found || n >= st.Total || st.PhoneNumberID != job.Command.PhoneNumberID {
			return next.Handle(ctx, job) // an ordinary command whose id looks like an invite's
		}
		var p events.SendGroupInviteParams
		_ = job.Command.DecodeParams(&p)
		// An open intent means the invite may have been sent: the handler
		// reconciles it whatever the campaign's state.
		if job.Entry.Intent == nil {
			if st.stopping() {
				return Result{Outcome: events.OutcomeFailed, GroupID: p.GroupID, Failure: &events.FailureInfo{
					Reason: events.ReasonCancelled, Message: "campaign " + cid + " was cancelled before this invite was sent"}}, nil
			}
			if wait := st.PausedUntil.Sub(w.now()); wait > 0 {
				// Spread the campaign's invites over a moment after the
				// pause, rather than all at its end.
				return Result{}, RetryAfter(wait+rand.N(min(wait/10, 5*time.Second)+time.Millisecond), errCampaignPaused)
			}
		}
		res, err := next.Handle(ctx, job)
		var ge *graph.Error
		if err != nil && errors.As(err, &ge) && ge.Scope() == graph.ScopeSpam {
			until := w.now().Add(max(ge.RetryAfter, time.Second))
			if perr := w.campaigns.pause(ctx, cid, until, ge); perr != nil {
				w.log.WarnContext(ctx, "pause campaign", "campaign_id", cid, "error", perr)
			}
			return Result{}, RetryAfter(until.Sub(w.now()), ge)
		}
		if err != nil || (res.Outcome != "" && res.Outcome != events.OutcomeSucceeded) {
			return res, err
		}
		r, _ := res.Data.(events.SendGroupInviteResult)
		if err := w.campaigns.indexInvite(ctx, p.GroupID, p.To, inviteIndex{CampaignID: cid, N: n, To: p.To, MessageID: r.MessageID}); err != nil {
			// The send is recorded: the redelivery answers from the ledger
			// and indexes again, without sending.
			return Result{}, Transient(fmt.Errorf("index campaign invite: %w", err))
		}
		return res, nil
	})
}

// pause holds back every invite of the campaign until until (Meta's spam
// rate limit answered one of them) and says so in a campaign.progress event.
func (c *campaigns) pause(ctx context.Context, campaignID string, until time.Time, ge *graph.Error) error {
	reason := fmt.Sprintf("Meta's spam rate limit (%d)", ge.Code)
	if ge.Message != "" {
		reason += ": " + truncate(ge.Message, 200)
	}
	st, err := c.update(ctx, campaignID, func(st *campaignState) error {
		// Invites sent at about the same time all come back with 131048:
		// the first pause stands for them.
		if st.final() || !until.After(st.PausedUntil.Add(time.Second)) {
			return errNoChange
		}
		st.PausedUntil, st.PauseReason = until, reason
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	c.w.log.WarnContext(ctx, "campaign paused", "campaign_id", campaignID, "until", until, "reason", reason)
	u := until.UTC()
	return c.w.publishCampaignEvent(ctx, st.PhoneNumberID, events.EventCampaignProgress,
		events.EventID(campaignID, "paused", strconv.FormatInt(until.UnixNano(), 10)),
		events.CampaignProgress{CampaignID: campaignID, Counts: st.Counts, State: events.CampaignStatePaused, PausedUntil: &u, Reason: reason})
}

// publishCampaignEvent publishes a campaign event with its deterministic id
// as Nats-Msg-Id.
func (w *Worker) publishCampaignEvent(ctx context.Context, phone, typ, id string, data any) error {
	if err := w.publishEvent(ctx, domainEvent{typ: typ, id: id, phone: phone, data: data}, nil); err != nil {
		return fmt.Errorf("publish %s: %w", typ, err)
	}
	return nil
}

// campaignCompletion is the result of a start or cancel command from the
// campaign's end, recorded in its pending request by the campaign holder.
func campaignCompletion(e Entry) Result {
	for _, p := range e.Pending {
		if !p.Done {
			continue
		}
		var r events.CampaignResult
		if json.Unmarshal(p.Result, &r) == nil && r.CampaignID != "" {
			return Result{Data: r}
		}
	}
	return Result{Outcome: events.OutcomeFailed, Failure: &events.FailureInfo{
		Reason: events.ReasonPermanentError, Message: "the campaign ended without a result"}}
}

// markCampaignDone records a campaign's result in a waiting command's
// pending request. The request is added when the command has not recorded
// it yet (a campaign can end before its command awaits); the command then
// completes as soon as it awaits.
func markCampaignDone(requestID string, result json.RawMessage) func(*Entry) error {
	return func(e *Entry) error {
		i := slices.IndexFunc(e.Pending, func(p Pending) bool { return p.RequestID == requestID })
		if i < 0 {
			e.Pending = append(e.Pending, Pending{RequestID: requestID, Done: true, Result: result})
			return nil
		}
		if e.Pending[i].Done {
			return errNoChange
		}
		e.Pending[i].Done, e.Pending[i].Result = true, result
		return nil
	}
}

// isCampaignCommand reports whether commands of type t are completed by
// their campaign's end rather than by a webhook (the sweeper leaves them).
func isCampaignCommand(t string) bool {
	return t == events.StartInviteCampaign || t == events.CancelCampaign
}
