package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// listedLetter is a dead letter with its place in the DLQ stream.
type listedLetter struct {
	Seq uint64 `json:"seq"`
	jobs.DeadLetter
}

// dlqFilter narrows the DLQ by phone number and command type (subjects
// groups.dlq.<phone>.<type>).
type dlqFilter struct{ phone, cmdType string }

func (f dlqFilter) subject(n events.Names) (string, error) {
	phone, typ := "*", "*"
	if f.phone != "" {
		if !events.ValidToken(f.phone) {
			return "", usageErrorf("--phone %q is not a phone number id", f.phone)
		}
		phone = f.phone
	}
	if f.cmdType != "" {
		if !events.IsCommandType(f.cmdType) {
			return "", usageErrorf("--type %q is not a command type (%s)", f.cmdType, strings.Join(events.CommandTypes(), ", "))
		}
		typ = f.cmdType
	}
	return n.DLQ(phone, typ), nil
}

func (f *dlqFilter) register(c *cobra.Command) {
	c.Flags().StringVar(&f.phone, "phone", "", "only dead letters of this business phone number id")
	c.Flags().StringVar(&f.cmdType, "type", "", "only dead letters of this command type")
}

func (a *app) dlqCommand() *cobra.Command {
	var listF dlqFilter
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the dead letters: commands whose retries ran out",
		Args:  exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			subject, err := listF.subject(a.names())
			if err != nil {
				return err
			}
			letters, err := a.deadLetters(c.Context(), subject)
			if err != nil {
				return err
			}
			if listJSON {
				for _, l := range letters {
					if err := writeJSON(a.stdout, l); err != nil {
						return err
					}
				}
				return nil
			}
			if len(letters) == 0 {
				a.printf("the dead-letter queue is empty\n")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tDEAD AT\tCOMMAND\tTYPE\tPHONE\tREASON\tATTEMPTS\tLAST ERROR")
			for _, l := range letters {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", l.Seq, stamp(l.DeadAt), l.CommandID, l.CommandType,
					l.PhoneNumberID, l.Reason, len(l.Attempts), truncate(oneLine(l.Error), 60))
			}
			return tw.Flush()
		},
	}
	listF.register(list)
	list.Flags().BoolVar(&listJSON, "json", false, "print each dead letter as a JSON line")

	var showJSON bool
	show := &cobra.Command{
		Use:   "show <seq>",
		Short: "Show one dead letter: the command, where it went and every attempt",
		Args:  exactArgs("seq"),
		RunE: func(c *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			l, err := a.deadLetter(c.Context(), seq)
			if err != nil {
				return err
			}
			if showJSON {
				return writeJSON(a.stdout, l)
			}
			a.printLetter(l)
			return nil
		},
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print the dead letter as JSON")

	var replayAll bool
	var replayF dlqFilter
	replay := &cobra.Command{
		Use:   "replay <seq>... | replay --all",
		Short: "Execute dead commands again: forget their ledger entry, re-publish, remove from the DLQ",
		Long: `Replay re-submits dead commands. For each one it deletes the command's terminal
ledger entry (so the same id executes again rather than re-publishing its old
failure), publishes the command as it was received to the subject it was
published on, and deletes it from the DLQ. Fix what made it fail first.
A replayed campaign invite's new result replaces its failure in the
campaign's counts (groupctl campaign status), even after the campaign ended.
--all replays every dead letter (narrowed by --phone and --type).`,
		Example: "  groupctl dlq replay 12 13\n  groupctl dlq replay --all --type send_group_invite",
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case replayAll && len(args) > 0:
				return usageErrorf("give sequence numbers or --all, not both")
			case !replayAll && len(args) == 0:
				return usageErrorf("give the sequence numbers to replay (groupctl dlq list shows them), or --all")
			case !replayAll && (replayF.phone != "" || replayF.cmdType != ""):
				return usageErrorf("--phone and --type narrow --all only")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			var seqs []uint64
			if replayAll {
				subject, err := replayF.subject(a.names())
				if err != nil {
					return err
				}
				letters, err := a.deadLetters(ctx, subject)
				if err != nil {
					return err
				}
				for _, l := range letters {
					seqs = append(seqs, l.Seq)
				}
				if len(seqs) == 0 {
					a.printf("nothing to replay: the dead-letter queue is empty\n")
					return nil
				}
			}
			for _, s := range args {
				seq, err := parseSeq(s)
				if err != nil {
					return err
				}
				seqs = append(seqs, seq)
			}
			failures := 0
			for _, seq := range seqs {
				if err := a.replay(ctx, seq); err != nil {
					fmt.Fprintf(a.stderr, "groupctl: dead letter %d: %s\n", seq, oneLine(err.Error()))
					failures++
				}
			}
			if failures > 0 {
				return failed(fmt.Errorf("%d of %d dead letters not replayed", failures, len(seqs)))
			}
			return nil
		},
	}
	replay.Flags().BoolVar(&replayAll, "all", false, "replay every dead letter (narrow with --phone, --type)")
	replayF.register(replay)

	var yes bool
	var purgeF dlqFilter
	purge := &cobra.Command{
		Use:   "purge --yes",
		Short: "Delete dead letters for good (all, or those of --phone / --type)",
		Args:  exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			subject, err := purgeF.subject(a.names())
			if err != nil {
				return err
			}
			str, err := a.dlqStream(ctx)
			if err != nil {
				return err
			}
			n, err := countSubject(ctx, str, subject)
			if err != nil {
				return err
			}
			if !yes {
				return usageErrorf("this deletes %d dead letter(s) for good; run again with --yes", n)
			}
			rctx, cancel := a.requestCtx(ctx)
			defer cancel()
			if err := str.Purge(rctx, jetstream.WithPurgeSubject(subject)); err != nil {
				return fmt.Errorf("purge %s: %w", subject, err)
			}
			a.printf("purged %d dead letter(s)\n", n)
			return nil
		},
	}
	purge.Flags().BoolVar(&yes, "yes", false, "really delete")
	purgeF.register(purge)

	return parentCommand("dlq", "Inspect, replay or purge the dead-letter queue (GROUPS_DLQ)", list, show, replay, purge)
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usageErrorf("%q is not a DLQ sequence number (groupctl dlq list shows them)", s)
	}
	return seq, nil
}

