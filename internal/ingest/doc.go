// Package ingest is groupflow's HTTP front door: Meta's webhook endpoint, the
// command API other services POST to, and health probes. It answers only
// after JetStream has acknowledged what it was given, so an answer of 2xx
// means nothing can be lost. Each API token's requests may be bounded
// (Config.APIRate): one caller cannot flood the command stream for the others.
package ingest
