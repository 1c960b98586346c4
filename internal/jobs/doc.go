// Package jobs executes commands: one handler per command type, the ledger
// that makes them idempotent, retries, rate limits, asynchronous completion
// by webhooks, and the one terminal event of every command.
//
// A Worker pull-consumes the shared durable consumers of the command and
// webhook streams with bounded concurrency. For each command it claims the
// command's ledger entry by compare-and-set (Ledger.Claim): a command
// already finished is answered by re-publishing its stored result, one
// claimed by a live worker is retried later, one awaiting its webhook is
// left to it. Before a call that is not safe to repeat (create group,
// reset link, send) the handler records an intent; a later delivery that
// finds the intent without an outcome reconciles instead of repeating:
// create_group looks for the group, reset_invite_link reads the link,
// send_group_invite follows on_ambiguous.
//
// Handler errors say what happens next (Permanent, RetryAfter, Transient,
// or a *graph.Error classified by its retry class): a permanent error ends
// the command with command.failed; throttling pauses the scope on every
// worker through the rate limiter and retries after Meta's delay; other
// errors retry with backoff, short in-process retries first where repeating
// is safe. The last allowed delivery, or the server's MAX_DELIVERIES
// advisory, sends the command and its attempt history to the dead-letter
// stream (DeadLetter) and fails it with retries_exhausted.
//
// A command acts on a group only for the phone number the group belongs
// to (Owners): Graph's group operations name only the group, and every
// number shares one access token. Whose each group is, is learnt from the
// webhooks every worker processes anyway, kept in the groups_owners bucket
// and cached; a group nobody has seen costs one listing of the number's
// groups. A group that is not the number's fails the command with
// group_not_owned before any call on it. An ensure_invite_template acts
// only on its number's WhatsApp Business Account (checkAccount), known from
// configuration and webhooks or from one listing of the account's numbers;
// another account fails it with account_not_owned.
//
// Asynchronous commands (create, delete, settings, remove) wait in the
// awaiting_webhook state. Their request ids meet the webhook items in the
// correlation bucket (Correlations), whichever comes first; the last
// webhook a command waits for makes it terminal in one compare-and-set, and
// a sweeper fails commands whose webhook never came. Every webhook item also
// becomes normalised domain events. All events carry deterministic ids,
// used as Nats-Msg-Id, so a retried publish is never stored twice.
//
// Invite campaigns (start_invite_campaign) are fanned out by whichever
// worker holds the campaign's lease in the groups_campaigns bucket: one
// send_group_invite per invite, id "<campaign_id>:<n>", a bounded window
// queued at a time, resumable from a checkpoint by any other worker. The
// holder counts every invite's outcome from the event stream, exactly once;
// cancel_campaign and Meta's spam limit (131048) reach every worker through
// a watch of the bucket. See campaign.go.
package jobs
