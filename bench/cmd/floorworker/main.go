// Command floorworker is the worker section's floor (bench.RunFloor): the
// stored writes and the Graph call a get_invite_link command needs, and
// nothing else. make bench starts it; it is not a worker to deploy.
//
//	NATS_URL=… GRAPH_API_BASE_URL=… FLOOR_CONCURRENCY=16 floorworker
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/groupflow/groupflow/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	conc, err := strconv.Atoi(os.Getenv("FLOOR_CONCURRENCY"))
	if err != nil || conc < 1 {
		fmt.Fprintln(os.Stderr, "floorworker: FLOOR_CONCURRENCY must be a positive number")
		os.Exit(2)
	}
	err = bench.RunFloor(ctx, bench.FloorConfig{NATSURL: os.Getenv("NATS_URL"), GraphURL: os.Getenv("GRAPH_API_BASE_URL"), Concurrency: conc})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floorworker:", err)
		os.Exit(1)
	}
}
