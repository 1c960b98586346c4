// Package sim is a stateful simulator of the WhatsApp Cloud API's Groups
// endpoints (Graph API), for tests, benchmarks and as a sandbox, since Meta
// offers none for groups.
//
// A Server is an http.Handler. It keeps numbers, groups, invite links, join
// requests, participants and templates in memory, enforces Meta's limits
// (8 participants, 10,000 groups per number, message throughput, pair rate,
// group-operation rate), answers errors in Meta's shape, and delivers the
// webhooks that complete asynchronous operations and report message
// statuses — signed with the app secret, retried on non-200, and on demand
// delayed, duplicated and reordered. Simulated people (join, leave, revoke,
// terms of service, suspension) and fault injection are driven through Go
// methods or the equivalent JSON admin API under /_sim/.
//
// The simulator speaks HTTP and JSON only and does not import the client in
// package graph: the two are checked against each other, not against a
// shared model.
package sim
