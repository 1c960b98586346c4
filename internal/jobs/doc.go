// Package jobs executes commands: one handler per command type, the ledger
// that makes them idempotent, retries, per-number rate limits and campaigns.
package jobs
