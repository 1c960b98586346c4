package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/config"
	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// healthReport is what `health` finds; --json prints it as is.
type healthReport struct {
	Healthy   bool             `json:"healthy"`
	NATS      string           `json:"nats"`
	Server    string           `json:"server,omitempty"`
	Streams   []streamHealth   `json:"streams"`
	Consumers []consumerHealth `json:"consumers"`
	Buckets   []bucketHealth   `json:"buckets"`
	Workers   []workerHealth   `json:"workers"`
	Throttles []throttleHealth `json:"throttles,omitempty"`
	// Problems make the system unhealthy (exit 1); warnings do not.
	Problems []string `json:"problems,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

type streamHealth struct {
	Name      string    `json:"name"`
	Messages  uint64    `json:"messages"`
	Bytes     uint64    `json:"bytes"`
	Consumers int       `json:"consumers"`
	LastTime  time.Time `json:"last_time,omitzero"`
	Replicas  int       `json:"replicas"`
	// Parked counts the parked commands the stream holds (the parked
	// stream; a legacy command stream too): copies waiting for their
	// rate-limit turn, not lag more workers would shorten.
	Parked uint64 `json:"parked,omitempty"`
}

type consumerHealth struct {
	Stream      string    `json:"stream"`
	Name        string    `json:"name"`
	Pending     uint64    `json:"pending"`
	AckPending  int       `json:"ack_pending"`
	Redelivered int       `json:"redelivered"`
	Waiting     int       `json:"waiting"`
	LastActive  time.Time `json:"last_active,omitzero"`
}

type bucketHealth struct {
	Name   string        `json:"name"`
	Values uint64        `json:"values"`
	TTL    time.Duration `json:"ttl"`
}

type workerHealth struct {
	ID       string    `json:"id"`
	LastSeen time.Time `json:"last_seen"`
}

type throttleHealth struct {
	Scope  string    `json:"scope"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason,omitempty"`
	Worker string    `json:"worker,omitempty"`
}

func (a *app) healthCommand() *cobra.Command {
	var asJSON bool
	var maxPending uint64
	c := &cobra.Command{
		Use:   "health",
		Short: "Check streams, consumers (pending, ack pending, lag), buckets and live workers; exit 1 if unhealthy",
		Long: `Check that groupflow's JetStream topology is in place and being worked:
every stream and bucket exists, the shared worker consumers exist, and at least
one worker is alive (heartbeating in the workers bucket). Shows each durable
consumer's pending (lag), ack-pending and redelivered counts, active throttles
and the dead-letter count. Exits 1 when unhealthy; --max-pending also counts a
consumer lagging by more than that many messages as unhealthy.`,
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			r, err := a.health(c.Context(), maxPending)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(a.stdout, r)
			} else {
				a.printHealth(r)
			}
			if err != nil {
				return err
			}
			if !r.Healthy {
				return failed(fmt.Errorf("unhealthy: %s", strings.Join(r.Problems, "; ")))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().Uint64Var(&maxPending, "max-pending", 0, "unhealthy when a worker consumer has more messages pending (0: no limit)")
	return c
}

func (a *app) health(ctx context.Context, maxPending uint64) (healthReport, error) {
	js, err := a.connect(ctx)
	if err != nil {
		return healthReport{}, err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	names := a.names()
	r := healthReport{NATS: config.RedactURL(a.nc.ConnectedUrl())}
	if id := a.nc.ConnectedServerName(); id != "" {
		r.Server = id + " " + a.nc.ConnectedServerVersion()
	}
	problem := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	warn := func(format string, args ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...)) }

	if _, err := js.AccountInfo(rctx); err != nil {
		return r, fmt.Errorf("JetStream is not available at %s: %w", r.NATS, err)
	}
	durables := map[string]string{names.CommandStream(): names.CommandConsumer(), names.WebhookStream(): names.WebhookConsumer()}
	for _, name := range []string{names.CommandStream(), names.ParkedStream(), names.WebhookStream(), names.EventStream(), names.DLQStream()} {
		str, err := js.Stream(rctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			problem("stream %s is missing (start a worker or the ingest: they create the topology)", name)
			continue
		}
		if err != nil {
			return r, fmt.Errorf("stream %s: %w", name, err)
		}
		info := str.CachedInfo()
		sh := streamHealth{Name: name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			Consumers: info.State.Consumers, LastTime: info.State.LastTime, Replicas: info.Config.Replicas}
		legacy := name == names.CommandStream() && events.LegacyCommandStream(&info.Config)
		if name == names.ParkedStream() || legacy {
			if sh.Parked, err = jobs.ParkedIn(rctx, js, names, name); err != nil {
				return r, fmt.Errorf("parked commands in %s: %w", name, err)
			}
		}
		if legacy {
			warn("%s allows roll-ups (it was made when parked commands waited in it): a publish with a Nats-Rollup header purges it; "+
				"stop the workers and run groupctl migrate", name)
		}
		r.Streams = append(r.Streams, sh)
		if name == names.DLQStream() && info.State.Msgs > 0 {
			warn("%d dead letter(s) in %s: groupctl dlq list", info.State.Msgs, name)
		}
		found := false
		lister := str.ListConsumers(rctx)
		for ci := range lister.Info() {
			if ci.Config.Durable == "" || strings.HasPrefix(ci.Name, "JS_SRC_") {
				// groupctl's own and other ephemeral readers; the
				// server's for the command stream's source of the parked
				// stream, whose due copies count as parked.
				continue
			}
			found = found || ci.Name == durables[name]
			r.Consumers = append(r.Consumers, consumerHealth{Stream: name, Name: ci.Name, Pending: ci.NumPending,
				AckPending: ci.NumAckPending, Redelivered: ci.NumRedelivered, Waiting: ci.NumWaiting, LastActive: lastActive(ci)})
			if maxPending > 0 && ci.NumPending > maxPending {
				problem("consumer %s on %s lags by %d messages (more than --max-pending %d)", ci.Name, name, ci.NumPending, maxPending)
			}
		}
		if err := lister.Err(); err != nil {
			return r, fmt.Errorf("consumers of %s: %w", name, err)
		}
		if d := durables[name]; d != "" && !found {
			problem("consumer %s on %s is missing", d, name)
		}
	}

	for _, name := range []string{names.LedgerBucket(), names.CorrelationBucket(), names.CampaignBucket(), names.ReadsBucket(), names.WorkersBucket(), names.ThrottleBucket(), names.OwnerBucket()} {
		kv, err := js.KeyValue(rctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			problem("bucket %s is missing", name)
			continue
		}
		if err != nil {
			return r, fmt.Errorf("bucket %s: %w", name, err)
		}
		st, err := kv.Status(rctx)
		if err != nil {
			return r, fmt.Errorf("bucket %s: %w", name, err)
		}
		r.Buckets = append(r.Buckets, bucketHealth{Name: name, Values: st.Values(), TTL: st.TTL()})
		switch name {
		case names.WorkersBucket():
			if r.Workers, err = workers(rctx, kv); err != nil {
				return r, err
			}
			if len(r.Workers) == 0 {
				problem("no worker is alive (none heartbeating in %s)", name)
			}
		case names.ThrottleBucket():
			if r.Throttles, err = throttles(rctx, kv, time.Now()); err != nil {
				return r, err
			}
			for _, t := range r.Throttles {
				warn("%s throttled until %s (%s)", t.Scope, stamp(t.Until), t.Reason)
			}
		}
	}
	r.Healthy = len(r.Problems) == 0
	return r, nil
}

