package jobs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/webhook"
)

// Asynchronous commands (create, delete, settings, remove) end when the
// webhook of every request they made has arrived. The webhook consumer and
// the worker that made the call meet through Correlations; whichever
// applies the last webhook makes the command terminal, by a
// compare-and-set on the ledger entry, so duplicates and reordering change
// nothing and exactly one terminal result exists.

// linkPending links every pending request of an awaiting command to it
// and applies webhooks that arrived before the link.
//
// A command it finds terminal is left to whoever made it so: that one
// publishes the terminal event, and its own message's redelivery (or the
// sweeper) publishes it should that fail. Publishing it here as well
// raced that publish whenever the webhook came just after the link: the
// event went out twice (once deduplicated) and the cached reads of the
// group were made stale a second time, after the event.
func (w *Worker) linkPending(ctx context.Context, e Entry) error {
	for _, p := range e.Pending {
		if p.Done {
			continue
		}
		early, err := w.corr.Link(ctx, p.RequestID, e.CommandID)
		if err != nil {
			return err
		}
		for _, raw := range early {
			if err := w.applyWebhook(ctx, e.CommandID, raw, false); err != nil {
				return err
			}
		}
	}
	// Every request may be done already (all webhooks were early, or the
	// handler found nothing to wait for).
	return w.completeIfDone(ctx, e.CommandID)
}

// applyWebhook records the webhook item raw (a webhook.Item as published
// to the webhook stream) against the pending request it answers, and
// completes the command when it was the last one. With republish, a
// command found terminal whose event is not out yet is published (see
// settle).
func (w *Worker) applyWebhook(ctx context.Context, commandID string, raw json.RawMessage, republish bool) error {
	var it webhook.Item
	if err := json.Unmarshal(raw, &it); err != nil {
		return nil //nolint:nilerr // not an item: nothing to apply, and retrying will not help
	}
	p, err := webhook.Decode(it)
	if err != nil || p.Group == nil || p.Group.RequestID == "" {
		return nil //nolint:nilerr // not a group event answering a request: nothing to apply, and retrying will not help
	}
	if g := p.Group; g.Type == webhook.TypeGroupCreate && g.GroupID != "" && len(g.Errors) == 0 {
		// Claimed before the command can be terminal: a create of the
		// same subject reconciling an ambiguous call waits for every
		// other one still in flight, then adopts only unclaimed groups.
		if err := w.claimCreated(ctx, commandID, g.GroupID); err != nil {
			return err
		}
	}
	ge, _ := json.Marshal(p.Group)
	return w.settle(ctx, commandID, republish, func(e *Entry) error {
		i := slices.IndexFunc(e.Pending, func(pd Pending) bool { return pd.RequestID == p.Group.RequestID })
		if i < 0 || e.Pending[i].Done {
			return errNoChange // not ours, or a duplicate
		}
		e.Pending[i].Done, e.Pending[i].Result = true, ge
		return nil
	})
}

// completeIfDone completes an awaiting command whose requests are all
// done. One already terminal is left to whoever made it so.
func (w *Worker) completeIfDone(ctx context.Context, commandID string) error {
	return w.settle(ctx, commandID, false, func(*Entry) error { return nil })
}

