// Package bench measures groupflow and tries to break it: the harness
// behind `make bench` (bench/report.json, bench/report.md and the charts)
// and `make chaos` (bench/chaos.json).
//
// Every scenario runs the real thing: an embedded nats-server (one node, or
// a three-node cluster for leader loss), the Graph simulator over HTTP, and
// the cmd/worker and cmd/ingest binaries as separate processes wherever a
// figure is about processes (scaling, memory, crashes). Each figure is
// measured in the same run as its baseline, on the same machine, so the
// ratios mean something even on a small shared box. bench/README.md lists
// every figure with the command that produces it.
package bench
