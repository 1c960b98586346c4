package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TopologyConfig sizes the streams, buckets and consumers of DESIGN §2.
// Zero fields take the defaults named on each.
type TopologyConfig struct {
	Names Names
	// Replicas of every stream and bucket: 1 on a laptop, 3 in production.
	// Defaults to 1.
	Replicas int
	// DuplicateWindow of the command and event streams: a command or event
	// published twice within it is stored once. Defaults to 2 minutes.
	DuplicateWindow time.Duration
	// WebhookDuplicateWindow of the webhook stream: Meta redelivers for days,
	// so this window is long. Defaults to 24 hours.
	WebhookDuplicateWindow time.Duration
	// Retention of the webhook and event streams. Defaults to 7 days.
	Retention time.Duration
	// DLQRetention of the dead-letter stream. Defaults to 30 days.
	DLQRetention time.Duration
	// LedgerTTL is how long a command id is remembered, and so how long a
	// re-sent id is not executed again. Defaults to 7 days.
	LedgerTTL time.Duration
	// CampaignTTL is how long campaign progress is kept. Defaults to 30 days.
	CampaignTTL time.Duration
	// ReadsTTL is how long a cached query answer is served. Defaults to 30 seconds.
	ReadsTTL time.Duration
	// WorkerTTL is how long a worker counts as alive after its last
	// heartbeat. Defaults to 10 seconds.
	WorkerTTL time.Duration
	// AckWait of the shared consumers; slow calls extend it with InProgress.
	// Defaults to 30 seconds.
	AckWait time.Duration
	// MaxDeliver of the command consumer: the last delivery that fails
	// sends the command to the DLQ. Defaults to 10.
	MaxDeliver int
	// MaxAckPending of each shared consumer: the total number of messages
	// in flight across all workers. Defaults to 1024.
	MaxAckPending int
	// Storage of streams and buckets. Defaults to file storage.
	Storage jetstream.StorageType
	// Logger is told, at warning level, of each setting Ensure changes on
	// a stream, bucket or consumer that existed already ("replicas 3 → 1"):
	// every process applies its own settings at start-up, so one set up
	// unlike the others changes them back and forth, unseen otherwise.
	// Nil logs nothing.
	Logger *slog.Logger
}

func (c TopologyConfig) withDefaults() TopologyConfig {
	const day = 24 * time.Hour
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, 2*time.Minute)
	c.WebhookDuplicateWindow = cmp.Or(c.WebhookDuplicateWindow, day)
	c.Retention = cmp.Or(c.Retention, 7*day)
	c.DLQRetention = cmp.Or(c.DLQRetention, 30*day)
	c.LedgerTTL = cmp.Or(c.LedgerTTL, 7*day)
	c.CampaignTTL = cmp.Or(c.CampaignTTL, 30*day)
	c.ReadsTTL = cmp.Or(c.ReadsTTL, 30*time.Second)
	c.WorkerTTL = cmp.Or(c.WorkerTTL, 10*time.Second)
	c.AckWait = cmp.Or(c.AckWait, 30*time.Second)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, 10)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 1024)
	return c
}

// MaxReplicas is the most replicas JetStream keeps of a stream.
const MaxReplicas = 5

func (c TopologyConfig) validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > MaxReplicas:
		return fmt.Errorf("replicas must be between 1 and %d, got %d", MaxReplicas, c.Replicas)
	case c.MaxDeliver < 2:
		return fmt.Errorf("max deliver must be at least 2, got %d", c.MaxDeliver)
	case !ValidPrefix(c.Names.prefix()):
		return fmt.Errorf("prefix %q must be ASCII letters, digits, '-' and '_' (it names subjects, streams and buckets)", c.Names.prefix())
	}
	return nil
}

