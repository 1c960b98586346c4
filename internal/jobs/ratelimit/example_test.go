package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
	"github.com/groupflow/groupflow/internal/natsembed"
)

// A worker runs one Limiter, calls Wait before every Graph call, and pauses
// the number on every worker when Meta answers with a throttle.
func Example() {
	dir, err := os.MkdirTemp("", "ratelimit-example")
	if err != nil {
		panic(err)
	}
	defer func() { _ = os.RemoveAll(dir) }() // best effort: a temporary directory
	srv, err := natsembed.Start(natsembed.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	names := events.Names{}
	if err := events.Ensure(ctx, js, events.TopologyConfig{Names: names}); err != nil {
		panic(err)
	}
	workers, _ := js.KeyValue(ctx, names.WorkersBucket())
	throttle, _ := js.KeyValue(ctx, names.ThrottleBucket())

	lim, err := ratelimit.New(ratelimit.Config{
		Workers:  workers,
		Throttle: throttle,
		WorkerID: "worker-1",
		Defaults: ratelimit.Limits{Messages: 80, GroupOps: 10},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- lim.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil { // Run returns nil once stopped
			panic(err)
		}
	}()

	const phone = "1555000001"
	// Before a Graph call. The first one waits for the worker's share.
	if err := lim.Wait(ctx, phone, ratelimit.Messages); err != nil {
		panic(err)
	}
	fmt.Println("live workers:", lim.LiveWorkers())

	// Meta answered 130429 for this number: pause it on every worker.
	// (80007: lim.AccountOf(phone); code 4: ratelimit.AppScope().)
	if err := lim.Pause(ctx, ratelimit.NumberScope(phone), time.Now().Add(time.Minute), "130429"); err != nil {
		panic(err)
	}
	var te *ratelimit.ThrottledError
	if err := lim.Wait(ctx, phone, ratelimit.Messages); errors.As(err, &te) {
		fmt.Println("throttled by", te.Scope+"; NakWithDelay", time.Until(te.Until).Round(time.Minute))
	}
	// Output:
	// live workers: 1
	// throttled by number:1555000001; NakWithDelay 1m0s
}
