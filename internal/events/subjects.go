package events

import (
	"cmp"
	"fmt"
	"strings"
)

// DefaultPrefix is the prefix of every subject, stream and bucket name.
const DefaultPrefix = "groups"

// Names builds every subject, stream, bucket and consumer name from one
// prefix, so several groupflow installations can share a NATS account.
// The zero value uses DefaultPrefix.
type Names struct {
	// Prefix is the first subject token and the stem of stream and bucket
	// names: ASCII letters, digits, '-' and '_' (ValidPrefix). Stream names
	// are the prefix in upper case, so installations sharing an account
	// need prefixes that differ in more than case. Defaults to "groups".
	Prefix string
}

func (n Names) prefix() string { return cmp.Or(n.Prefix, DefaultPrefix) }
func (n Names) stream(s string) string {
	return strings.ToUpper(n.prefix()) + "_" + s
}

// CommandStream is the work-queue stream of commands.
func (n Names) CommandStream() string { return n.stream("COMMANDS") }

// WebhookStream is the stream of webhook items published by the ingest.
func (n Names) WebhookStream() string { return n.stream("WEBHOOKS") }

// EventStream is the stream of result, domain and campaign events.
func (n Names) EventStream() string { return n.stream("EVENTS") }

// DLQStream is the stream of commands whose retries were exhausted.
func (n Names) DLQStream() string { return n.stream("DLQ") }

// ParkedStream is the work-queue stream of parked commands: copies
// scheduled for their number's rate-limit turn (Parked) and, once due,
// the copies the command stream sources back (Due). Only workers publish
// to it, so the roll-ups its message schedules require are no door for
// callers, who may publish commands.
func (n Names) ParkedStream() string { return n.stream("PARKED") }

// MigrationStream holds the command stream's messages while `groupctl
// migrate` recreates it (see MigrateCommandStream); it exists only then.
func (n Names) MigrationStream() string { return n.stream("COMMANDS_MIGRATION") }

// LedgerBucket maps a command id to its execution state.
func (n Names) LedgerBucket() string { return n.prefix() + "_ledger" }

// CorrelationBucket maps a Graph request_id to the command that caused it.
func (n Names) CorrelationBucket() string { return n.prefix() + "_correlation" }

// CampaignBucket holds invite campaigns' progress.
func (n Names) CampaignBucket() string { return n.prefix() + "_campaigns" }

// ReadsBucket caches query answers.
func (n Names) ReadsBucket() string { return n.prefix() + "_reads" }

// WorkersBucket holds live workers' heartbeats.
func (n Names) WorkersBucket() string { return n.prefix() + "_workers" }

// ThrottleBucket holds "throttled until" entries shared by every worker.
func (n Names) ThrottleBucket() string { return n.prefix() + "_throttle" }

// OwnerBucket maps a group id to the business phone number it belongs to.
func (n Names) OwnerBucket() string { return n.prefix() + "_owners" }

// CampaignListStore is the object store bucket for large invite lists.
func (n Names) CampaignListStore() string { return n.prefix() + "_campaign_lists" }

// CommandConsumer is the durable pull consumer every worker shares on the
// command stream.
func (n Names) CommandConsumer() string { return "worker-commands" }

// WebhookConsumer is the durable pull consumer every worker shares on the
// webhook stream.
func (n Names) WebhookConsumer() string { return "worker-webhooks" }

// Command is the subject a command of cmdType for phone is published to.
func (n Names) Command(phone, cmdType string) string {
	return n.prefix() + ".cmd." + phone + "." + cmdType
}

// Webhook is the subject of a webhook item of field for phone.
func (n Names) Webhook(phone, field string) string {
	return n.prefix() + ".webhook." + phone + "." + field
}

// Event is the subject of an event of eventType (e.g. "command.succeeded")
// for phone.
func (n Names) Event(phone, eventType string) string {
	return n.prefix() + ".event." + phone + "." + eventType
}

// DLQ is the subject a dead command of cmdType for phone is kept under.
func (n Names) DLQ(phone, cmdType string) string {
	return n.prefix() + ".dlq." + phone + "." + cmdType
}

// Parked is the subject a command delivery waits under, as a scheduled
// message in ParkedStream, until the number's rate limit has room for it:
// the worker parks a command of a deep backlog there instead of holding it
// unacked, so the backlog does not fill the command consumer's
// MaxAckPending and stall every other number's commands. At the scheduled
// time the stream turns it into a copy on Due(phone, cmdType), which the
// command stream sources as Command(phone, cmdType). seq is the parked
// delivery's stream sequence, which makes each schedule's subject its own.
func (n Names) Parked(phone, cmdType string, seq uint64) string {
	return fmt.Sprintf("%s.park.%s.%s.%d", n.prefix(), phone, cmdType, seq)
}

// AllParked matches every parked subject (ParkedStream).
func (n Names) AllParked() string { return n.prefix() + ".park.>" }

// Due is the subject a parked copy of a command of cmdType for phone
// becomes at its scheduled time (the schedule's target, in ParkedStream);
// the command stream sources it back as Command(phone, cmdType).
func (n Names) Due(phone, cmdType string) string {
	return n.prefix() + ".due." + phone + "." + cmdType
}

// AllDue matches every due subject (ParkedStream).
func (n Names) AllDue() string { return n.prefix() + ".due.>" }

// LegacyParked is Parked in a command stream made before parked commands
// had a stream of their own (see LegacyCommandStream): there a copy waits
// in the command stream itself and comes back to Command(phone, cmdType).
// Workers park there until `groupctl migrate` recreates the stream: NATS
// refuses a source on a stream that schedules messages, so such a stream
// cannot take copies back from the parked stream.
func (n Names) LegacyParked(phone, cmdType string, seq uint64) string {
	return fmt.Sprintf("%s.parked.%s.%s.%d", n.prefix(), phone, cmdType, seq)
}

// AllLegacyParked matches every LegacyParked subject.
func (n Names) AllLegacyParked() string { return n.prefix() + ".parked.>" }

// Query is the subject of the read endpoint name for phone.
func (n Names) Query(phone, name string) string {
	return n.prefix() + ".query." + phone + "." + name
}

// AllCommands matches every command subject.
func (n Names) AllCommands() string { return n.prefix() + ".cmd.>" }

// AllWebhooks matches every webhook subject.
func (n Names) AllWebhooks() string { return n.prefix() + ".webhook.>" }

// AllEvents matches every event subject.
func (n Names) AllEvents() string { return n.prefix() + ".event.>" }

// AllDLQ matches every dead-letter subject.
func (n Names) AllDLQ() string { return n.prefix() + ".dlq.>" }

// AllQueries matches every query subject.
func (n Names) AllQueries() string { return n.prefix() + ".query.>" }

// ValidPrefix reports whether s can be Names.Prefix: a subject token that
// is also valid in stream and bucket names, so ASCII letters, digits, '-'
// and '_' only.
func ValidPrefix(s string) bool {
	if s == "" {
		return false
	}
	return strings.Trim(s, prefixChars) == ""
}

const prefixChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// ValidToken reports whether s can stand as one subject token: non-empty,
// without dots, wildcards or whitespace.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return false
		}
	}
	return true
}