func (a *app) dlqStream(ctx context.Context) (jetstream.Stream, error) {
	js, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	str, err := js.Stream(rctx, a.names().DLQStream())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", a.names().DLQStream(), err)
	}
	return str, nil
}

// deadLetters reads every stored dead letter on subject, oldest first.
func (a *app) deadLetters(ctx context.Context, subject string) ([]listedLetter, error) {
	js, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	var out []listedLetter
	cfg := jetstream.ConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	err = a.readStored(ctx, js, a.names().DLQStream(), cfg, func(m jetstream.Msg) error {
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		l := listedLetter{Seq: md.Sequence.Stream}
		if err := json.Unmarshal(m.Data(), &l.DeadLetter); err != nil {
			l.Error = "unreadable dead letter: " + err.Error()
		}
		out = append(out, l)
		return nil
	})
	return out, err
}

func (a *app) deadLetter(ctx context.Context, seq uint64) (listedLetter, error) {
	str, err := a.dlqStream(ctx)
	if err != nil {
		return listedLetter{}, err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	m, err := str.GetMsg(rctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return listedLetter{}, fmt.Errorf("no dead letter %d in %s (groupctl dlq list shows what is there)", seq, a.names().DLQStream())
	}
	if err != nil {
		return listedLetter{}, fmt.Errorf("read dead letter %d: %w", seq, err)
	}
	l := listedLetter{Seq: seq}
	if err := json.Unmarshal(m.Data, &l.DeadLetter); err != nil {
		return listedLetter{}, fmt.Errorf("dead letter %d is not a jobs.DeadLetter: %w", seq, err)
	}
	return l, nil
}

func (a *app) printLetter(l listedLetter) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("seq", strconv.FormatUint(l.Seq, 10))
	row("command", fmt.Sprintf("%s (%s, phone %s)", l.CommandID, l.CommandType, l.PhoneNumberID))
	row("subject", l.Subject)
	row("dead at", fmt.Sprintf("%s by worker %s (command stream seq %d)", stamp(l.DeadAt), l.Worker, l.StreamSequence))
	row("reason", l.Reason)
	if l.Error != "" {
		row("error", oneLine(l.Error))
	}
	row("attempts", strconv.Itoa(len(l.Attempts)))
	for i, at := range l.Attempts {
		s := fmt.Sprintf("%s %s", stamp(at.At), at.Outcome)
		if at.Code != 0 {
			s += fmt.Sprintf(" code %d", at.Code)
		}
		if at.Error != "" {
			s += ": " + truncate(oneLine(at.Error), 160)
		}
		if at.Worker != "" {
			s += fmt.Sprintf(" (worker %s, delivery %d)", at.Worker, at.Delivery)
		}
		row(fmt.Sprintf("  %d.", i+1), s)
	}
	row("body", string(compactJSON(l.Command)))
	_ = tw.Flush()
}

