package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// errLostCampaign: another worker took the campaign over (this one's lease
// ran out); this holder stops without writing anything more.
var errLostCampaign = errors.New("campaign: lease lost to another worker")

// supervise watches every campaign entry, keeps this worker's view of them
// fresh (cancel and pause reach the invites through it) and takes over the
// campaigns that need a holder and have none. It returns when ctx is done
// and every fan-out held here has checkpointed and let go of its lease.
func (c *campaigns) supervise(ctx context.Context) {
	c.cfg = c.cfg.withDefaults(c.w.ackWait)
	defer c.wg.Wait()
	tick := time.NewTicker(min(max(c.cfg.Lease/4, 100*time.Millisecond), 5*time.Second))
	defer tick.Stop()
	for ctx.Err() == nil {
		watcher, err := c.kv.Watch(ctx, "m.*")
		if err != nil {
			if ctx.Err() == nil {
				c.w.log.WarnContext(ctx, "watch campaigns", slog.Any("error", err))
				sleepCtx(ctx, time.Second)
			}
			continue
		}
		c.watch(ctx, watcher, tick.C)
		_ = watcher.Stop()
	}
}

func (c *campaigns) watch(ctx context.Context, watcher jetstream.KeyWatcher, tick <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-watcher.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue // end of the initial values, or a deletion
			}
			var st campaignState
			if json.Unmarshal(e.Value(), &st) != nil || st.CampaignID == "" {
				continue
			}
			c.remember(st, e.Revision())
			c.adopt(ctx, st.CampaignID)
		case <-tick:
			c.adoptAll(ctx)
		case <-c.wake:
			c.adoptAll(ctx)
		}
	}
}

func (c *campaigns) adoptAll(ctx context.Context) {
	now := c.w.now()
	c.mu.Lock()
	ids := make([]string, 0, len(c.known))
	for id, v := range c.known {
		switch {
		case v.st.needsHolder():
			ids = append(ids, id)
		case now.Sub(v.st.UpdatedAt) > time.Hour:
			// Over long ago: read again should an invite of it come.
			delete(c.known, id)
		}
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.adopt(ctx, id)
	}
}

