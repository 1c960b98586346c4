// Command benchreport runs groupflow's benchmark scenarios and writes
// report.json, report.md and the charts (see bench/README.md).
//
//	go run ./bench/cmd/benchreport [-size full|smoke] [-out bench] [-only scaling,ratelimit] [-bin ./bin]
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/groupflow/groupflow/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(bench.Main(ctx, "benchreport", os.Args[1:], bench.Sections(), bench.WriteBenchReport))
}
