package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status <command-id>",
		Short: "Show a command's ledger entry: state, attempts and result",
		Long: `Show what the ledger knows about a command id: its state (queued,
running, awaiting_webhook, succeeded, partially_succeeded, failed, rejected), every
attempt, the Graph requests it awaits and its result. Exits 1 when the id is
not in the ledger: an accepted command appears there once a worker takes it
(until then it waits in the command stream); otherwise it was never received,
or is older than the ledger's 7 days.`,
		Args: exactArgs("command-id"),
		RunE: func(c *cobra.Command, args []string) error {
			e, err := a.ledgerEntry(c.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, e)
			}
			a.printEntry(e)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the ledger entry as JSON")
	return c
}

func (a *app) ledgerEntry(ctx context.Context, id string) (jobs.Entry, error) {
	if !events.ValidCommandID(id) {
		return jobs.Entry{}, usageErrorf("%q is not a command id (1–128 of A-Z a-z 0-9 _ - . :)", id)
	}
	js, err := a.connect(ctx)
	if err != nil {
		return jobs.Entry{}, err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	bucket := a.names().LedgerBucket()
	var refused atomic.Bool
	defer a.refused.onStream("KV_"+bucket, func() { refused.Store(true); cancel() })()
	notReadable := func() error {
		return fmt.Errorf("this NATS user may not read the ledger %s (operators connect as admin of deploy/nats/accounts.conf); "+
			"the command's events are in the event stream: groupctl events --command %s", bucket, id)
	}
	kv, err := js.KeyValue(rctx, bucket)
	if refused.Load() {
		return jobs.Entry{}, notReadable()
	}
	if err != nil {
		return jobs.Entry{}, fmt.Errorf("open the ledger %s: %w", bucket, err)
	}
	e, _, err := jobs.NewLedger(kv, nil).Get(rctx, id)
	if refused.Load() {
		return jobs.Entry{}, notReadable()
	}
	if errors.Is(err, jobs.ErrNotFound) {
		return jobs.Entry{}, fmt.Errorf("command %s is not in the ledger: a command appears there once a worker takes it. "+
			"If it was accepted (published, or 202 from the ingest), it is waiting in the command stream (a backlog, or no worker running; see groupctl health). "+
			"Otherwise it was never received, or it is older than the ledger's 7 days", id)
	}
	return e, err
}

func (a *app) printEntry(e jobs.Entry) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("command", fmt.Sprintf("%s (%s, phone %s)", e.CommandID, e.CommandType, e.PhoneNumberID))
	row("state", string(e.State))
	row("created", stamp(e.CreatedAt))
	row("updated", stamp(e.UpdatedAt))
	if e.Owner != "" && !e.State.Terminal() {
		row("claimed", "until "+stamp(e.LeaseUntil))
	}
	if in := e.Intent; in != nil {
		s := fmt.Sprintf("%s at %s", in.Op, stamp(in.At))
		if !in.Done {
			s += " (outcome not recorded yet)"
		}
		row("intent", s)
	}
	for _, p := range e.Pending {
		s := "awaiting webhook"
		if p.Done {
			s = "webhook received"
		}
		if len(p.Items) > 0 {
			s += " for " + strings.Join(p.Items, ", ")
		}
		row("request", p.RequestID+": "+s)
	}
	if !e.AwaitUntil.IsZero() && !e.State.Terminal() {
		row("gives up", stamp(e.AwaitUntil)+" (webhook_timeout)")
	}
	row("attempts", fmt.Sprint(len(e.Attempts)))
	for i, at := range e.Attempts {
		s := fmt.Sprintf("%s %s", stamp(at.At), at.Outcome)
		if at.Code != 0 {
			s += fmt.Sprintf(" code %d", at.Code)
		}
		if at.Error != "" {
			s += ": " + truncate(at.Error, 160)
		}
		if at.Worker != "" {
			s += fmt.Sprintf(" (worker %s, delivery %d)", at.Worker, at.Delivery)
		}
		row(fmt.Sprintf("  %d.", i+1), s)
	}
	if r := e.Result; r != nil {
		line := r.Type
		if ev, err := events.Unmarshal(r.Event); err == nil {
			line = ev.Type() + ": " + describe(ev)
		}
		if !r.Published {
			line += " (event not yet published)"
		}
		row("result", line)
	}
	_ = tw.Flush()
}

// stamp shows a time in local time with its date, or "-".
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