// adopt takes a campaign over when it needs a holder and nobody holds it:
// one compare-and-set on its entry, which every other worker races for.
func (c *campaigns) adopt(ctx context.Context, id string) {
	c.mu.Lock()
	v, ok := c.known[id]
	_, here := c.held[id]
	c.mu.Unlock()
	now := c.w.now()
	if !ok || here || !v.st.needsHolder() || (v.st.Owner != "" && now.Before(v.st.LeaseUntil)) {
		return
	}
	st := v.st
	st.Owner, st.LeaseUntil, st.UpdatedAt = c.w.id, now.Add(c.cfg.Lease), now
	b, _ := json.Marshal(st)
	rev, err := c.kv.Update(ctx, campaignKey(id), b, v.rev)
	if err != nil {
		return // someone else was faster, or the entry changed: the watch tells
	}
	wake := make(chan struct{}, 1)
	c.mu.Lock()
	c.held[id] = wake
	c.mu.Unlock()
	c.remember(st, rev)
	f := &fanout{c: c, w: c.w, st: st, rev: rev, wake: wake,
		log: c.w.log.With(slog.String("campaign_id", id), slog.String("command_id", st.CommandID))}
	c.wg.Go(func() {
		defer func() {
			c.mu.Lock()
			delete(c.held, id)
			c.mu.Unlock()
		}()
		err := f.run(ctx)
		switch {
		case err == nil, errors.Is(err, errLostCampaign):
		case ctx.Err() != nil:
		default:
			f.log.WarnContext(ctx, "campaign fan-out stopped; it will be resumed", slog.Any("error", err))
		}
		if !errors.Is(err, errLostCampaign) {
			cctx, cancel := cleanupCtx(ctx)
			f.release(cctx)
			cancel()
		}
		if err != nil && !errors.Is(err, errLostCampaign) && ctx.Err() == nil {
			sleepCtx(ctx, time.Second) // not at once: whatever failed may still be failing
			c.wakeSupervisor()
		}
	})
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fanout is one worker's hold on one campaign: it publishes the invites,
// counts their outcomes from the event stream, checkpoints, reports
// progress, and ends the campaign.
type fanout struct {
	c    *campaigns
	w    *Worker
	log  *slog.Logger
	st   campaignState // the entry as this holder last wrote it
	rev  uint64
	wake chan struct{}

	chunks []*chunkState
	// Counters over every chunk.
	done, delivered, read, undelivered int
	sent, failed, cancelled, unknown   int
	duplicates                         int
	failedByCode, undeliveredByCode    map[string]int
	joined                             map[int]int // chunk → joined recipients
	pending                            int         // invites in [0, next) not terminal
	next                               int         // next invite to publish
	inflight                           []published // publishes not acknowledged yet, oldest first
	list                               inviteList
	lastSeq                            uint64 // last event applied
	changed                            bool   // counts changed since the last write
	lastWrite, lastProgress, lastSwep  time.Time
	lastState                          string
	stopped                            bool    // what was never published is counted (cancel, deadline)
	sweepAt                            int     // where the sweep for waiting invites goes on
	traceparent                        *string // the start command's, once read
	window                             int     // invites that may be queued now (adapts to the send rate)
	rateSince                          time.Time
	rateDone                           int // f.done at rateSince
	// seen holds a hash of the Key of every invite of the list before
	// next (seenSet). It is rebuilt whenever the list is opened, from the
	// invites skipped to get to next: whether an invite is a duplicate
	// depends on the list before it only, so every holder decides alike.
	seen *seenSet
}

type chunkState struct {
	c     campaignChunk
	rev   uint64
	dirty bool
}

type published struct {
	n   int
	fut jetstream.PubAckFuture
	end func(*jetstream.PubAck, error) // ends the producer span
}

func (f *fanout) run(ctx context.Context) error {
	if f.st.final() && !f.w.now().Before(f.st.CompletedAt.Add(f.c.cfg.FunnelGrace)) && f.st.EventSeq >= f.st.AwaitSeq {
		if !f.st.Ended {
			if err := f.end(ctx); err != nil {
				return err
			}
		}
		if err := f.close(ctx); !errors.Is(err, errAwaitReplay) {
			return err
		}
	}
	if err := f.load(ctx); err != nil {
		return err
	}
	defer func() {
		if f.list != nil {
			_ = f.list.Close()
		}
	}()
	evs, stopEvents, err := f.consumeEvents(ctx)
	if err != nil {
		return err
	}
	defer stopEvents()
	joins, err := f.c.kv.Watch(ctx, "j."+escapeKey(f.st.CampaignID)+".*")
	if err != nil {
		return fmt.Errorf("campaign: watch joins: %w", err)
	}
	defer func() { _ = joins.Stop() }()
	f.log.InfoContext(ctx, "campaign held", slog.Int("invites", f.st.Total), slog.Int("fanned_out", f.st.FannedOut),
		slog.Int("done", f.done), slog.Uint64("event_seq", f.st.EventSeq))

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if !f.st.final() {
			if err := f.step(ctx); err != nil {
				return err
			}
		}
		if (!f.st.final() && f.done >= f.st.Total) || (f.st.final() && !f.st.Ended) {
			if err := f.end(ctx); err != nil {
				return err
			}
		}
		if f.st.final() {
			// Ended: statuses and joins still come in for a while.
			// A replayed invite's result may still be on its way.
			if !f.w.now().Before(f.st.CompletedAt.Add(f.c.cfg.FunnelGrace)) && f.lastSeq >= f.st.AwaitSeq {
				if err := f.close(ctx); !errors.Is(err, errAwaitReplay) {
					return err
				}
			}
			if err := f.lingering(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-evs:
			if !ok {
				return errors.New("campaign: event consumer stopped")
			}
			f.apply(ctx, m)
			for range 4096 {
				select {
				case m, ok := <-evs:
					if !ok {
						return errors.New("campaign: event consumer stopped")
					}
					f.apply(ctx, m)
					continue
				default:
				}
				break
			}
		case e, ok := <-joins.Updates():
			if !ok {
				return errors.New("campaign: joins watch stopped")
			}
			f.applyJoined(e)
		case <-f.wake:
			if err := f.refresh(); err != nil {
				return err
			}
		case <-tick.C:
		}
	}
}

// load reads the chunks and positions the fan-out at the checkpoint. On
// an error nothing is loaded (f.chunks stays nil), so release writes only
// what the entry already says, never a half-read set of chunks.
func (f *fanout) load(ctx context.Context) error {
	n := chunksFor(f.st.Total)
	chunks := make([]*chunkState, n)
	for k := range n {
		cs := &chunkState{}
		e, err := f.c.kv.Get(ctx, campaignChunkKey(f.st.CampaignID, k))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		case err != nil:
			return fmt.Errorf("campaign: read chunk %d: %w", k, err)
		default:
			if err := json.Unmarshal(e.Value(), &cs.c); err != nil {
				return fmt.Errorf("campaign: decode chunk %d: %w", k, err)
			}
			cs.rev = e.Revision()
		}
		for _, b := range []*[]byte{&cs.c.Done, &cs.c.Delivered, &cs.c.Read, &cs.c.Undelivered} {
			if len(*b) < campaignChunkSize/8 {
				*b = append(*b, make([]byte, campaignChunkSize/8-len(*b))...)
			}
		}
		chunks[k] = cs
	}
	f.chunks = chunks
	f.failedByCode, f.undeliveredByCode = map[string]int{}, map[string]int{}
	f.joined = map[int]int{}
	for _, cs := range chunks {
		f.done += popcount(cs.c.Done)
		f.delivered += popcount(cs.c.Delivered)
		f.read += popcount(cs.c.Read)
		f.undelivered += popcount(cs.c.Undelivered)
		for code, v := range cs.c.UndeliveredByCode {
			f.undeliveredByCode[code] += v
		}
		f.sent += cs.c.Sent
		f.failed += cs.c.Failed
		f.cancelled += cs.c.Cancelled
		f.unknown += cs.c.Unknown
		f.duplicates += cs.c.Duplicates
		for code, v := range cs.c.FailedByCode {
			f.failedByCode[code] += v
		}
	}
	f.next, f.lastSeq = f.st.FannedOut, f.st.EventSeq
	f.st.Reserved = max(f.st.Reserved, f.st.FannedOut)
	for i := range f.next {
		if !f.isDone(i) {
			f.pending++
		}
	}
	f.lastState = f.state()
	return nil
}