// settle applies mark to an awaiting command's entry and, when no request
// is pending any more, makes it terminal in the same compare-and-set; then
// publishes the terminal event. A command already terminal whose event is
// not marked published is published again only with republish: by a
// caller retrying its own message, which may be what made it terminal.
func (w *Worker) settle(ctx context.Context, commandID string, republish bool, mark func(*Entry) error) error {
	changed := false
	var again, exhausted *graph.Error
	e, err := w.ledger.Update(ctx, commandID, func(e *Entry) error {
		again, exhausted = nil, nil
		if e.State.Terminal() {
			return ErrTerminal
		}
		markErr := mark(e)
		if markErr != nil && !errors.Is(markErr, errNoChange) {
			return markErr
		}
		if e.State != StateAwaitingWebhook || slices.ContainsFunc(e.Pending, func(p Pending) bool { return !p.Done }) {
			if markErr != nil {
				return markErr
			}
			changed = true
			return nil // recorded; more to come (or the owner will await)
		}
		if ge := webhookRetry(e); ge != nil {
			switch {
			case webhookRetries(*e)+1 < w.webhookRuns():
				if err := w.runAgain(ctx, e, ge); err != nil {
					return err
				}
				again, changed = ge, true
				return nil
			case e.CommandType != events.RemoveParticipants:
				exhausted = ge
				return errNoChange // dead-lettered below
			}
			// A removal out of runs ends with its participants' outcomes,
			// the transient failures among them.
		}
		if err := w.makeTerminal(e, false); err != nil {
			return err
		}
		changed = true
		return nil
	})
	switch {
	case errors.Is(err, ErrTerminal):
		// Completed before: publish only if that never got through.
		if !republish || e.Result == nil || e.Result.Published {
			return nil
		}
		cctx, end := w.commandTrace(ctx, "complete "+e.CommandType, e)
		defer end()
		return w.publishTerminal(cctx, e, false)
	case exhausted != nil && errors.Is(err, errNoChange):
		// As a command whose last delivery failed: to the dead-letter
		// queue, failed with retries_exhausted.
		cctx, end := w.commandTrace(ctx, "complete "+e.CommandType, e)
		defer end()
		w.log.WarnContext(cctx, "webhook reports a transient error again and the command's runs are used up; dead-lettering",
			slog.String("command_id", commandID), slog.Int("code", exhausted.Code))
		e.Attempts = append(e.Attempts, webhookAttempt(w.now(), exhausted))
		return w.bury(cctx, e, 0, events.ReasonRetriesExhausted, exhausted,
			"", failure(events.ReasonRetriesExhausted, exhausted), deliveries(e)+webhookRetries(e))
	case errors.Is(err, errNoChange), errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	if again != nil {
		cctx, end := w.commandTrace(ctx, "retry "+e.CommandType, e)
		defer end()
		w.log.InfoContext(cctx, "webhook reports a transient error; the command runs again",
			slog.String("command_id", commandID), slog.Int("code", again.Code), slog.String("class", again.Class.String()))
		return nil
	}
	if changed && e.State.Terminal() {
		// In the command's trace: its log line and terminal event belong
		// with the call that started it, not with the webhook delivery.
		cctx, end := w.commandTrace(ctx, "complete "+e.CommandType, e)
		defer end()
		w.log.Log(cctx, outcomeLevel(string(e.State)), "command completed by webhook", slog.String("command_id", commandID),
			slog.String("phone_number_id", e.PhoneNumberID), slog.String("state", string(e.State)))
		w.metrics.CommandDone(cctx, e.CommandType, string(e.State), w.now().Sub(e.CreatedAt))
		return w.publishTerminal(cctx, e, false)
	}
	if changed {
		linkCommand(ctx, e)
	}
	return nil
}

// attemptWebhookRetry is the outcome of an attempt whose webhook reported
// an error Meta may not repeat, after which the command ran again.
const attemptWebhookRetry = "webhook_retry"

// webhookRetry returns the transient or throttling error an awaiting
// command's webhooks report, when the command is to run again: it is a
// create, delete or settings update (one request whose failure webhook is
// Meta's word that nothing was done, so running it again cannot do it
// twice), and its webhook's errors are all of such codes; or it is a
// removal some of whose participants failed with such codes (it runs
// again for them only, see foldRemovals). Permanent errors end the
// command as before.
func webhookRetry(e *Entry) *graph.Error {
	switch e.CommandType {
	case events.CreateGroup, events.DeleteGroup, events.UpdateGroupSettings:
	case events.RemoveParticipants:
		return removalRetry(e)
	default:
		return nil
	}
	var retry *graph.Error
	for _, p := range e.Pending {
		if !p.Done || p.Failure != nil {
			return nil // refused for good at once: running again would be refused again
		}
		var ge webhook.GroupEvent
		_ = json.Unmarshal(p.Result, &ge) // unreadable: no errors to retry on
		errs := slices.Clone(ge.Errors)
		for _, s := range []*webhook.TextOutcome{ge.GroupSubject, ge.GroupDescription} {
			if s != nil {
				errs = append(errs, s.Errors...)
			}
		}
		if ge.ProfilePicture != nil {
			errs = append(errs, ge.ProfilePicture.Errors...)
		}
		for _, we := range errs {
			if we.Code == graph.CodePartialSuccess {
				continue // says some fields failed: theirs are the codes that count
			}
			gerr := retryableWebhookError(e.CommandType, we.Code, cmpStr(we.Message, we.Title))
			if gerr == nil {
				return nil // permanent, or a throttle not to wait out here (spam limit, 24 h withheld)
			}
			retry = cmp.Or(retry, gerr)
		}
	}
	return retry
}

// retryableWebhookError returns the error a webhook's code is, when it
// says running again may succeed: transient, or a throttle that passes
// (not the spam limit or a recipient's 24 h).
func retryableWebhookError(commandType string, code int, message string) *graph.Error {
	gerr := graph.WebhookError(commandType, code, message)
	switch {
	case gerr.Class == graph.ClassTransient,
		gerr.Class == graph.ClassThrottled && gerr.Scope() != graph.ScopeSpam && gerr.Scope() != graph.ScopeRecipient:
		return gerr
	}
	return nil
}

// removalRetry returns the first transient or throttling error a
// removal's webhooks report for one of its participants.
func removalRetry(e *Entry) *graph.Error {
	for _, p := range e.Pending {
		if !p.Done {
			return nil
		}
	}
	for _, p := range e.Pending {
		for _, it := range pendingRemovals(p) {
			if it.Outcome != events.ItemFailed {
				continue
			}
			if gerr := retryableWebhookError(e.CommandType, it.Code, it.Reason); gerr != nil {
				return gerr
			}
		}
	}
	return nil
}

// foldRemovals keeps, in a removal's progress, what its requests' webhooks
// settled (participants removed or failed for good), so that running it
// again sends only the participants that failed with a transient or
// throttling code. Those of a request sent unsure stay unsure.
func foldRemovals(e *Entry) error {
	var prog removeProgress
	if len(e.Progress) > 0 {
		if err := json.Unmarshal(e.Progress, &prog); err != nil {
			return fmt.Errorf("decode removal progress: %w", err)
		}
	}
	prog.Unsure = nil
	for _, p := range e.Pending {
		for _, it := range pendingRemovals(p) {
			switch {
			case it.Outcome == events.ItemRemoved:
				prog.Removed = append(prog.Removed, it.ID)
			case retryableWebhookError(e.CommandType, it.Code, it.Reason) == nil:
				prog.Failed = append(prog.Failed, it)
			case p.Unsure:
				prog.Unsure = append(prog.Unsure, it.ID)
			}
		}
	}
	b, err := json.Marshal(prog)
	if err != nil {
		return fmt.Errorf("encode removal progress: %w", err)
	}
	e.Progress = b
	return nil
}

// maxWebhookRuns bounds how many times a command runs because its webhooks
// reported transient errors; below the ledger's attempt history
// (maxAttempts), which must still hold every run's attempts to count them.
const maxWebhookRuns = 5

// webhookRuns is how many times a command may run because its webhooks
// reported transient errors: as many as it may be delivered, up to
// maxWebhookRuns.
func (w *Worker) webhookRuns() int {
	if w.maxDeliver <= 0 {
		return maxWebhookRuns
	}
	return min(w.maxDeliver, maxWebhookRuns)
}

// webhookRetries is how many times e ran again after its webhook reported
// a transient error.
func webhookRetries(e Entry) int {
	n := 0
	for _, a := range e.Attempts {
		if a.Outcome == attemptWebhookRetry {
			n++
		}
	}
	return n
}

func webhookAttempt(at time.Time, ge *graph.Error) Attempt {
	return Attempt{At: at, Outcome: attemptWebhookRetry, Code: ge.Code, Error: truncate(ge.Error(), 500)}
}

// runAgain puts an awaiting command whose webhook reported ge back in the
// command stream, to be executed afresh: its entry is queued again, with
// the failed request and its intent gone (a removal keeps what its
// webhooks settled, see foldRemovals), and a copy of the command is
// published. A throttle is shared first, so the copy waits for it (the
// limiter hands it back until the pause ends); after a transient error
// the copy comes back after webhookRetryDelay, scheduled by the parked
// stream when the worker parks (see park), at once otherwise.
//
// The copy is published before the entry is written (this runs inside the
// entry's compare-and-set): should the write fail, the copy finds the
// command still awaiting, settles it the same way and publishes another.
// Its message id names the run, so a compare-and-set that runs this twice
// stores one copy; extra copies are harmless anyway: the ledger executes
// the command once at a time, and again only after a webhook said the last
// run did nothing.
func (w *Worker) runAgain(ctx context.Context, e *Entry, ge *graph.Error) error {
	ctx = traceCtx(ctx, e.Traceparent)
	runs := webhookRetries(*e)
	if e.CommandType == events.RemoveParticipants {
		if err := foldRemovals(e); err != nil {
			return err
		}
	}
	m := &nats.Msg{Subject: e.Subject, Data: e.Command, Header: nats.Header{}}
	if e.Replay != "" {
		m.Header.Set(events.ReplayHeader, e.Replay)
	}
	m.Header.Set(inLedgerHeader, "1")
	m.Header.Set(runAgainHeader, strconv.Itoa(runs+1))
	if ge.Class == graph.ClassThrottled {
		_ = w.throttled(ctx, e.PhoneNumberID, ge)
	} else if w.parkAfter > 0 {
		at := w.now().Add(webhookRetryDelay(runs))
		var target string
		m.Subject, target = w.parkSubjects(e.PhoneNumberID, e.CommandType, uint64(at.UnixNano())) //nolint:gosec // a positive time
		scheduleAt(m, at, target)
	}
	msgID := events.CopyMsgID(e.CommandID, "again", e.Replay, strconv.Itoa(runs))
	if _, err := w.publishMsg(ctx, m, msgID); err != nil {
		return fmt.Errorf("publish %s to run again: %w", e.CommandID, err)
	}
	e.Attempts = append(e.Attempts, webhookAttempt(w.now(), ge))
	e.State, e.Pending, e.Intent, e.Owner, e.AwaitUntil = StateQueued, nil, nil, "", time.Time{}
	return nil
}

// webhookRetryDelay is how long a command waits to run again after its
// webhook reported a transient error for the runs+1-th time: 1 s, doubled
// each time, at most 30 s.
func webhookRetryDelay(runs int) time.Duration {
	return min(time.Second<<min(runs, 5), 30*time.Second)
}

// claimCreated claims the group a create_group made, so that no command
// reconciling an ambiguous create of the same subject adopts it. The
// webhook is Meta's word: if such a command adopted the group first
// (it waited WebhookTimeout for this one in vain), that cannot be undone,
// and it is logged.
func (w *Worker) claimCreated(ctx context.Context, commandID, groupID string) error {
	holder, err := w.corr.ClaimGroup(ctx, groupID, commandID)
	if err != nil {
		return err
	}
	if holder != commandID {
		w.log.ErrorContext(ctx, "a group this command created was adopted by another create_group reconciling an ambiguous call",
			slog.String("command_id", commandID), slog.String("group_id", groupID), slog.String("adopted_by", holder))
	}
	return nil
}

// makeTerminal sets e's terminal state and result from its pending
// requests' webhooks (or their absence, when timedOut).
func (w *Worker) makeTerminal(e *Entry, timedOut bool) error {
	var cmd events.Command
	if err := json.Unmarshal(e.Command, &cmd); err != nil {
		return fmt.Errorf("decode stored command: %w", err)
	}
	res := w.completion(cmd, *e, timedOut)
	r := w.commandResult(cmd, res, deliveries(*e))
	r.Replay = e.Replay
	t, err := w.terminal(r)
	if err != nil {
		return err
	}
	t.At = w.now()
	e.State, e.Result, e.Owner = stateOf(r.Outcome), &t, ""
	return nil
}

// deliveries is how many times the command was delivered, per its history.
func deliveries(e Entry) int {
	n := 0
	for _, a := range e.Attempts {
		n = max(n, deliveryCount(a.Delivery))
	}
	return max(n, 1)
}

// completion computes an asynchronous command's result from the webhooks
// of its requests. With timedOut, requests without a webhook count as
// failed with reason webhook_timeout.
func (w *Worker) completion(cmd events.Command, e Entry, timedOut bool) Result {
	var done []webhook.GroupEvent
	undone := 0
	for _, p := range e.Pending {
		if !p.Done {
			undone++
			continue
		}
		var ge webhook.GroupEvent
		_ = json.Unmarshal(p.Result, &ge)
		done = append(done, ge)
	}
	timeout := &events.FailureInfo{Reason: events.ReasonWebhookTimeout, Message: "Meta accepted the request but its webhook never came"}
	switch cmd.Type {
	case events.RemoveParticipants:
		return removeCompletion(cmd, e)
	case events.UpdateGroupSettings:
		return settingsCompletion(e)
	case events.StartInviteCampaign, events.CancelCampaign:
		return campaignCompletion(e)
	}
	if len(done) == 0 {
		if timedOut || undone > 0 {
			return Result{Outcome: events.OutcomeFailed, Failure: timeout}
		}
		return Result{}
	}
	ge := done[0]
	if len(ge.Errors) > 0 {
		return Result{Outcome: events.OutcomeFailed, GroupID: ge.GroupID, Failure: webhookFailure(ge.Errors)}
	}
	if cmd.Type == events.CreateGroup {
		return Result{GroupID: ge.GroupID, Data: events.CreateGroupResult{GroupID: ge.GroupID, InviteLink: ge.InviteLink, RequestID: ge.RequestID}}
	}
	return Result{}
}

func webhookFailure(errs []webhook.Error) *events.FailureInfo {
	e := errs[0]
	msg := e.Message
	if msg == "" {
		msg = e.Title
	}
	if e.ErrorData.Details != "" {
		msg += ": " + e.ErrorData.Details
	}
	return &events.FailureInfo{Reason: events.ReasonPermanentError, Code: e.Code, Message: truncate(msg, 500)}
}

func webhookItem(id string, errs []webhook.Error, fallback string) events.ItemOutcome {
	it := events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Reason: fallback}
	if len(errs) > 0 {
		it.Code = errs[0].Code
		it.Reason = cmpStr(errs[0].Message, errs[0].Title, fallback)
	}
	return it
}

