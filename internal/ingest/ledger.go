package ingest

import (
	"context"
	"errors"

	"github.com/groupflow/groupflow/internal/jobs"
)

// JobsLedger adapts the worker's ledger to what the ingest reads of it.
func JobsLedger(l *jobs.Ledger) Ledger { return jobsLedger{l} }

type jobsLedger struct{ l *jobs.Ledger }

func (j jobsLedger) Lookup(ctx context.Context, commandID string) (jobs.Entry, bool, error) {
	e, _, err := j.l.Get(ctx, commandID)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return jobs.Entry{}, false, nil
	case err != nil:
		return jobs.Entry{}, false, err
	}
	return e, true, nil
}