// Streams returns the stream configurations of the topology.
func (c TopologyConfig) Streams() []jetstream.StreamConfig {
	c = c.withDefaults()
	n := c.Names
	return []jetstream.StreamConfig{
		{
			// Before the command stream, which sources from it.
			Name:        n.ParkedStream(),
			Description: "groupflow commands parked until their number's rate-limit turn, workers only",
			// Parked commands wait as scheduled messages (Names.Parked)
			// and become copies on Names.Due at their time. The server
			// requires roll-ups for schedules: only workers may publish
			// here (deploy/nats/accounts.conf), so only they could use
			// them. A work queue: a due copy is removed once the command
			// stream has stored it (a source's acknowledgement, NATS
			// 2.14+); a schedule is removed when it fires.
			Subjects:          []string{n.AllParked(), n.AllDue()},
			AllowMsgSchedules: true,
			AllowRollup:       true,
			Retention:         jetstream.WorkQueuePolicy,
			Storage:           c.Storage,
			Replicas:          c.Replicas,
			Duplicates:        c.DuplicateWindow,
			Discard:           jetstream.DiscardOld,
		},
		{
			Name:        n.CommandStream(),
			Description: "groupflow commands, one consumer shared by all workers",
			Subjects:    []string{n.AllCommands()},
			// Due parked copies come back as commands. Neither message
			// schedules nor roll-ups: a publish with Nats-Rollup, which
			// would purge every queued command, is refused.
			Sources:    []*jetstream.StreamSource{n.dueSource()},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    c.Storage,
			Replicas:   c.Replicas,
			Duplicates: c.DuplicateWindow,
			Discard:    jetstream.DiscardOld,
		},
		{
			Name:        n.WebhookStream(),
			Description: "Meta webhook items, one message per item",
			Subjects:    []string{n.AllWebhooks()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     c.Storage,
			Replicas:    c.Replicas,
			MaxAge:      c.Retention,
			Duplicates:  c.WebhookDuplicateWindow,
		},
		{
			Name:        n.EventStream(),
			Description: "groupflow result, domain and campaign events (CloudEvents)",
			Subjects:    []string{n.AllEvents()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     c.Storage,
			Replicas:    c.Replicas,
			MaxAge:      c.Retention,
			Duplicates:  c.DuplicateWindow,
		},
		{
			Name:        n.DLQStream(),
			Description: "commands whose retries were exhausted, with their attempt history",
			Subjects:    []string{n.AllDLQ()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     c.Storage,
			Replicas:    c.Replicas,
			MaxAge:      c.DLQRetention,
			Duplicates:  c.DuplicateWindow,
		},
	}
}

// Buckets returns the key-value bucket configurations of the topology.
func (c TopologyConfig) Buckets() []jetstream.KeyValueConfig {
	c = c.withDefaults()
	n := c.Names
	bucket := func(name, desc string, ttl time.Duration, history uint8) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{
			Bucket: name, Description: desc, TTL: ttl, History: history,
			Storage: c.Storage, Replicas: c.Replicas,
		}
	}
	return []jetstream.KeyValueConfig{
		bucket(n.LedgerBucket(), "command id → execution state", c.LedgerTTL, 1),
		bucket(n.CorrelationBucket(), "Graph request_id → command id", c.LedgerTTL, 1),
		bucket(n.CampaignBucket(), "campaign id → progress", c.CampaignTTL, 1),
		bucket(n.ReadsBucket(), "cached query answers", c.ReadsTTL, 1),
		bucket(n.WorkersBucket(), "live worker heartbeats", c.WorkerTTL, 1),
		bucket(n.ThrottleBucket(), "phone number or scope → throttled until", time.Hour, 1),
		// Without TTL: group ids are never reused and a group never changes
		// number, so an entry is true for good (see jobs.Owners).
		bucket(n.OwnerBucket(), "group id → the phone number it belongs to", 0, 1),
	}
}

// Consumers returns the shared durable pull consumers, keyed by stream name.
func (c TopologyConfig) Consumers() map[string]jetstream.ConsumerConfig {
	c = c.withDefaults()
	n := c.Names
	return map[string]jetstream.ConsumerConfig{
		n.CommandStream(): {
			Durable:       n.CommandConsumer(),
			Description:   "every worker pulls commands from here",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			MaxDeliver:    c.MaxDeliver,
			MaxAckPending: c.MaxAckPending,
			FilterSubject: n.AllCommands(),
			Replicas:      c.Replicas,
		},
		n.WebhookStream(): {
			Durable:     n.WebhookConsumer(),
			Description: "every worker turns webhook items into events here",
			AckPolicy:   jetstream.AckExplicitPolicy,
			AckWait:     c.AckWait,
			// Without limit: Meta got its 200 and will not send the item
			// again, so the consumer must not give up on it either. An
			// item fails only while NATS (the event stream, a bucket) is
			// unavailable, and the worker backs off; one it cannot
			// decode it terminates.
			MaxDeliver:    -1,
			MaxAckPending: c.MaxAckPending,
			FilterSubject: n.AllWebhooks(),
			DeliverPolicy: jetstream.DeliverAllPolicy,
			Replicas:      c.Replicas,
		},
	}
}

// Ensure creates or updates every stream, bucket, object store and consumer
// of the topology. It is idempotent and safe to run from several processes
// at once: a concurrent creation that races with ours is retried as an update.
// A change of replicas on a running cluster is waited for: a stream being
// scaled answers no request until its new peer set has a leader, and its
// consumers cannot take the new replicas before that, so Ensure asks again
// until ctx ends.
func Ensure(ctx context.Context, js jetstream.JetStream, cfg TopologyConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("topology: %w", err)
	}
	warned := false
	for _, want := range cfg.Streams() {
		if err := retry(ctx, func(ctx context.Context) error {
			old, err := existing(ctx, js, want.Name)
			if err != nil {
				return err
			}
			if err := checkOwner(cfg.Names, old); err != nil {
				return err
			}
			if want.Name == cfg.Names.CommandStream() {
				if err := cfg.checkNotMigrating(ctx, js, old); err != nil {
					return err
				}
			}
			sc := want
			if sc.Name == cfg.Names.CommandStream() && LegacyCommandStream(old) {
				sc = cfg.keepLegacy(sc, old)
				if !warned {
					warned = true
					cfg.warnLegacy(ctx)
				}
			}
			if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
				return err
			}
			if old != nil {
				cfg.logChanges(ctx, "stream "+sc.Name, append(streamChanges(old, sc.Replicas, sc.MaxAge),
					setting{"subjects", old.Subjects, sc.Subjects}, setting{"duplicates", old.Duplicates, sc.Duplicates})...)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("topology: stream %s: %w", want.Name, err)
		}
	}
	for _, kc := range cfg.Buckets() {
		if err := cfg.ensureStore(ctx, js, "bucket "+kc.Bucket, "KV_"+kc.Bucket, kc.Replicas, kc.TTL, func(ctx context.Context) error {
			_, err := js.CreateOrUpdateKeyValue(ctx, kc)
			return err
		}); err != nil {
			return fmt.Errorf("topology: bucket %s: %w", kc.Bucket, err)
		}
	}
	oc := jetstream.ObjectStoreConfig{
		Bucket:      cfg.Names.CampaignListStore(),
		Description: "large invite lists (NDJSON) referenced by campaigns",
		TTL:         cfg.CampaignTTL,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	}
	if err := cfg.ensureStore(ctx, js, "object store "+oc.Bucket, "OBJ_"+oc.Bucket, oc.Replicas, oc.TTL, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateObjectStore(ctx, oc)
		return err
	}); err != nil {
		return fmt.Errorf("topology: object store %s: %w", oc.Bucket, err)
	}
	for stream, cc := range cfg.Consumers() {
		if err := retry(ctx, func(ctx context.Context) error {
			old := cfg.consumerBefore(ctx, js, stream, cc.Durable)
			if _, err := js.CreateOrUpdateConsumer(ctx, stream, cc); err != nil {
				return err
			}
			if old != nil {
				cfg.logChanges(ctx, "consumer "+cc.Durable+" on "+stream,
					setting{"max_ack_pending", old.MaxAckPending, cc.MaxAckPending},
					setting{"ack_wait", old.AckWait, cc.AckWait},
					setting{"max_deliver", old.MaxDeliver, cc.MaxDeliver},
					setting{"replicas", old.Replicas, cc.Replicas})
			}
			return nil
		}); err != nil {
			return fmt.Errorf("topology: consumer %s on %s: %w", cc.Durable, stream, err)
		}
	}
	return nil
}

// errMigrating is Ensure's refusal to touch the command stream while
// `groupctl migrate` recreates it.
var errMigrating = errors.New("groupctl migrate is recreating the command stream: start this process once it is done " +
	"(run it again if it was interrupted; README, Upgrades)")

// checkNotMigrating refuses the command stream, whose configuration is
// old (nil: there is none), while MigrateCommandStream recreates it: it
// is sealed while its messages are copied, then gone while they wait in
// the migration stream. Made now, it would number its messages from 1,
// not from the old stream's last sequence on as the migration makes it:
// the parked copies' subjects name sequences of the old stream, and a
// worker parking a new command at one of them would replace a parked
// copy (a schedule rolls up its subject). The migration stream is only
// looked for when the command stream is missing, for a second at most: a
// NATS user that may not read its info (deploy/nats/accounts.conf before
// it) gets no answer, and goes on as before.
func (c TopologyConfig) checkNotMigrating(ctx context.Context, js jetstream.JetStream, old *jetstream.StreamConfig) error {
	switch {
	case old != nil && old.Sealed:
		return fmt.Errorf("stream %s is sealed: %w", old.Name, errMigrating)
	case old != nil:
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.Stream(ctx, c.Names.MigrationStream()); err == nil {
		return fmt.Errorf("stream %s holds its messages: %w", c.Names.MigrationStream(), errMigrating)
	}
	return nil
}

// dueSource is the command stream's source of due parked copies: each
// comes back on the command subject its Names.Due subject names.
//
// It starts at the parked stream's first message. The parked stream is a
// work queue whose due copies leave it once stored here, so whatever it
// holds is still to come. Without a start, a source the server sets up
// with no position of its own (added to the stream, as when groupctl
// migrate recreates it, or after a process of an earlier version dropped
// it) on a stream whose first sequence is past 1 starts at the time of
// the stream's last message: copies that fell due before were passed
// over and waited in the parked stream for good.
func (n Names) dueSource() *jetstream.StreamSource {
	return &jetstream.StreamSource{
		Name:        n.ParkedStream(),
		OptStartSeq: 1,
		SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source: n.AllDue(), Destination: n.AllCommands(),
		}},
	}
}

