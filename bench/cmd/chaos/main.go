// Command chaos runs groupflow's chaos scenarios and writes chaos.json (see
// bench/README.md). It exits 1 when a scenario loses or duplicates work.
//
//	go run ./bench/cmd/chaos [-size full|smoke] [-out bench] [-only cluster,faults] [-bin ./bin]
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
	os.Exit(bench.Main(ctx, "chaos", os.Args[1:], bench.ChaosSections(), bench.WriteChaosReport))
}
