package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
)

// eventFilter selects events: phone and types by subject (the server
// filters), the rest by CloudEvents extension (groupctl filters).
type eventFilter struct {
	phone    string
	types    []string
	group    string
	command  string
	campaign string
}

// subjects are the consumer's filter subjects. Types may be exact
// ("group.created"), a family ("group" or "group.*") or "*" for all.
func (f eventFilter) subjects(n events.Names) ([]string, error) {
	phone := "*"
	if f.phone != "" {
		if !events.ValidToken(f.phone) {
			return nil, usageErrorf("--phone %q is not a phone number id", f.phone)
		}
		phone = f.phone
	}
	if len(f.types) == 0 {
		return []string{n.Event(phone, ">")}, nil
	}
	var families, exact []string
	for _, t := range f.types {
		fam, rest, hasDot := strings.Cut(strings.TrimSpace(t), ".")
		switch {
		case fam == "*" || fam == ">":
			return []string{n.Event(phone, ">")}, nil
		case !events.ValidToken(fam) || hasDot && rest != "*" && !events.ValidToken(rest):
			return nil, usageErrorf("--type %q: want an event type such as group.created, or a family such as group.*", t)
		case !hasDot || rest == "*":
			families = append(families, fam)
		default:
			exact = append(exact, fam+"."+rest)
		}
	}
	// The server refuses overlapping filters: a family covers its types.
	var out []string
	for _, fam := range families {
		if s := n.Event(phone, fam+".*"); !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, t := range exact {
		fam, _, _ := strings.Cut(t, ".")
		if s := n.Event(phone, t); !slices.Contains(families, fam) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f eventFilter) match(e event.Event) bool {
	ext := func(name string) string {
		v, _ := e.Extensions()[name].(string)
		return v
	}
	return (f.group == "" || ext(events.ExtGroupID) == f.group) &&
		(f.command == "" || ext(events.ExtCommandID) == f.command) &&
		(f.campaign == "" || ext(events.ExtCampaignID) == f.campaign)
}

type eventsFlags struct {
	filter eventFilter
	since  string
	all    bool
	follow bool
	count  int
	json   bool
}

func (a *app) eventsCommand() *cobra.Command {
	var f eventsFlags
	c := &cobra.Command{
		Use:   "events",
		Short: "Follow the event stream, one readable line per event (or --json)",
		Long: `Follow GROUPS_EVENTS with an ephemeral ordered consumer and print each event as
one line (or its CloudEvent JSON with --json). Ctrl-C stops.

By default only new events are shown; --since 10m (or an RFC 3339 time) and --all
start further back. --command alone starts at the beginning, since a command's
events usually already happened. --follow=false stops once the stored events are
printed; --count N stops after N events.`,
		Example: `  groupctl events --phone 106540352242922
  groupctl events --type group.* --type command.failed --since 1h
  groupctl events --command demo-create-1 --follow=false --json`,
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			if f.count < 0 {
				return usageErrorf("--count must not be negative")
			}
			return a.followEvents(c.Context(), f, func(e event.Event, raw []byte) error {
				if f.json {
					_, err := fmt.Fprintf(a.stdout, "%s\n", compactJSON(raw))
					return err
				}
				_, err := fmt.Fprintln(a.stdout, renderEvent(e))
				return err
			})
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.filter.phone, "phone", "", "only events of this business phone number id")
	fs.StringSliceVar(&f.filter.types, "type", nil, "only these event types or families (group.created, group.*, command); repeat or comma separate")
	fs.StringVar(&f.filter.group, "group", "", "only events about this group id")
	fs.StringVar(&f.filter.command, "command", "", "only events of this command id")
	fs.StringVar(&f.filter.campaign, "campaign", "", "only events of this campaign id")
	fs.StringVar(&f.since, "since", "", "start this far back (duration such as 10m, or an RFC 3339 time)")
	fs.BoolVar(&f.all, "all", false, "start at the first stored event")
	fs.BoolVar(&f.follow, "follow", true, "keep following new events (false: stop after the stored ones)")
	fs.IntVar(&f.count, "count", 0, "stop after this many events (0: no limit)")
	fs.BoolVar(&f.json, "json", false, "print each event's CloudEvent JSON on one line")
	return c
}

// followEvents feeds matching events to emit until ctx ends, --count is
// reached or, without --follow, the stored events are done.
func (a *app) followEvents(ctx context.Context, f eventsFlags, emit func(event.Event, []byte) error) error {
	names := a.names()
	subjects, err := f.filter.subjects(names)
	if err != nil {
		return err
	}
	deliver, start, err := startPolicy(f, time.Now())
	if err != nil {
		return err
	}
	js, err := a.connect(ctx)
	if err != nil {
		return err
	}
	shown := 0
	handle := func(m jetstream.Msg) error {
		e, err := events.Unmarshal(m.Data())
		if err != nil {
			fmt.Fprintf(a.stderr, "groupctl: skipping a message on %s that is not a CloudEvent: %v\n", m.Subject(), err)
			return nil
		}
		if !f.filter.match(e) {
			return nil
		}
		if err := emit(e, m.Data()); err != nil {
			return err
		}
		if shown++; f.count > 0 && shown >= f.count {
			return errStop
		}
		return nil
	}
	if !f.follow {
		return a.readStored(ctx, js, names.EventStream(), jetstream.ConsumerConfig{
			FilterSubjects: subjects, DeliverPolicy: deliver, OptStartTime: start,
		}, handle)
	}

	rctx, cancel := a.requestCtx(ctx)
	cons, err := js.OrderedConsumer(rctx, names.EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: deliver, OptStartTime: start,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil // Ctrl-C ends a follow cleanly
			}
			return fmt.Errorf("read %s: %w", names.EventStream(), err)
		}
		if err := handle(m); errors.Is(err, errStop) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// startPolicy maps --all, --since and --command to where the consumer
// starts.
func startPolicy(f eventsFlags, now time.Time) (jetstream.DeliverPolicy, *time.Time, error) {
	switch {
	case f.all && f.since != "":
		return 0, nil, usageErrorf("give --all or --since, not both")
	case f.all:
		return jetstream.DeliverAllPolicy, nil, nil
	case f.since != "":
		if d, err := time.ParseDuration(f.since); err == nil {
			if d < 0 {
				return 0, nil, usageErrorf("--since %q: want a positive duration", f.since)
			}
			t := now.Add(-d)
			return jetstream.DeliverByStartTimePolicy, &t, nil
		}
		t, err := time.Parse(time.RFC3339, f.since)
		if err != nil {
			return 0, nil, usageErrorf("--since: want a duration (10m) or an RFC 3339 time, got %q", f.since)
		}
		return jetstream.DeliverByStartTimePolicy, &t, nil
	case f.filter.command != "" || !f.follow:
		return jetstream.DeliverAllPolicy, nil, nil
	}
	return jetstream.DeliverNewPolicy, nil, nil
}

// compactJSON drops the whitespace of a stored event so it prints on one line.
func compactJSON(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}