// LegacyCommandStream reports whether cfg, a command stream's
// configuration, is one made before parked commands had a stream of their
// own: its parked copies waited in it as scheduled messages, so it allows
// message schedules and therefore roll-ups, which the server turns off for
// neither. Any NATS user that may publish commands could purge it with a
// Nats-Rollup header. MigrateCommandStream (`groupctl migrate`) recreates
// it without them.
func LegacyCommandStream(cfg *jetstream.StreamConfig) bool {
	return cfg != nil && cfg.AllowMsgSchedules
}

// keepLegacy is the command stream's configuration sc for a legacy one,
// old: still with schedules and roll-ups (the server refuses to turn them
// off) and its parked subjects, where workers park as before
// (Names.LegacyParked), and without the parked stream as a source, which
// the server refuses on a stream that schedules messages.
func (c TopologyConfig) keepLegacy(sc jetstream.StreamConfig, old *jetstream.StreamConfig) jetstream.StreamConfig {
	sc.AllowMsgSchedules, sc.AllowRollup, sc.Sources = true, true, nil
	if slices.Contains(old.Subjects, c.Names.AllLegacyParked()) {
		sc.Subjects = append(slices.Clone(sc.Subjects), c.Names.AllLegacyParked())
	}
	return sc
}

// warnLegacy says, once per Ensure, that the command stream is a legacy
// one and what to run.
func (c TopologyConfig) warnLegacy(ctx context.Context) {
	if c.Logger == nil {
		return
	}
	c.Logger.WarnContext(ctx, "the command stream allows roll-ups: any NATS user that may publish commands can purge every queued command "+
		"with a Nats-Rollup header. It was made when parked commands waited in it, and NATS will not turn roll-ups off: "+
		"workers park in it as before until, once every process runs this version, the workers are stopped and `groupctl migrate` "+
		"recreates it (README, Upgrades)",
		slog.String("stream", c.Names.CommandStream()), slog.String("run", "groupctl migrate"))
}

