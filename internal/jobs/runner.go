package jobs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Back-off of a slot whose messages are handed back (see consume).
const (
	firstHandBackPause   = 50 * time.Millisecond
	longestHandBackPause = time.Second
)

// consume pulls from a shared durable consumer and runs fn on up to n
// messages at once. It pulls at most n messages ahead, so one worker never
// hoards work that others could do. When ctx is done it stops pulling,
// hands the messages already buffered to fn (which naks them at once during
// shutdown), waits for every fn to return, and returns nil.
//
// fn reports whether it handed its message back unprocessed because the
// worker cannot serve it now (a number's rate-limit share is busy). The
// slot then pauses before it pulls again, doubling the pause from
// firstHandBackPause to longestHandBackPause while every message it takes is
// handed back, and starting over once one is not. Without the pause, the
// slots a busy number cannot use spin through the rest of its backlog: a
// worker at 10 group operations/s with 16 slots and 2,000 approvals
// queued handed back about 1,000 commands a second.
func (w *Worker) consume(ctx context.Context, cons jetstream.Consumer, n int, name string, fn func(jetstream.Msg) (handedBack bool)) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(n))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()

	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var pause time.Duration
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err != nil {
					// Missed heartbeats and the like: the iterator
					// recovers by itself; do not spin while it does.
					if ctx.Err() == nil {
						w.log.Warn("pull failed", slog.String("consumer", name), slog.Any("error", err))
						select {
						case <-ctx.Done():
						case <-time.After(250 * time.Millisecond):
						}
					}
					continue
				}
				if !fn(msg) {
					pause = 0
					continue
				}
				pause = min(max(2*pause, firstHandBackPause), longestHandBackPause)
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// heartbeat keeps a slow delivery alive: every AckWait/3 it tells the
// server the message is in progress (so it is not redelivered to another
// worker) and renews the ledger claim (so a redelivery, should one happen,
// sees the claim held). It stops when the returned function is called,
// which waits for a beat under way. Most commands end long before the
// first beat, so it is a timer, not a goroutine of its own.
func (w *Worker) heartbeat(ctx context.Context, msg jetstream.Msg, commandID, token string) func() {
	if w.ackWait <= 0 {
		return func() {}
	}
	var (
		mu      sync.Mutex // held by a beat under way
		stopped bool
		t       *time.Timer
	)
	mu.Lock() // t is set before the first beat reads it
	defer mu.Unlock()
	t = time.AfterFunc(w.ackWait/3, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		if commandID != "" {
			if err := w.ledger.Renew(ctx, commandID, token, w.lease()); err != nil && !errors.Is(err, context.Canceled) {
				w.log.WarnContext(ctx, "renew claim", slog.String("command_id", commandID), slog.Any("error", err))
			}
		}
		t.Reset(w.ackWait / 3)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// lease is how long a claim lasts without renewal: the message's ack
// wait, renewed with it. A worker that died stops renewing both, so the
// redelivery finds the claim expired and takes it over.
func (w *Worker) lease() time.Duration { return w.ackWait }