func cmpStr(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// settingsCompletion reports each setting the command changed: the
// pending requests' Items name the settings each request carried. A
// command none of whose settings changed fails as its first setting did.
func settingsCompletion(e Entry) Result {
	var items []events.ItemOutcome
	var first *events.FailureInfo
	failed := func(it events.ItemOutcome, fi *events.FailureInfo) {
		items = append(items, it)
		if first == nil {
			first = fi
		}
	}
	ok := 0
	for _, p := range e.Pending {
		var ge webhook.GroupEvent
		if p.Done {
			_ = json.Unmarshal(p.Result, &ge)
		}
		for _, field := range p.Items {
			switch {
			case !p.Done:
				failed(events.ItemOutcome{ID: field, Outcome: events.ItemFailed, Reason: "webhook never came"},
					&events.FailureInfo{Reason: events.ReasonWebhookTimeout, Message: "Meta accepted the update but its webhook never came"})
				continue
			case p.Failure != nil:
				// Refused by Graph at once: its code, subcode and type.
				fi := *p.Failure
				failed(events.ItemOutcome{ID: field, Outcome: events.ItemFailed, Code: fi.Code, Reason: truncate(fi.Message, 300)}, &fi)
				continue
			}
			var succeeded bool
			var errs []webhook.Error
			switch field {
			case settingSubject:
				if ge.GroupSubject != nil {
					succeeded, errs = ge.GroupSubject.UpdateSuccessful, ge.GroupSubject.Errors
				} else {
					succeeded = len(ge.Errors) == 0
				}
			case settingDescription:
				if ge.GroupDescription != nil {
					succeeded, errs = ge.GroupDescription.UpdateSuccessful, ge.GroupDescription.Errors
				} else {
					succeeded = len(ge.Errors) == 0
				}
			case settingPicture:
				if ge.ProfilePicture != nil {
					succeeded, errs = ge.ProfilePicture.UpdateSuccessful, ge.ProfilePicture.Errors
				} else {
					succeeded = len(ge.Errors) == 0
				}
			}
			if succeeded {
				ok++
				continue
			}
			it := webhookItem(field, append(errs, ge.Errors...), "update failed")
			failed(it, &events.FailureInfo{Reason: events.ReasonPermanentError, Code: it.Code, Message: it.Reason})
		}
	}
	switch {
	case len(items) == 0:
		return Result{}
	case ok == 0:
		return Result{Outcome: events.OutcomeFailed, Items: items, Failure: first}
	}
	return Result{Outcome: events.OutcomePartiallySucceeded, Items: items}
}

// removeCompletion reports each participant of a remove_participants.
func removeCompletion(cmd events.Command, e Entry) Result {
	var p events.RemoveParticipantsParams
	_ = json.Unmarshal(cmd.Params, &p)
	var prog removeProgress
	if len(e.Progress) > 0 {
		_ = json.Unmarshal(e.Progress, &prog)
	}
	outcome := map[string]events.ItemOutcome{}
	for _, id := range prog.Removed {
		outcome[id] = events.ItemOutcome{ID: id, Outcome: events.ItemRemoved}
	}
	for _, f := range prog.Failed {
		outcome[f.ID] = f
	}
	timedOut := false
	for _, pd := range e.Pending {
		if !pd.Done {
			for _, id := range pd.Items {
				outcome[id] = events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Reason: "webhook never came"}
				timedOut = true
			}
			continue
		}
		for _, it := range pendingRemovals(pd) {
			outcome[it.ID] = it
		}
	}
	items := make([]events.ItemOutcome, 0, len(p.Participants))
	for _, id := range dedupe(p.Participants) {
		it, ok := outcome[id]
		if !ok {
			it = events.ItemOutcome{ID: id, Outcome: events.ItemFailed, Reason: "not sent"}
		}
		items = append(items, it)
	}
	res := bulkResult(items)
	switch {
	case res.Outcome != events.OutcomeFailed:
	case prog.Refusal != nil && slices.Contains(prog.Refusal.Participants, items[0].ID):
		// The first participant's call was refused: the command fails as
		// Graph said, subcode and type included.
		fi := prog.Refusal.Error
		res.Failure = &fi
	case timedOut && res.Failure.Code == 0:
		res.Failure = &events.FailureInfo{Reason: events.ReasonWebhookTimeout, Message: "Meta accepted the removal but its webhook never came"}
	}
	return res
}