// consumerBefore returns the consumer's configuration for logChanges, or
// nil. It is only for the log, so it is given a second at most: a process
// whose NATS user may not read consumer info (an ingest under a
// deploy/nats/accounts.conf from before the log) gets no answer, and starts
// all the same.
func (c TopologyConfig) consumerBefore(ctx context.Context, js jetstream.JetStream, stream, durable string) *jetstream.ConsumerConfig {
	if c.Logger == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return nil
	}
	return &cons.CachedInfo().Config
}

// ensureStore runs create, which makes or updates a bucket or object store
// kept in stream, and logs the changes it made.
func (c TopologyConfig) ensureStore(ctx context.Context, js jetstream.JetStream, object, stream string, replicas int, ttl time.Duration, create func(context.Context) error) error {
	return retry(ctx, func(ctx context.Context) error {
		old, err := existing(ctx, js, stream)
		if err != nil {
			return err
		}
		if err := create(ctx); err != nil {
			return err
		}
		c.logChanges(ctx, object, streamChanges(old, replicas, ttl)...)
		return nil
	})
}

// existing returns the configuration of the stream name, or nil when there
// is none.
func existing(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &s.CachedInfo().Config, nil
}

// setting is one setting of a stream, bucket or consumer before and after
// Ensure.
type setting struct {
	name     string
	old, new any
}

