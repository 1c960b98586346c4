package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
)

// Campaign invites replayed from the dead-letter queue.
//
// A dead-lettered invite is counted failed like any other. `groupctl dlq
// replay` executes it again, and its new result (with events.CommandResult
// Replay set) takes the place of that failure in the campaign's counts:
// the chunk remembers the code it counted for each dead-lettered invite
// (campaignChunk.Dead), so the count can be taken back once.
//
// Who counts the replay's result depends on whether the campaign is still
// held. While a holder reads the campaign's events (running, or ended and
// within FunnelGrace), it does, as it counts every result; the worker that
// published the result sets AwaitSeq so the holder does not let go before
// reading it. A campaign let go of for good (Finished) has no holder: the
// worker that published the result counts it in the chunk itself and
// recomputes the entry's counts from the chunks. Both steps are
// compare-and-set on the entry, so exactly one of the two counts it.

// errAwaitReplay: the holder was about to let go of a campaign whose
// replayed invite's result it has not read yet.
var errAwaitReplay = errors.New("campaign: a replayed invite's result is still to be counted")

// deadLettered reports whether r is a failure that went to the dead-letter
// queue, and may be replayed: retries exhausted, or a handler's panic
// (permanent_error without a Graph code).
func deadLettered(r events.CommandResult) bool {
	if r.Outcome != events.OutcomeFailed || r.Error == nil {
		return false
	}
	return r.Error.Reason == events.ReasonRetriesExhausted || (r.Error.Reason == events.ReasonPermanentError && r.Error.Code == 0)
}

// markDead notes the failure code counted for the dead-lettered invite bit.
func (c *campaignChunk) markDead(bit int, code string) {
	if c.Dead == nil {
		c.Dead = map[string]string{}
	}
	c.Dead[strconv.Itoa(bit)] = code
}

// uncount takes back the failure counted for the dead-lettered invite bit
// and reports its code; false if bit is not such an invite (any more).
func (c *campaignChunk) uncount(bit int) (string, bool) {
	key := strconv.Itoa(bit)
	code, ok := c.Dead[key]
	if !ok || !bitSet(c.Done, bit) {
		return "", false
	}
	delete(c.Dead, key)
	clearBit(c.Done, bit)
	c.Failed--
	if c.FailedByCode[code]--; c.FailedByCode[code] <= 0 {
		delete(c.FailedByCode, code)
	}
	return code, true
}

// count records the result of invite bit in c, as fanout.recordResult
// does, when it is not counted yet.
func (c *campaignChunk) count(bit int, r events.CommandResult) {
	kind, code := inviteOutcome(r)
	if c.add(bit, kind, code) && deadLettered(r) {
		c.markDead(bit, code)
	}
}

// replayed sees to it that the result of a replayed campaign invite,
// published at sequence seq of the event stream, is counted in its
// campaign: by the holder if there is one, else here.
func (c *campaigns) replayed(ctx context.Context, r events.CommandResult, seq uint64) error {
	cid, n, ok := parseInviteID(r.CommandID)
	if !ok || r.Replay == "" || r.CommandType != events.SendGroupInvite {
		return nil
	}
	finished := false
	st, err := c.update(ctx, cid, func(st *campaignState) error {
		if n >= st.Total || st.PhoneNumberID != r.PhoneNumberID {
			return errNoChange // an ordinary command whose id looks like an invite's
		}
		if finished = st.Finished; finished || st.AwaitSeq >= seq {
			return errNoChange
		}
		st.AwaitSeq = seq
		return nil
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil && !errors.Is(err, errNoChange):
		return err
	case !finished:
		return nil // the holder counts it before letting go
	}
	return c.recountFinished(ctx, st, n, r)
}

// recountFinished counts r in the chunk of invite n of a campaign nobody
// holds any more, then recomputes the entry's counts from its chunks.
// Both writes are idempotent: a retry after a failure between them only
// does the second.
func (c *campaigns) recountFinished(ctx context.Context, st campaignState, n int, r events.CommandResult) error {
	key := campaignChunkKey(st.CampaignID, n/campaignChunkSize)
	bit := n % campaignChunkSize
	for {
		e, err := c.kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("campaign: read chunk of a replayed invite: %w", err)
		}
		var ch campaignChunk
		if err := json.Unmarshal(e.Value(), &ch); err != nil {
			return fmt.Errorf("campaign: decode chunk of a replayed invite: %w", err)
		}
		if _, ok := ch.uncount(bit); !ok {
			break // counted already, or not a dead-lettered invite
		}
		ch.count(bit, r)
		b, _ := json.Marshal(ch)
		if _, ok, err := putAtRevision(ctx, c.kv, key, b, e.Revision()); err != nil {
			return fmt.Errorf("campaign: write chunk of a replayed invite: %w", err)
		} else if ok {
			break
		}
	}
	counts, err := c.chunkCounts(ctx, st)
	if err != nil {
		return err
	}
	_, err = c.update(ctx, st.CampaignID, func(st *campaignState) error {
		counts.Joined = st.Counts.Joined
		st.Counts = counts
		return nil
	})
	return err
}

// chunkCounts adds up the counts of a campaign's chunks.
func (c *campaigns) chunkCounts(ctx context.Context, st campaignState) (events.CampaignCounts, error) {
	counts := events.CampaignCounts{Total: st.Total}
	for k := range chunksFor(st.Total) {
		e, err := c.kv.Get(ctx, campaignChunkKey(st.CampaignID, k))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return counts, fmt.Errorf("campaign: read chunk %d: %w", k, err)
		}
		var ch campaignChunk
		if err := json.Unmarshal(e.Value(), &ch); err != nil {
			return counts, fmt.Errorf("campaign: decode chunk %d: %w", k, err)
		}
		counts.Sent += ch.Sent
		counts.Failed += ch.Failed
		counts.Cancelled += ch.Cancelled
		counts.Unknown += ch.Unknown
		counts.Duplicates += ch.Duplicates
		counts.Delivered += popcount(ch.Delivered)
		counts.Read += popcount(ch.Read)
		counts.Undelivered += popcount(ch.Undelivered)
		counts.FailedByCode = addCounts(counts.FailedByCode, ch.FailedByCode)
		counts.UndeliveredByCode = addCounts(counts.UndeliveredByCode, ch.UndeliveredByCode)
	}
	counts.Pending = counts.Total - counts.Sent - counts.Failed - counts.Cancelled - counts.Unknown - counts.Duplicates
	return counts, nil
}

func addCounts(dst, src map[string]int) map[string]int {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]int, len(src))
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