func lastActive(ci *jetstream.ConsumerInfo) time.Time {
	if t := ci.Delivered.Last; t != nil {
		return *t
	}
	return time.Time{}
}

// kvValues reads every live value of a bucket.
func kvValues(ctx context.Context, kv jetstream.KeyValue) ([]jetstream.KeyValueEntry, error) {
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if e == nil { // the stored values are done
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// workers lists the live heartbeats ({"worker","at"}, written by the rate
// limiter of every worker); an entry lives for the bucket's TTL.
func workers(ctx context.Context, kv jetstream.KeyValue) ([]workerHealth, error) {
	entries, err := kvValues(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	var out []workerHealth
	for _, e := range entries {
		var hb struct {
			Worker string    `json:"worker"`
			At     time.Time `json:"at"`
		}
		_ = json.Unmarshal(e.Value(), &hb)
		w := workerHealth{ID: e.Key(), LastSeen: hb.At}
		if w.LastSeen.IsZero() {
			w.LastSeen = e.Created()
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b workerHealth) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// throttles lists the shared pauses still in force.
func throttles(ctx context.Context, kv jetstream.KeyValue, now time.Time) ([]throttleHealth, error) {
	entries, err := kvValues(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("read throttles: %w", err)
	}
	var out []throttleHealth
	for _, e := range entries {
		var p struct {
			Until  time.Time `json:"until"`
			Reason string    `json:"reason"`
			Worker string    `json:"worker"`
		}
		if json.Unmarshal(e.Value(), &p) != nil || !p.Until.After(now) {
			continue
		}
		out = append(out, throttleHealth{Scope: strings.Replace(e.Key(), ".", ":", 1), Until: p.Until, Reason: p.Reason, Worker: p.Worker})
	}
	return out, nil
}

func (a *app) printHealth(r healthReport) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	server := r.NATS
	if r.Server != "" {
		server += " (" + r.Server + ")"
	}
	fmt.Fprintf(tw, "NATS\t%s\n\n", server)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tREPLICAS\tLAST MESSAGE")
	for _, s := range r.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", s.Name, s.Messages, bytesStr(s.Bytes), s.Replicas, stamp(s.LastTime))
	}
	for _, s := range r.Streams {
		if s.Parked > 0 {
			fmt.Fprintf(tw, "(%s: %d of them parked until their rate-limit turn)\n", s.Name, s.Parked)
		}
	}
	fmt.Fprintln(tw, "\nCONSUMER\tPENDING (LAG)\tACK PENDING\tREDELIVERED\tWAITING PULLS\tLAST DELIVERY")
	for _, c := range r.Consumers {
		fmt.Fprintf(tw, "%s/%s\t%d\t%d\t%d\t%d\t%s\n", c.Stream, c.Name, c.Pending, c.AckPending, c.Redelivered, c.Waiting, stamp(c.LastActive))
	}
	_ = tw.Flush()
	a.printf("\nworkers alive: %d\n", len(r.Workers))
	for _, w := range r.Workers {
		a.printf("  %s (last heartbeat %s)\n", w.ID, stamp(w.LastSeen))
	}
	for _, w := range r.Warnings {
		a.printf("warning: %s\n", w)
	}
	for _, p := range r.Problems {
		a.printf("problem: %s\n", p)
	}
	if r.Healthy {
		a.printf("healthy\n")
	} else {
		a.printf("UNHEALTHY\n")
	}
}

func bytesStr(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