// streamChanges are the replicas and age limit of a stream (or of the
// stream under a bucket) that existed already.
func streamChanges(old *jetstream.StreamConfig, replicas int, maxAge time.Duration) []setting {
	if old == nil {
		return nil
	}
	return []setting{{"replicas", old.Replicas, replicas}, {"max_age", old.MaxAge, maxAge}}
}

// logChanges logs each setting of object whose value Ensure changed.
func (c TopologyConfig) logChanges(ctx context.Context, object string, settings ...setting) {
	if c.Logger == nil {
		return
	}
	for _, s := range settings {
		if reflect.DeepEqual(s.old, s.new) {
			continue
		}
		c.Logger.WarnContext(ctx, "JetStream setting changed: each process applies its own at start-up; "+
			"if this was not meant, a process is configured unlike the others",
			slog.String("object", object), slog.String("setting", s.name),
			slog.String("from", fmt.Sprint(s.old)), slog.String("to", fmt.Sprint(s.new)))
	}
}

// checkOwner refuses a stream of another installation. Stream names are
// the prefix in upper case, so prefixes differing only in case ("acme",
// "Acme") name the same streams: an update would replace the other's
// subjects with ours and leave its commands without a stream. A stream
// with at least one subject under our prefix is ours (an older version of
// it may lack some).
func checkOwner(n Names, old *jetstream.StreamConfig) error {
	if old == nil {
		return nil
	}
	subjects := old.Subjects
	for _, subj := range subjects {
		if strings.HasPrefix(subj, n.prefix()+".") {
			return nil
		}
	}
	return fmt.Errorf("the stream holds %s, not subjects of prefix %q: it belongs to another installation "+
		"(stream names are the prefix in upper case); choose a prefix that differs from its in more than case",
		strings.Join(subjects, ", "), n.prefix())
}

// attemptTimeout bounds one request of Ensure: a request a stream being
// scaled dropped is asked again instead of holding Ensure until ctx ends.
const attemptTimeout = 5 * time.Second

// errNoAnswer is an attempt that had no answer within attemptTimeout.
var errNoAnswer = fmt.Errorf("no answer within %s (a stream changing replicas answers once its new peers have a leader)", attemptTimeout)

// retry repeats op while it lost a creation race with another process (the
// next attempt finds the object and updates it, a few times at most) or
// while a stream is being scaled (until ctx ends).
func retry(ctx context.Context, op func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := op(actx)
		cancel()
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
			err = errNoAnswer
		}
		switch {
		case err == nil:
			return nil
		case lostRace(err) && attempt < 5:
		case !scaling(err):
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(min(time.Duration(attempt)*20*time.Millisecond, time.Second)):
		}
	}
}

func lostRace(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) ||
		errors.Is(err, jetstream.ErrConsumerExists) ||
		errors.Is(err, jetstream.ErrBucketExists) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

// errConsumerReplicasExceedStream is the server's refusal of a consumer
// with more replicas than its stream's peer set has so far.
const errConsumerReplicasExceedStream jetstream.ErrorCode = 10126

// scaling reports whether err says a stream is between two peer sets.
func scaling(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, errNoAnswer) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == errConsumerReplicasExceedStream
}
