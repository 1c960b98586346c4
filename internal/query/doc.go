// Package query serves groupflow's reads over NATS request-reply, so that
// other services can ask about groups without holding a Graph API token and
// without bypassing groupflow's rate limits and tracing.
//
// A Service is a nats.go/micro service ("groupflow-query", discoverable with
// nats micro ls|info|stats) that every worker process runs in one queue
// group. Its endpoints are groups.query.<phone_number_id>.<name>:
// group_info, list_groups, list_join_requests, invite_link and
// command_status. Requests and replies are JSON (schemas
// internal/events/schemas/query.<name>.{request,reply}.json); a failed
// request is answered the micro way — headers Nats-Service-Error-Code and
// Nats-Service-Error — with an Error as the JSON body.
//
// Graph reads take a token from the same per-number limiter as commands,
// in their own class (ratelimit.Reads), so a read storm cannot starve
// writes. A read never queues behind a throttle: when the number is paused
// (or Graph answers with a throttling code, which pauses it on every worker)
// the reply is a 429 saying when to retry.
//
// Answers are cached briefly in the groups_reads key-value bucket, shared by
// all workers. Invalidation is by generation rather than by deleting keys:
// each group (and each number's group list) has a generation marker whose
// KV revision is recorded in every answer cached for it, and an answer is
// served only while the marker still has that revision. Invalidating is one
// Put on the marker; it also wins against a read that fetched the old state
// from Graph before the change and stores it after the invalidation, which
// deleting keys would not. The worker invalidates (jobs.Config.Reads, an
// Invalidator) before it publishes the event that announces a change, so
// whoever receives the event and reads at once gets an answer at least as
// new as the event, whichever worker answers and whether or not a query
// service saw the event. Invalidating from the query service's own event
// subscription raced the reads made on the same event and missed events
// published while no query service ran.
//
// Handlers answer on their own goroutines (bounded by Config.Concurrency)
// because micro calls a handler on its endpoint's single subscription
// goroutine: one slow Graph call would otherwise hold up every read of that
// endpoint in the process. The replies are published directly, so micro's
// own num_errors and processing_time count only the hand-off; the real
// per-endpoint counts are in each endpoint's stats data.
package query