func (f *fanout) isDone(n int) bool {
	return bitSet(f.chunks[n/campaignChunkSize].c.Done, n%campaignChunkSize)
}

// consumeEvents reads, from the checkpoint's stream sequence on, the
// events that concern the campaign: terminal events and message statuses
// of its phone number.
func (f *fanout) consumeEvents(ctx context.Context) (<-chan jetstream.Msg, func(), error) {
	n := f.w.names
	phone := f.st.PhoneNumberID
	cons, err := f.w.js.OrderedConsumer(ctx, n.EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{n.Event(phone, "command.*"), n.Event(phone, events.EventMessageStatus)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    f.st.EventSeq + 1,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("campaign: consume events: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return nil, nil, fmt.Errorf("campaign: consume events: %w", err)
	}
	ch := make(chan jetstream.Msg, 512)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			m, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			if err != nil {
				sleepCtx(ctx, 100*time.Millisecond) // the ordered consumer recovers by itself
				continue
			}
			select {
			case ch <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, func() { it.Stop(); <-done }, nil
}

// apply counts one event.
func (f *fanout) apply(ctx context.Context, m jetstream.Msg) {
	if md, err := m.Metadata(); err == nil {
		f.lastSeq = max(f.lastSeq, md.Sequence.Stream)
	}
	cid := f.st.CampaignID
	data := m.Data()
	// Most events are about other commands: look before decoding.
	if !bytes.Contains(data, []byte(`"`+cid+`:`)) {
		return
	}
	if strings.HasSuffix(m.Subject(), "."+events.EventMessageStatus) {
		var ev struct {
			Data events.MessageStatus `json:"data"`
		}
		if json.Unmarshal(data, &ev) != nil {
			return
		}
		id, n, ok := parseInviteID(ev.Data.CommandID)
		if !ok || id != cid || n >= f.st.Total {
			return
		}
		f.applyStatus(n, ev.Data)
		return
	}
	var ev struct {
		Data events.CommandResult `json:"data"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return
	}
	id, n, ok := parseInviteID(ev.Data.CommandID)
	if !ok || id != cid || n >= f.st.Total || ev.Data.CommandType != events.SendGroupInvite {
		return // not ours
	}
	if f.isDone(n) && (ev.Data.Replay == "" || !f.uncount(n)) {
		return // counted already (a re-published result)
	}
	f.recordResult(ctx, n, ev.Data)
}

// recordResult counts the result of invite n, once, noting a failure a
// dead-letter replay may take back.
func (f *fanout) recordResult(ctx context.Context, n int, r events.CommandResult) {
	kind, code := inviteOutcome(r)
	f.record(ctx, n, kind, code)
	if deadLettered(r) {
		f.chunks[n/campaignChunkSize].c.markDead(n%campaignChunkSize, code)
	}
}

// uncount takes back the counted outcome of invite n when it went to the
// dead-letter queue, for its replay's result to be counted instead.
func (f *fanout) uncount(n int) bool {
	cs := f.chunks[n/campaignChunkSize]
	code, ok := cs.c.uncount(n % campaignChunkSize)
	if !ok {
		return false
	}
	f.failed--
	if f.failedByCode[code]--; f.failedByCode[code] <= 0 {
		delete(f.failedByCode, code)
	}
	f.done--
	if n < f.next {
		f.pending++
	}
	cs.dirty, f.changed = true, true
	return true
}

// Invite outcomes, as counted.
const (
	inviteSent      = "sent"
	inviteFailed    = "failed"
	inviteCancelled = "cancelled"
	inviteUnknown   = "unknown"
	// inviteDuplicate: an earlier invite of the list has its Key; it is
	// never published.
	inviteDuplicate = "duplicate"
)

func inviteOutcome(r events.CommandResult) (kind, code string) {
	switch r.Outcome {
	case events.OutcomeSucceeded, events.OutcomePartiallySucceeded:
		return inviteSent, ""
	case events.OutcomeRejected:
		return inviteFailed, events.OutcomeRejected
	}
	if r.Error == nil {
		return inviteFailed, events.ReasonPermanentError
	}
	switch r.Error.Reason {
	case events.ReasonCancelled:
		return inviteCancelled, ""
	case events.ReasonOutcomeUnknown:
		return inviteUnknown, ""
	}
	if r.Error.Code != 0 {
		return inviteFailed, strconv.Itoa(r.Error.Code)
	}
	return inviteFailed, r.Error.Reason
}

// record counts the outcome of invite n, once.
func (f *fanout) record(ctx context.Context, n int, kind, code string) {
	cs := f.chunks[n/campaignChunkSize]
	if !cs.c.add(n%campaignChunkSize, kind, code) {
		return
	}
	switch kind {
	case inviteSent:
		f.sent++
	case inviteCancelled:
		f.cancelled++
	case inviteUnknown:
		f.unknown++
	case inviteDuplicate:
		f.duplicates++
	default:
		f.failed++
		f.failedByCode[code]++
	}
	cs.dirty, f.changed = true, true
	f.done++
	if n < f.next {
		f.pending--
	}
	f.w.metrics.CampaignInvite(ctx, kind)
}

// add counts invite bit's outcome in the chunk unless it is counted
// already, and reports whether it did.
func (c *campaignChunk) add(bit int, kind, code string) bool {
	if bitSet(c.Done, bit) {
		return false
	}
	setBit(c.Done, bit)
	switch kind {
	case inviteSent:
		c.Sent++
	case inviteCancelled:
		c.Cancelled++
	case inviteUnknown:
		c.Unknown++
	case inviteDuplicate:
		c.Duplicates++
	default:
		c.Failed++
		if c.FailedByCode == nil {
			c.FailedByCode = map[string]int{}
		}
		c.FailedByCode[code]++
	}
	return true
}

func (f *fanout) applyStatus(n int, st events.MessageStatus) {
	cs := f.chunks[n/campaignChunkSize]
	bit := n % campaignChunkSize
	switch st.Status {
	case events.StatusFailed:
		// Meta took the send, then could not deliver it: the invite stays
		// sent, and the funnel says why it went no further.
		if !bitSet(cs.c.Undelivered, bit) {
			setBit(cs.c.Undelivered, bit)
			code := "unknown"
			if len(st.Errors) > 0 && st.Errors[0].Code != 0 {
				code = strconv.Itoa(st.Errors[0].Code)
			}
			if cs.c.UndeliveredByCode == nil {
				cs.c.UndeliveredByCode = map[string]int{}
			}
			cs.c.UndeliveredByCode[code]++
			f.undeliveredByCode[code]++
			f.undelivered++
			cs.dirty, f.changed = true, true
		}
	case "read":
		if !bitSet(cs.c.Read, bit) {
			setBit(cs.c.Read, bit)
			f.read++
			cs.dirty, f.changed = true, true
		}
		fallthrough // read without a delivered status: it was delivered
	case "delivered":
		if !bitSet(cs.c.Delivered, bit) {
			setBit(cs.c.Delivered, bit)
			f.delivered++
			cs.dirty, f.changed = true, true
		}
	}
}

func (f *fanout) applyJoined(e jetstream.KeyValueEntry) {
	if e == nil || e.Operation() != jetstream.KeyValuePut {
		return
	}
	k, err := strconv.Atoi(e.Key()[strings.LastIndexByte(e.Key(), '.')+1:])
	if err != nil {
		return
	}
	var jc joinedChunk
	if json.Unmarshal(e.Value(), &jc) == nil && f.joined[k] != popcount(jc.Joined) {
		f.joined[k] = popcount(jc.Joined)
		f.changed = true
	}
}

// refresh takes in what others wrote to the entry: a cancel, a pause, or a
// takeover.
func (f *fanout) refresh() error {
	v, ok := f.c.view(f.st.CampaignID)
	if !ok || v.rev <= f.rev {
		return nil
	}
	if v.st.Owner != f.w.id || !v.st.LeaseUntil.Equal(f.st.LeaseUntil) {
		return errLostCampaign
	}
	f.merge(v.st)
	f.rev = v.rev
	return nil
}

// merge takes the fields others may write from cur.
func (f *fanout) merge(cur campaignState) {
	f.st.PausedUntil, f.st.PauseReason = cur.PausedUntil, cur.PauseReason
	f.st.CancelCommands = cur.CancelCommands
	f.st.AwaitSeq = max(f.st.AwaitSeq, cur.AwaitSeq)
	if cur.State == campaignCancelling && f.st.State == campaignRunning {
		f.st.State = campaignCancelling
	}
}

// state is the campaign's state for progress events.
func (f *fanout) state() string {
	switch {
	case f.st.State == campaignCancelling:
		return events.CampaignStateCancelling
	case f.w.now().Before(f.st.PausedUntil):
		return events.CampaignStatePaused
	}
	return events.CampaignStateRunning
}

func (f *fanout) expired() bool {
	return f.st.Deadline != nil && f.w.now().After(*f.st.Deadline)
}

// step does what is due: stop or top up the fan-out, checkpoint, report.
func (f *fanout) step(ctx context.Context) error {
	now := f.w.now()
	switch {
	case f.st.State == campaignCancelling || f.expired():
		if err := f.stop(ctx); err != nil {
			return err
		}
	case now.Before(f.st.PausedUntil):
		// Paused: the invites already queued wait in the consumer.
	default:
		if err := f.topUp(ctx); err != nil {
			return err
		}
	}
	if err := f.reap(ctx, false); err != nil {
		return err
	}
	state := f.state()
	if (f.changed && now.Sub(f.lastWrite) >= f.c.cfg.ProgressInterval) || now.Sub(f.lastWrite) >= f.c.cfg.Lease/3 || state != f.lastState {
		if err := f.checkpoint(ctx, nil); err != nil {
			return err
		}
	}
	if state != f.lastState || (f.changed && now.Sub(f.lastProgress) >= f.c.cfg.ProgressInterval) {
		f.progress(ctx, state)
	}
	return nil
}

// topUp publishes invites while fewer than Window are queued.
func (f *fanout) topUp(ctx context.Context) error {
	cfg := f.c.cfg
	f.adaptWindow()
	for f.next < f.st.Total && f.pending < f.window {
		n := f.next
		if n >= f.st.Reserved {
			// Nobody may publish past Reserved without writing it first.
			if err := f.checkpoint(ctx, func(st *campaignState) { st.Reserved = n + cfg.CheckpointEvery }); err != nil {
				return err
			}
		}
		if f.list == nil {
			err := f.openList(ctx, n)
			if errors.Is(err, errListChanged) {
				return f.listChanged(ctx)
			}
			if err != nil {
				return err
			}
		}
		inv, err := f.list.Next()
		if errors.Is(err, errEndOfList) {
			return f.listChanged(ctx)
		}
		if err != nil {
			return err
		}
		first := f.seen.add(inv)
		if f.isDone(n) {
			f.next++
			continue // counted already: a worker before this one published it
		}
		if !first {
			f.record(ctx, n, inviteDuplicate, "")
			f.next++
			continue
		}
		cmd := inviteCommand(&f.st, n, inv)
		body, err := json.Marshal(cmd)
		if err != nil {
			return err
		}
		m := &nats.Msg{Subject: f.w.names.Command(f.st.PhoneNumberID, events.SendGroupInvite), Data: body, Header: nats.Header{}}
		end := f.w.startPublish(f.traceCtx(ctx), m, cmd.ID)
		fut, err := f.w.js.PublishMsgAsync(m)
		if err != nil {
			// Refused before it was sent (too many in flight, connection
			// closed): the checkpoint must not pass it, or it is never
			// sent and the campaign never ends.
			end(nil, err)
			return fmt.Errorf("campaign: publish invite %d: %w", n, err)
		}
		f.next++
		f.inflight = append(f.inflight, published{n: n, fut: fut, end: end})
		f.pending++
		if len(f.inflight) >= cfg.MaxPublishesInFlight {
			if err := f.reap(ctx, true); err != nil {
				return err
			}
		}
	}
	if f.next >= f.st.Total {
		f.seen = nil // nothing more to read
	}
	return nil
}

// openList opens the campaign's invites at invite n, and fills seen with
// the invites before it.
func (f *fanout) openList(ctx context.Context, n int) error {
	f.seen = newSeenSet(f.st.Total)
	l, err := f.c.openList(ctx, &f.st, n, func(inv events.Invite) { f.seen.add(inv) })
	if err != nil {
		f.seen = nil
		return err
	}
	f.list = l
	return nil
}

// traceCtx is ctx in the trace of the campaign's start command (its
// traceparent in the ledger), so each invite's publish is a producer span
// of that trace and the invite's processing continues it.
func (f *fanout) traceCtx(ctx context.Context) context.Context {
	if f.traceparent == nil {
		tp := ""
		if e, _, err := f.w.ledger.Get(ctx, f.st.CommandID); err == nil {
			tp = e.Traceparent
		}
		f.traceparent = &tp
	}
	return traceCtx(ctx, *f.traceparent)
}

// adaptWindow sizes the window to about a second of sends at the rate
// invites are ending (between 64 and Window). Queued invites are ahead of
// any other command in the stream, a cancel included: the window is what
// a cancel waits for, so it is kept no larger than the send rate needs.
func (f *fanout) adaptWindow() {
	now := f.w.now()
	if f.window == 0 {
		f.window, f.rateSince, f.rateDone = min(64, f.c.cfg.Window), now, f.done
		return
	}
	if el := now.Sub(f.rateSince); el >= time.Second {
		rate := float64(f.done-f.rateDone) / el.Seconds()
		f.window = min(max(int(rate), 64, f.window/2), f.c.cfg.Window)
		// While the window is full, the rate is what limits: let it grow.
		if f.pending >= f.window {
			f.window = min(f.window*2, f.c.cfg.Window)
		}
		f.rateSince, f.rateDone = now, f.done
	}
}

// reap collects acknowledged publishes, in order; with wait it waits for
// the oldest one.
func (f *fanout) reap(ctx context.Context, wait bool) error {
	for len(f.inflight) > 0 {
		p := f.inflight[0]
		var err error
		var ack *jetstream.PubAck
		if wait {
			select {
			case ack = <-p.fut.Ok():
			case err = <-p.fut.Err():
			case <-ctx.Done():
				return ctx.Err()
			}
			wait = false
		} else {
			select {
			case ack = <-p.fut.Ok():
			case err = <-p.fut.Err():
			default:
				return nil
			}
		}
		p.end(ack, err)
		if err != nil {
			// Start again from the last acknowledged invite.
			return fmt.Errorf("campaign: publish invite %d: %w", p.n, err)
		}
		f.inflight = f.inflight[1:]
	}
	return nil
}

// checkpoint writes the changed chunks, then the entry: fan-out position,
// stream sequence, counts and lease. Chunks first, so that whatever the
// entry says is counted is in the chunks. mutate changes the entry
// further. A conflict on the entry from a cancel or a pause is merged; one
// from a takeover ends this holder.
func (f *fanout) checkpoint(ctx context.Context, mutate func(*campaignState)) error {
	for k, cs := range f.chunks {
		if !cs.dirty {
			continue
		}
		b, _ := json.Marshal(cs.c)
		key := campaignChunkKey(f.st.CampaignID, k)
		rev, ok, err := putAtRevision(ctx, f.c.kv, key, b, cs.rev)
		if err != nil {
			return fmt.Errorf("campaign: write chunk %d: %w", k, err)
		}
		if !ok {
			return errLostCampaign
		}
		cs.rev, cs.dirty = rev, false
	}
	now := f.w.now()
	st := f.st
	st.FannedOut = f.next
	if len(f.inflight) > 0 {
		st.FannedOut = f.inflight[0].n
	}
	st.EventSeq, st.Counts = f.lastSeq, f.counts()
	st.Owner, st.LeaseUntil, st.UpdatedAt = f.w.id, now.Add(f.c.cfg.Lease), now
	if mutate != nil {
		mutate(&st)
	}
	for {
		b, _ := json.Marshal(st)
		rev, err := f.c.kv.Update(ctx, campaignKey(st.CampaignID), b, f.rev)
		if err == nil {
			f.st, f.rev, f.changed, f.lastWrite = st, rev, false, now
			f.c.remember(st, rev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("campaign: checkpoint: %w", err)
		}
		cur, rev, gerr := f.c.get(ctx, st.CampaignID)
		if gerr != nil {
			return gerr
		}
		if cur.Owner != f.w.id || !cur.LeaseUntil.Equal(f.st.LeaseUntil) {
			return errLostCampaign
		}
		f.merge(cur)
		st.PausedUntil, st.PauseReason, st.CancelCommands = cur.PausedUntil, cur.PauseReason, cur.CancelCommands
		st.AwaitSeq = f.st.AwaitSeq
		if st.Finished && f.lastSeq < st.AwaitSeq {
			f.rev = rev
			return errAwaitReplay // a replay's result came meanwhile: count it first
		}
		if cur.State == campaignCancelling && st.State == campaignRunning {
			st.State = campaignCancelling
		}
		f.rev = rev
	}
}

// release ends this worker's hold with a last checkpoint, so another worker
// can take the campaign over at once.
func (f *fanout) release(ctx context.Context) {
	if f.chunks == nil && !f.st.final() {
		return // never loaded: nothing to write but the lease, which runs out
	}
	if f.st.Finished {
		return
	}
	if err := f.checkpoint(ctx, func(st *campaignState) { st.Owner, st.LeaseUntil = "", time.Time{} }); err != nil && !errors.Is(err, errLostCampaign) {
		f.log.WarnContext(ctx, "release campaign", slog.Any("error", err))
	}
}

func (f *fanout) counts() events.CampaignCounts {
	c := events.CampaignCounts{
		Total: f.st.Total, Sent: f.sent, Failed: f.failed, Cancelled: f.cancelled, Unknown: f.unknown, Duplicates: f.duplicates,
		Queued: max(f.pending, 0), Delivered: f.delivered, Read: f.read, Undelivered: f.undelivered,
	}
	if f.chunks == nil { // finishing only: the entry has them
		c = f.st.Counts
	}
	c.Pending = c.Total - c.Sent - c.Failed - c.Cancelled - c.Unknown - c.Duplicates
	if len(f.failedByCode) > 0 {
		c.FailedByCode = maps.Clone(f.failedByCode)
	}
	if len(f.undeliveredByCode) > 0 {
		c.UndeliveredByCode = maps.Clone(f.undeliveredByCode)
	}
	for _, j := range f.joined {
		c.Joined += j
	}
	return c
}

// progress publishes campaign.progress. Its id holds the time slot, so two
// holders of one campaign (a takeover) publish at most one per slot.
func (f *fanout) progress(ctx context.Context, state string) {
	now := f.w.now()
	slot := now.UnixNano() / int64(f.c.cfg.ProgressInterval)
	data := events.CampaignProgress{CampaignID: f.st.CampaignID, Counts: f.counts(), State: state}
	if state == events.CampaignStatePaused {
		u := f.st.PausedUntil.UTC()
		data.PausedUntil, data.Reason = &u, f.st.PauseReason
	}
	id := events.EventID(f.st.CampaignID, "progress", state, strconv.FormatInt(slot, 10))
	if err := f.w.publishCampaignEvent(ctx, f.st.PhoneNumberID, events.EventCampaignProgress, id, data); err != nil {
		f.log.WarnContext(ctx, "publish campaign progress", slog.Any("error", err))
		return
	}
	f.lastProgress, f.lastState = now, state
}

// stop ends the fan-out of a cancelled (or expired) campaign. Invites
// never published are counted at once; invites a previous holder may have
// published (between the checkpoint and the reservation) are made terminal
// in the ledger unless their command got there first; invites queued and
// not claimed by a live worker (waiting out a throttle or a pause) are
// cancelled in the ledger; the rest end in their handlers, which see the
// campaign's state.
func (f *fanout) stop(ctx context.Context) error {
	cancelled := f.st.State == campaignCancelling
	kind, code, reason := inviteCancelled, "", events.ReasonCancelled
	msg := "campaign " + f.st.CampaignID + " was cancelled before this invite was sent"
	if !cancelled {
		kind, code, reason = inviteFailed, events.ReasonExpired, events.ReasonExpired
		msg = "the campaign's deadline passed before this invite was sent"
	}
	// Each pass works for a bounded time, so the holder keeps renewing
	// its lease however much there is to do.
	until := f.w.now().Add(f.c.cfg.Lease / 6)
	if !f.stopped {
		// Every invite published must exist: a failed publish starts the
		// holder again from the last acknowledged one.
		for len(f.inflight) > 0 {
			if err := f.reap(ctx, true); err != nil {
				return err
			}
		}
		for n := f.st.Reserved; n < f.st.Total; n++ {
			f.record(ctx, n, kind, code)
		}
		// Invites a previous holder may have published: from here on they
		// count as queued, and each ends either here or in its handler.
		for n := f.next; n < min(f.st.Reserved, f.st.Total); n++ {
			if f.w.now().After(until) {
				return nil
			}
			if err := f.endUnclaimed(ctx, n, reason, msg); err != nil {
				return err // not past n: the next holder ends it again
			}
			// Counted after: one endUnclaimed counted at once (the list
			// changed) is not queued.
			f.next = n + 1
			if !f.isDone(n) {
				f.pending++
			}
		}
		f.stopped = true
		f.lastSwep = f.w.now()
		f.log.InfoContext(ctx, "campaign fan-out stopped", slog.String("reason", reason), slog.Int("queued", f.pending))
	}
	// Queued invites waiting out a pause or a throttle would only be
	// cancelled by their handler when they come back: end them now. The
	// others come through the consumer soon enough, so look seldom.
	if cancelled && f.pending > 0 && f.w.now().Sub(f.lastSwep) >= 2*time.Second {
		for ; f.sweepAt < f.next; f.sweepAt++ {
			if f.w.now().After(until) {
				return nil
			}
			if f.isDone(f.sweepAt) {
				continue
			}
			if err := f.endWaiting(ctx, f.sweepAt, reason, msg); err != nil {
				return err
			}
		}
		f.sweepAt, f.lastSwep = 0, f.w.now()
	}
	return nil
}

// endUnclaimed makes invite n terminal in the ledger if no command of it
// was ever claimed; a command published by a previous holder then finds it
// done and sends nothing.
func (f *fanout) endUnclaimed(ctx context.Context, n int, reason, msg string) error {
	if f.list == nil {
		err := f.openList(ctx, n)
		if errors.Is(err, errListChanged) {
			// Nothing more can be read: this invite and the ones after
			// it end as at the end of the list, without opening it again.
			f.list = &sliceList{}
		} else if err != nil {
			return err
		}
	}
	inv, err := f.list.Next()
	if errors.Is(err, errEndOfList) || errors.Is(err, errListChanged) {
		// The command cannot be rebuilt; a previous holder's, if any, is
		// not counted.
		f.record(ctx, n, inviteFailed, "list_changed")
		return nil
	}
	if err != nil {
		return err
	}
	if f.isDone(n) {
		return nil
	}
	cmd := inviteCommand(&f.st, n, inv)
	body, _ := json.Marshal(cmd)
	t, err := f.w.terminal(f.w.commandResult(cmd, Result{Outcome: events.OutcomeFailed, GroupID: inv.GroupID,
		Failure: &events.FailureInfo{Reason: reason, Message: msg}}, 0))
	if err != nil {
		return err
	}
	e, err := f.w.ledger.FinishNew(ctx, Entry{CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
		Subject: f.w.names.Command(cmd.PhoneNumberID, cmd.Type), Command: body, State: StateFailed, Result: &t})
	switch {
	case errors.Is(err, ErrTerminal) && e.Result != nil && !e.Result.Published:
		// Ended before (here, or by its command) but its event never went
		// out: a failed publish, or a holder gone in between. Nothing else
		// publishes it, and the campaign counts the invite from it.
	case errors.Is(err, ErrExists), errors.Is(err, ErrTerminal):
		return nil // its command got there first and ends it
	case err != nil:
		return err
	}
	return f.w.publishTerminal(ctx, e, false)
}

// endWaiting cancels a queued invite whose command nobody is executing
// and that never tried to send (a pause or a throttle holds it back).
func (f *fanout) endWaiting(ctx context.Context, n int, reason, msg string) error {
	id := inviteID(f.st.CampaignID, n)
	e, _, err := f.w.ledger.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil // not delivered yet: its handler cancels it
	}
	if err != nil {
		return err
	}
	if e.State != StateRunning || e.Intent != nil || (e.Owner != "" && f.w.now().Before(e.LeaseUntil)) {
		return nil
	}
	var cmd events.Command
	if err := json.Unmarshal(e.Command, &cmd); err != nil {
		// Skip it rather than stop the sweep at it on every pass: its
		// handler ends it when it comes back.
		return nil //nolint:nilerr // an undecodable command is left to its handler
	}
	var p events.SendGroupInviteParams
	_ = cmd.DecodeParams(&p)
	t, err := f.w.terminal(f.w.commandResult(cmd, Result{Outcome: events.OutcomeFailed, GroupID: p.GroupID,
		Failure: &events.FailureInfo{Reason: reason, Message: msg}}, deliveries(e)))
	if err != nil {
		return err
	}
	e, err = f.w.ledger.Finish(ctx, id, "", StateFailed, t, nil, func(e *Entry) error {
		if e.State != StateRunning || e.Intent != nil || (e.Owner != "" && f.w.now().Before(e.LeaseUntil)) {
			return errNoChange // claimed meanwhile: its handler ends it
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoChange), errors.Is(err, ErrTerminal):
		return nil
	case err != nil:
		return err
	}
	return f.w.publishTerminal(ctx, e, false)
}

// listChanged stops a campaign whose object list was replaced or cut
// short: invites not yet published fail ("list_changed").
func (f *fanout) listChanged(ctx context.Context) error {
	f.log.ErrorContext(ctx, "campaign invite list changed; the invites not yet published are not sent",
		slog.Int("next", f.next), slog.Int("total", f.st.Total))
	for n := max(f.next, f.st.Reserved); n < f.st.Total; n++ {
		f.record(ctx, n, inviteFailed, "list_changed")
	}
	for n := f.next; n < min(f.st.Reserved, f.st.Total); n++ {
		f.record(ctx, n, inviteFailed, "list_changed")
	}
	f.next = f.st.Total
	return nil
}

// lingering keeps counting the funnel of an ended campaign: the entry is
// written when it changed, and the lease renewed.
func (f *fanout) lingering(ctx context.Context) error {
	now := f.w.now()
	if (f.changed && now.Sub(f.lastWrite) >= f.c.cfg.ProgressInterval) || now.Sub(f.lastWrite) >= f.c.cfg.Lease/3 {
		return f.checkpoint(ctx, nil)
	}
	return nil
}

// close lets go of an ended campaign for good.
func (f *fanout) close(ctx context.Context) error {
	return f.checkpoint(ctx, func(st *campaignState) { st.Finished, st.Owner, st.LeaseUntil = true, "", time.Time{} })
}

// end ends the campaign, once: the entry becomes final, then
// campaign.completed is published and the start command and every cancel
// command waiting for the end complete with the final counts. A holder
// that dies in between leaves the entry final and not Finished; the next
// holder does the rest (ids make every step idempotent).
func (f *fanout) end(ctx context.Context) error {
	if !f.st.final() {
		state := events.CampaignStateCompleted
		if f.st.State == campaignCancelling {
			state = events.CampaignStateCancelled
		}
		if err := f.checkpoint(ctx, func(st *campaignState) { st.State, st.CompletedAt = state, f.w.now() }); err != nil {
			return err
		}
		f.log.InfoContext(ctx, "campaign ended", slog.String("state", state), slog.Any("counts", f.st.Counts))
	}
	counts := f.st.Counts
	if j, err := f.c.joinedCount(ctx, f.st.CampaignID, f.st.Total); err == nil {
		counts.Joined = max(counts.Joined, j)
	}
	if err := f.w.publishCampaignEvent(ctx, f.st.PhoneNumberID, events.EventCampaignCompleted, events.EventID(f.st.CampaignID, "completed"),
		events.CampaignCompleted{CampaignID: f.st.CampaignID, CommandID: f.st.CommandID, State: f.st.State, Counts: counts}); err != nil {
		return err
	}
	result, _ := json.Marshal(events.CampaignResult{CampaignID: f.st.CampaignID, Counts: counts})
	if err := f.w.settle(ctx, f.st.CommandID, true, markCampaignDone(startRequestID(f.st.CampaignID), result)); err != nil {
		return fmt.Errorf("campaign: complete %s: %w", f.st.CommandID, err)
	}
	for _, id := range f.st.CancelCommands {
		if err := f.w.settle(ctx, id, true, markCampaignDone(cancelRequestID(id), result)); err != nil {
			return fmt.Errorf("campaign: complete %s: %w", id, err)
		}
	}
	return f.checkpoint(ctx, func(st *campaignState) { st.Ended, st.Counts = true, counts })
}
