// Package e2e holds groupflow's end-to-end tests of observability: the
// real ingest handler over HTTP, a real embedded JetStream, real workers
// (jobs.New) and the Graph simulator over HTTP, wired the way cmd/ingest
// and cmd/worker wire them, with every span, log line, metric and event
// captured.
//
// They prove what DESIGN §6 promises an on-call engineer: one trace per
// command from the caller to the result event, webhooks that complete a
// command linked to its trace, trace and span ids on every log line of a
// command's processing, the worker's /metrics series, and that no secret
// (access token, app secret, API token) reaches a log, a span, an event or
// an error message, even on failure paths. A benchmark measures what
// tracing costs the worker.
//
// The package has no non-test code besides this comment: it exists so
// that tests spanning ingest, worker and simulator have a home that is
// none of theirs.
package e2e