// pendingRemovals is the outcome, per its webhook, of each participant a
// removal's done request covered.
func pendingRemovals(pd Pending) []events.ItemOutcome {
	if !pd.Done {
		return nil
	}
	var ge webhook.GroupEvent
	_ = json.Unmarshal(pd.Result, &ge)
	removed, failed := map[string]bool{}, map[string][]webhook.Error{}
	for _, r := range ge.RemovedParticipants {
		for _, k := range []string{r.Input, r.WAID, r.UserID} {
			if k != "" {
				removed[k] = true
			}
		}
	}
	for _, f := range ge.FailedParticipants {
		for _, k := range []string{f.Input, f.WAID, f.UserID} {
			if k != "" {
				failed[k] = f.Errors
			}
		}
	}
	items := make([]events.ItemOutcome, 0, len(pd.Items))
	for _, id := range pd.Items {
		var it events.ItemOutcome
		switch errs, isFailed := failed[id]; {
		case isFailed:
			it = webhookItem(id, append(errs, ge.Errors...), "removal failed")
		case removed[id] || len(ge.Errors) == 0:
			it = events.ItemOutcome{ID: id, Outcome: events.ItemRemoved}
		default:
			it = webhookItem(id, ge.Errors, "removal failed")
		}
		if pd.Unsure && it.Outcome == events.ItemFailed && it.Code == graph.CodeParticipantNotInGroup {
			// Sent again after a call that may have removed them
			// unseen: gone is what this command asked for.
			it = events.ItemOutcome{ID: id, Outcome: events.ItemRemoved}
		}
		items = append(items, it)
	}
	return items
}
