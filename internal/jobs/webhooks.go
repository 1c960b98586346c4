package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/telemetry"
	"github.com/groupflow/groupflow/internal/webhook"
)

// processWebhook turns one webhook item into domain events and, when it
// answers a request of ours, completes the command that made it.
//
// Every event id derives from the item's MsgID (itself derived from the
// item's content), and is the event's Nats-Msg-Id: a redelivered item,
// or the same webhook delivered twice by Meta, publishes nothing new.
func (w *Worker) processWebhook(ctx context.Context, msg jetstream.Msg) {
	if w.shuttingDown() {
		_ = msg.Nak()
		return
	}
	defer func() {
		// A bug, not the item's fault or NATS's: the item is set aside,
		// loudly, rather than crash every worker it is delivered to.
		if v := recover(); v != nil {
			w.log.ErrorContext(ctx, "webhook item handler panicked; item terminated", slog.String("subject", msg.Subject()),
				slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			w.metrics.Webhook(ctx, "unknown", "panic")
			_ = msg.Term()
		}
	}()
	ctx, span := telemetry.StartProcess(ctx, w.tracer, msg)
	defer span.End()
	msg = telemetry.SettledOnSpan(msg, span)
	var it webhook.Item
	if err := json.Unmarshal(msg.Data(), &it); err != nil {
		w.log.WarnContext(ctx, "webhook item is not JSON; dropped", slog.String("subject", msg.Subject()), slog.Any("error", err))
		w.metrics.Webhook(ctx, "unknown", "invalid")
		_ = msg.Term()
		return
	}
	w.accounts.Learn(it.PhoneNumberID, it.WABAID)
	log := w.log.With(slog.String("webhook_item", it.MsgID), slog.String("phone_number_id", it.PhoneNumberID),
		slog.String("field", it.Field), slog.String("type", it.Type))
	p, err := webhook.Decode(it)
	if err != nil {
		log.WarnContext(ctx, "webhook item undecodable; dropped", slog.Any("error", err))
		w.metrics.Webhook(ctx, it.Field, "invalid")
		_ = msg.Term()
		return
	}
	// Before the command it completes: its caller may act on the group
	// at once, and must find it known to be the number's.
	if err := w.learnOwner(ctx, it, p); err != nil {
		log.WarnContext(ctx, "record the group's phone number", slog.Any("error", err))
		w.retryWebhook(msg)
		return
	}
	var commandID string
	if g := p.Group; g != nil && g.RequestID != "" {
		// Meet the worker that made the request (see Correlations).
		if commandID, err = w.corr.Arrive(ctx, g.RequestID, json.RawMessage(msg.Data())); err != nil {
			log.WarnContext(ctx, "correlate webhook", slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
	}
	if p.Status != nil && p.Status.ID != "" {
		// A status published without its command would stay so: its
		// event id is fixed by the item, so a corrected copy is a
		// duplicate, and a campaign's delivered and read counts miss it.
		if commandID, err = w.corr.MessageCommand(ctx, p.Status.ID); err != nil {
			log.WarnContext(ctx, "look up the command of a message status", slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
		if commandID == "" && w.mayBeUnrecordedSend(msg, p.Status) {
			// The send may be ours with its message id not written yet
			// (a slow write): look once more before publishing without it.
			_ = msg.NakWithDelay(statusLookAgain)
			return
		}
	}
	if commandID != "" {
		log = log.With(slog.String("command_id", commandID))
	}
	eventCommand, approvals := commandID, []string(nil)
	if g := p.Group; g != nil && g.Type == webhook.TypeParticipantsAdd {
		// A join an approval let in names its approve_join_requests command.
		if eventCommand, approvals, err = w.corr.ApprovedBy(ctx, g.GroupID, joinedUsers(g.AddedParticipants)); err != nil {
			log.WarnContext(ctx, "look up the approval of a join", slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
	}
	evs := w.domainEvents(it, p, eventCommand)
	if p.Group != nil {
		// Before the events: their receivers may read at once.
		if err := w.invalidateItem(ctx, p.Group.GroupID, evs); err != nil {
			log.WarnContext(ctx, "invalidate cached reads", slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
	}
	for _, ev := range evs {
		if err := w.publishEvent(ctx, ev, msg.Headers()); err != nil {
			log.WarnContext(ctx, "publish domain event", slog.String("event_type", ev.typ), slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
	}
	w.corr.Forget(ctx, approvals) // reported: a later join is another story
	if err := w.campaignJoins(ctx, it, p.Group, msg.Headers()); err != nil {
		log.WarnContext(ctx, "campaign join", slog.Any("error", err))
		w.retryWebhook(msg)
		return
	}
	result := "published"
	if commandID != "" && p.Group != nil {
		// Its redelivery publishes the event should this delivery have
		// made the command terminal and failed to publish it.
		if err := w.applyWebhook(ctx, commandID, json.RawMessage(msg.Data()), true); err != nil {
			log.WarnContext(ctx, "complete command from webhook", slog.Any("error", err))
			w.retryWebhook(msg)
			return
		}
		result = "completed"
	} else if p.Group != nil && p.Group.RequestID != "" {
		result = "uncorrelated" // kept until the worker that made the call links it
	}
	w.metrics.Webhook(ctx, it.Field, result)
	_ = msg.Ack()
}

// domainEvent is one event derived from a webhook item.
type domainEvent struct {
	typ, id, phone string
	data           any
	at             time.Time
}

func (w *Worker) publishEvent(ctx context.Context, ev domainEvent, h nats.Header) error {
	var opts []events.EventOption
	if !ev.at.IsZero() && ev.at.Unix() > 0 {
		opts = append(opts, events.WithTime(ev.at))
	}
	e, err := events.NewEvent(ev.typ, ev.id, events.SourceWorker, ev.phone, ev.data, opts...)
	if err != nil {
		return err
	}
	b, err := events.Marshal(e)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: w.names.Event(ev.phone, ev.typ), Data: b}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = telemetry.Extract(ctx, h) // no delivery span: carry the item's trace on
	}
	_, err = w.publishMsg(ctx, m, ev.id)
	return err
}

// domainEvents normalises a webhook item into the events of DESIGN §4.
func (w *Worker) domainEvents(it webhook.Item, p webhook.Payload, commandID string) []domainEvent {
	phone := cmpStr(it.PhoneNumberID, p.Metadata.PhoneNumberID)
	if !events.ValidToken(phone) {
		return nil // account-level change: no number to publish under
	}
	var out []domainEvent
	add := func(typ string, at time.Time, data any) {
		out = append(out, domainEvent{typ: typ, id: events.EventID(it.MsgID, strconv.Itoa(len(out))), phone: phone, data: data, at: at})
	}
	switch {
	case p.Group != nil:
		g := p.Group
		at := g.Time()
		switch g.Type {
		case webhook.TypeGroupCreate:
			if len(g.Errors) > 0 {
				add(events.EventGroupCreateFailed, at, events.GroupCreateFailed{RequestID: g.RequestID, CommandID: commandID,
					GroupID: g.GroupID, Subject: g.Subject, Description: g.Description, Errors: graphErrors(g.Errors)})
			} else {
				add(events.EventGroupCreated, at, events.GroupCreated{GroupID: g.GroupID, RequestID: g.RequestID, CommandID: commandID,
					Subject: g.Subject, Description: g.Description, InviteLink: g.InviteLink, JoinApprovalMode: g.JoinApprovalMode})
			}
		case webhook.TypeGroupDelete:
			if len(g.Errors) == 0 {
				add(events.EventGroupDeleted, at, events.GroupDeleted{GroupID: g.GroupID, RequestID: g.RequestID, CommandID: commandID})
			}
		case webhook.TypeGroupSettingsUpdate:
			d := events.GroupSettingsUpdated{GroupID: g.GroupID, RequestID: g.RequestID, CommandID: commandID, Errors: graphErrors(g.Errors)}
			if s := g.GroupSubject; s != nil {
				d.Subject = &events.SettingUpdate{Text: s.Text, Updated: s.UpdateSuccessful, Errors: graphErrors(s.Errors)}
			}
			if s := g.GroupDescription; s != nil {
				d.Description = &events.SettingUpdate{Text: s.Text, Updated: s.UpdateSuccessful, Errors: graphErrors(s.Errors)}
			}
			if s := g.ProfilePicture; s != nil {
				d.ProfilePicture = &events.PictureUpdate{MimeType: s.MimeType, SHA256: s.SHA256, Updated: s.UpdateSuccessful, Errors: graphErrors(s.Errors)}
			}
			add(events.EventGroupSettingsUpdated, at, d)
		case webhook.TypeParticipantsAdd:
			add(events.EventGroupParticipantsJoined, at, events.ParticipantsJoined{GroupID: g.GroupID, Reason: g.Reason,
				CommandID: commandID, Participants: participantRefs(g.AddedParticipants)})
		case webhook.TypeParticipantsRemove:
			if g.InitiatedBy == webhook.InitiatedByParticipant || (g.InitiatedBy == "" && g.RequestID == "") {
				for _, pt := range g.RemovedParticipants {
					if ref := participantRef(pt); ref != (events.ParticipantRef{}) {
						add(events.EventGroupParticipantLeft, at, events.ParticipantLeft{GroupID: g.GroupID, Participant: ref})
					}
				}
				break
			}
			d := events.ParticipantsRemoved{GroupID: g.GroupID, RequestID: g.RequestID, CommandID: commandID,
				InitiatedBy: cmpStr(g.InitiatedBy, events.InitiatedByBusiness), Removed: participantRefs(g.RemovedParticipants),
				Errors: graphErrors(g.Errors)}
			for _, f := range g.FailedParticipants {
				if ref := participantRef(f); ref != (events.ParticipantRef{}) {
					d.Failed = append(d.Failed, events.ParticipantFailure{Participant: ref, Errors: graphErrors(f.Errors)})
				}
			}
			add(events.EventGroupParticipantsRemoved, at, d)
		case webhook.TypeJoinRequestCreated:
			add(events.EventGroupJoinRequestCreated, at, events.JoinRequestCreated{GroupID: g.GroupID, JoinRequestID: g.JoinRequestID,
				Reason: g.Reason, Participant: events.ParticipantRef{WAID: g.WAID, UserID: g.UserID, ParentUserID: g.ParentUserID, Username: g.Username}})
		case webhook.TypeJoinRequestRevoked:
			add(events.EventGroupJoinRequestRevoked, at, events.JoinRequestRevoked{GroupID: g.GroupID, JoinRequestID: g.JoinRequestID,
				Reason: g.Reason, Participant: events.ParticipantRef{WAID: g.WAID, UserID: g.UserID, ParentUserID: g.ParentUserID, Username: g.Username}})
		case webhook.TypeGroupSuspend:
			add(events.EventGroupSuspended, at, events.GroupSuspended{GroupID: g.GroupID})
		case webhook.TypeGroupSuspendCleared:
			add(events.EventGroupSuspensionCleared, at, events.GroupSuspensionCleared{GroupID: g.GroupID})
		}
	case p.Status != nil:
		s := p.Status
		d := events.MessageStatus{MessageID: s.ID, Status: s.Status, RecipientID: s.RecipientID, RecipientUserID: s.RecipientUserID,
			RecipientParentUserID: s.RecipientParentUserID, RecipientType: s.RecipientType,
			ParticipantID: s.RecipientParticipantID, ParticipantUserID: s.RecipientParticipantUserID,
			ParticipantParentUserID: s.RecipientParticipantParentUserID, Conversation: conversation(s.Conversation),
			BizOpaqueCallbackData: s.BizOpaqueCallbackData, Errors: graphErrors(s.Errors), CommandID: commandID,
			CampaignID: w.campaigns.campaignOf(commandID)}
		if s.RecipientType == webhook.RecipientTypeGroup {
			d.GroupID = s.RecipientID
		}
		if pr := s.Pricing; pr != nil {
			d.Pricing = &events.Pricing{Billable: pr.Billable, PricingModel: pr.PricingModel, Type: pr.Type, Category: pr.Category}
		}
		add(events.EventMessageStatus, s.Time(), d)
	}
	return out
}

// conversation is a status's conversation as events carry it; nil when
// Meta sent none, or one that says nothing.
func conversation(c *webhook.Conversation) *events.Conversation {
	if c == nil {
		return nil
	}
	out := events.Conversation{ID: c.ID}
	if c.Origin != nil {
		out.OriginType = c.Origin.Type
	}
	if c.ExpirationTimestamp > 0 {
		t := time.Unix(c.ExpirationTimestamp, 0).UTC()
		out.ExpirationTime = &t
	}
	if out == (events.Conversation{}) {
		return nil
	}
	return &out
}

func graphErrors(errs []webhook.Error) []events.GraphError {
	if len(errs) == 0 {
		return nil
	}
	out := make([]events.GraphError, len(errs))
	for i, e := range errs {
		out[i] = events.GraphError{Code: e.Code, Title: e.Title, Message: e.Message, Details: e.ErrorData.Details}
	}
	return out
}

func participantRef(p webhook.Participant) events.ParticipantRef {
	return events.ParticipantRef{Input: p.Input, WAID: p.WAID, UserID: p.UserID, ParentUserID: p.ParentUserID, Username: p.Username}
}

// joinedUsers are the ids a join webhook names its participants by.
func joinedUsers(ps []webhook.Participant) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		for _, u := range []string{p.WAID, p.UserID} {
			if u != "" {
				out = append(out, u)
			}
		}
	}
	return out
}

// participantRefs leaves out entries that name nobody: an event cannot
// say who they were, and its schema wants every reference to say something.
func participantRefs(ps []webhook.Participant) []events.ParticipantRef {
	out := make([]events.ParticipantRef, 0, len(ps))
	for _, p := range ps {
		if ref := participantRef(p); ref != (events.ParticipantRef{}) {
			out = append(out, ref)
		}
	}
	return out
}

// rememberMessage links a sent message to its command for status events.
func (w *Worker) rememberMessage(ctx context.Context, wamid, commandID string) {
	if wamid == "" {
		return
	}
	// The message is sent: without this key its statuses never name the
	// command, so a failed write is tried again (for a second or so).
	ctx, cancel := cleanupCtx(ctx)
	defer cancel()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxElapsedTime = 50*time.Millisecond, 1500*time.Millisecond
	err := backoff.Retry(func() error { return w.corr.RememberMessage(ctx, wamid, commandID) }, backoff.WithContext(b, ctx))
	if err != nil {
		w.log.WarnContext(ctx, "remember sent message: its statuses will not name the command", slog.String("command_id", commandID), slog.Any("error", fmt.Errorf("%w", err)))
	}
}

// statusLookAgain is how long a fresh status whose message is not (yet)
// known as ours waits before it is looked up again.
const statusLookAgain = time.Second

// mayBeUnrecordedSend reports whether a status whose message id no command
// claims is worth a second look: on its first delivery, and only when it
// is at most a few seconds old (the send's id may still be on its way to
// the correlation bucket). Statuses of messages that are not ours then
// wait a second once; older ones, and redeliveries, never.
func (w *Worker) mayBeUnrecordedSend(msg jetstream.Msg, st *webhook.Status) bool {
	md, err := msg.Metadata()
	if err != nil || md.NumDelivered > 1 || st.Timestamp == 0 {
		return false
	}
	return w.now().Sub(st.Time()) < 15*time.Second
}

// retryWebhook hands an item back after a failure of NATS (the event
// stream, a bucket), backing off (retryDelay): the webhook consumer never
// gives up on an item, so an outage delays events but drops none.
func (w *Worker) retryWebhook(msg jetstream.Msg) {
	n := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		n = md.NumDelivered
	}
	_ = msg.NakWithDelay(retryDelay(n))
}
