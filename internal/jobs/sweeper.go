package jobs

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"
)

// sweep fails asynchronous commands whose webhook never came, every
// SweepInterval (with jitter, so several workers do not sweep in step).
// Every worker sweeps; the compare-and-set on each entry makes exactly one
// of them finish a given command.
func (w *Worker) sweep(ctx context.Context) {
	for {
		d := w.cfg.SweepInterval/2 + rand.N(w.cfg.SweepInterval)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if _, err := w.SweepOnce(ctx); err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "sweep", slog.Any("error", err))
		}
	}
}

// SweepOnce looks at every command awaiting a webhook once: overdue ones
// fail with webhook_timeout (a remove_participants whose other chunks
// completed ends partially_succeeded), finished ones whose terminal event
// was not acknowledged are published again. It returns how many commands
// it finished.
func (w *Worker) SweepOnce(ctx context.Context) (int, error) {
	ids, err := w.ledger.AwaitingIDs(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, id := range ids {
		e, _, err := w.ledger.Get(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
			errs = append(errs, w.ledger.Unindex(ctx, id))
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		case e.State.Terminal():
			if e.Result != nil && !e.Result.Published {
				errs = append(errs, w.publishTerminal(ctx, e, false))
			} else {
				errs = append(errs, w.ledger.Unindex(ctx, id))
			}
			continue
		case e.State != StateAwaitingWebhook || w.now().Before(e.AwaitUntil):
			continue
		case isCampaignCommand(e.CommandType):
			continue // ends with its campaign, however long that runs
		}
		e, err = w.ledger.Update(ctx, id, func(e *Entry) error {
			if e.State != StateAwaitingWebhook || w.now().Before(e.AwaitUntil) {
				return errNoChange // completed or extended meanwhile
			}
			return w.makeTerminal(e, true)
		})
		if errors.Is(err, errNoChange) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ectx := traceCtx(ctx, e.Traceparent) // log and publish in the command's trace
		w.log.InfoContext(ectx, "webhook never came; command finished", slog.String("command_id", id),
			slog.String("phone_number_id", e.PhoneNumberID), slog.String("state", string(e.State)))
		n++
		w.metrics.CommandDone(ectx, e.CommandType, string(e.State), w.now().Sub(e.CreatedAt))
		errs = append(errs, w.publishTerminal(ectx, e, false))
	}
	return n, errors.Join(errs...)
}