// replay forgets the command's ledger entry, re-publishes it and removes
// the dead letter, in that order: a failure leaves the dead letter in
// place to be replayed again.
func (a *app) replay(ctx context.Context, seq uint64) error {
	l, err := a.deadLetter(ctx, seq)
	if err != nil {
		return err
	}
	if _, err := events.DecodeCommand(l.Subject, l.Command); err != nil {
		return fmt.Errorf("command %s cannot be replayed, it is invalid: %s", l.CommandID, validationLine(err))
	}
	js, err := a.connect(ctx)
	if err != nil {
		return err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	kv, err := js.KeyValue(rctx, a.names().LedgerBucket())
	if err != nil {
		return fmt.Errorf("open the ledger: %w", err)
	}
	if err := jobs.NewLedger(kv, nil).Forget(rctx, l.CommandID); err != nil {
		return fmt.Errorf("forget %s in the ledger: %w", l.CommandID, err)
	}
	// A message id of its own: the original id may still be inside the
	// stream's duplicate window, and a retried replay must not queue twice.
	// The replay header gives this execution a terminal event of its own.
	replay := strconv.FormatUint(seq, 10)
	msgID := l.CommandID + ":replay:" + replay
	h := nats.Header{}
	h.Set(events.ReplayHeader, replay)
	ack, err := a.publish(ctx, l.Subject, msgID, l.Command, h)
	if err != nil {
		return fmt.Errorf("re-publish %s to %s: %w", l.CommandID, l.Subject, err)
	}
	str, err := js.Stream(rctx, a.names().DLQStream())
	if err == nil {
		err = str.DeleteMsg(rctx, seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("replayed %s, but could not remove dead letter %d (remove it before replaying again): %w", l.CommandID, seq, err)
	}
	a.printf("replayed %d: %s %s → %s (seq %d)\n", seq, l.CommandType, l.CommandID, l.Subject, ack.Sequence)
	return nil
}

// countSubject counts the messages of str on subject.
func countSubject(ctx context.Context, str jetstream.Stream, subject string) (uint64, error) {
	info, err := str.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", subject, err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// errStop ends readStored early without an error.
var errStop = errors.New("stop")

// readStored feeds fn every message of stream matching cfg (filter and
// start) that is stored now, oldest first, through an ephemeral consumer
// that knows how many there are. fn may return errStop.
func (a *app) readStored(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig, fn func(jetstream.Msg) error) error {
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	cfg.AckPolicy, cfg.InactiveThreshold, cfg.MemoryStorage = jetstream.AckNonePolicy, time.Minute, true
	cons, err := js.CreateConsumer(rctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read %s: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = js.DeleteConsumer(dctx, stream, cons.CachedInfo().Name)
		cancel()
	}()
	left := cons.CachedInfo().NumPending
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(a.timeout))
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := fn(m); errors.Is(err, errStop) {
				return nil
			} else if err != nil {
				return err
			}
			if md, err := m.Metadata(); err == nil {
				left = md.NumPending
			} else {
				left--
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 {
			return fmt.Errorf("read %s: %d message(s) expected but none came within %s", stream, left, a.timeout)
		}
	}
	return nil
}
