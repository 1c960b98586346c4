package sim

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Clock tells the simulator the time. Timestamps in answers and webhooks and
// the rate limits read it; webhook delays use real timers.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config configures a Server. The zero value is usable: every field has a
// default.
type Config struct {
	// AccessToken is the bearer token every Graph call must carry (header
	// "Authorization: Bearer …" or the access_token query parameter); a
	// missing or different token is answered with code 190, HTTP 401.
	// Defaults to "dev-token".
	AccessToken string
	// AppSecret is the key of the X-Hub-Signature-256 HMAC on webhooks.
	// Defaults to "dev-secret".
	AppSecret string
	// WebhookURL receives the webhooks (POST, Meta's envelope). Empty:
	// webhooks are recorded (Webhooks) but sent nowhere. SetWebhookURL
	// changes it at run time.
	WebhookURL string
	// WABAID is the WhatsApp Business Account every phone number belongs to:
	// the entry id of webhooks and the only node /message_templates accepts.
	// Defaults to "100000000000001".
	WABAID string
	// Accounts puts numbers in WhatsApp Business Accounts other than
	// WABAID (phone number id → WABA id), and makes GET
	// /{WABA_ID}/phone_numbers list a number before it is used: a number
	// not named here belongs to WABAID and is listed once used. Only
	// WABAID has templates. Defaults to none.
	Accounts map[string]string
	// Seed makes ids, fault draws and status behaviour reproducible: the
	// same seed and the same sequence of calls give the same answers.
	// Defaults to 1.
	Seed int64
	// WebhookDelay is the time between an operation and its webhook; status
	// webhooks of a message follow in further steps of WebhookDelay.
	// Defaults to 200ms. Tests use a few milliseconds.
	WebhookDelay time.Duration
	// MPS is the message throughput per phone number (messages/s, burst of
	// the same size); above it sends fail with 130429 (HTTP 429).
	// Defaults to 80. Negative disables the limit.
	MPS int
	// PairInterval is the minimum time between two 1:1 messages from one
	// number to the same user; closer sends fail with 131056.
	// Defaults to 6s. Negative disables the limit.
	PairInterval time.Duration
	// GroupOpsPerSecond limits group-management operations (create, delete,
	// settings, reset/delete link, approve, reject, remove) per phone number
	// and second (burst of the same size); above it they fail with 131208.
	// Defaults to 50. Negative disables the limit.
	GroupOpsPerSecond int
	// MaxGroupsPerNumber is how many active groups one number may own;
	// creating one more fails with 131211. Defaults to 10,000 (Meta's limit).
	MaxGroupsPerNumber int
	// MaxParticipants is how many participants a group may have, the
	// business excluded; an approval or a join past it fails with 131204.
	// Defaults to 8 (Meta's limit); tests raise it to approve thousands of
	// join requests into one group. A removal still names at most
	// MaxParticipants (8) participants, as Meta's does.
	MaxParticipants int
	// BSUID adds business-scoped user ids (user_id, parent_user_id,
	// username) to participants, join requests, webhooks and statuses, as
	// after Meta's BSUID rollout. Defaults to false.
	BSUID bool
	// Statuses shapes the delivered/read statuses of sent messages.
	// Defaults to DefaultStatusBehavior.
	Statuses *StatusBehavior
	// Faults is the fault injection in force at start; SetFaults and
	// POST /_sim/faults change it at run time. Defaults to none.
	Faults Faults
	// WebhookMaxAttempts bounds deliveries of one webhook answered with a
	// status other than 200. Defaults to 8.
	WebhookMaxAttempts int
	// WebhookRetryBackoff is the wait before the first re-delivery; it
	// doubles (with jitter) up to WebhookRetryMaxBackoff. Defaults to 50ms.
	WebhookRetryBackoff time.Duration
	// WebhookRetryMaxBackoff caps the wait between re-deliveries.
	// Defaults to 5s.
	WebhookRetryMaxBackoff time.Duration
	// WebhookConcurrency is how many webhook POSTs may be in flight at once.
	// Defaults to 4.
	WebhookConcurrency int
	// WebhookLogSize is how many webhooks Webhooks() remembers.
	// Defaults to 10,000.
	WebhookLogSize int
	// CallLogSize is how many Graph calls Calls() remembers; older ones are
	// dropped. Defaults to 200,000.
	CallLogSize int
	// HTTPClient posts the webhooks. Defaults to a client with a 10s timeout.
	HTTPClient *http.Client
	// Logger receives delivery failures and lifecycle messages (never
	// secrets). Defaults to discarding.
	Logger *slog.Logger
	// Clock is the time source. Defaults to the system clock.
	Clock Clock
}

// StatusBehavior shapes the statuses that follow a send. Each probability is
// drawn per participant (per recipient for 1:1 messages) from the seeded
// generator.
type StatusBehavior struct {
	// Read is the probability that a recipient reads the message.
	Read float64 `json:"read"`
	// ReadWithoutDelivered is the probability that a reader's delivered
	// status is never sent (read almost at once).
	ReadWithoutDelivered float64 `json:"read_without_delivered"`
	// Aggregate is the probability that the delivered (or read) statuses of
	// one group message come in one webhook rather than one per participant.
	Aggregate float64 `json:"aggregate"`
}

// DefaultStatusBehavior is used when Config.Statuses is nil.
var DefaultStatusBehavior = StatusBehavior{Read: 0.8, ReadWithoutDelivered: 0.1, Aggregate: 0.5}

// Defaults.
const (
	DefaultAccessToken  = "dev-token"
	DefaultAppSecret    = "dev-secret"
	DefaultWABAID       = "100000000000001"
	DefaultWebhookDelay = 200 * time.Millisecond
	DefaultMPS          = 80
	DefaultPairInterval = 6 * time.Second
	DefaultGroupOps     = 50
	MaxGroupsPerNumber  = 10000
	// MaxParticipants is Meta's participant limit (the business excluded).
	MaxParticipants = 8
)

func (c Config) withDefaults() Config {
	c.AccessToken = cmp.Or(c.AccessToken, DefaultAccessToken)
	c.AppSecret = cmp.Or(c.AppSecret, DefaultAppSecret)
	c.WABAID = cmp.Or(c.WABAID, DefaultWABAID)
	c.Seed = cmp.Or(c.Seed, 1)
	c.WebhookDelay = cmp.Or(c.WebhookDelay, DefaultWebhookDelay)
	c.MPS = cmp.Or(c.MPS, DefaultMPS)
	c.PairInterval = cmp.Or(c.PairInterval, DefaultPairInterval)
	c.GroupOpsPerSecond = cmp.Or(c.GroupOpsPerSecond, DefaultGroupOps)
	c.MaxGroupsPerNumber = cmp.Or(c.MaxGroupsPerNumber, MaxGroupsPerNumber)
	c.MaxParticipants = cmp.Or(c.MaxParticipants, MaxParticipants)
	if c.Statuses == nil {
		sb := DefaultStatusBehavior
		c.Statuses = &sb
	}
	c.WebhookMaxAttempts = cmp.Or(c.WebhookMaxAttempts, 8)
	c.WebhookRetryBackoff = cmp.Or(c.WebhookRetryBackoff, 50*time.Millisecond)
	c.WebhookRetryMaxBackoff = cmp.Or(c.WebhookRetryMaxBackoff, 5*time.Second)
	c.WebhookConcurrency = cmp.Or(c.WebhookConcurrency, 4)
	c.WebhookLogSize = cmp.Or(c.WebhookLogSize, 10000)
	c.CallLogSize = cmp.Or(c.CallLogSize, 200000)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.WebhookDelay < 0 {
		errs = append(errs, errors.New("WebhookDelay must not be negative"))
	}
	if c.MaxGroupsPerNumber < 0 {
		errs = append(errs, errors.New("MaxGroupsPerNumber must not be negative"))
	}
	if c.MaxParticipants < 0 {
		errs = append(errs, errors.New("MaxParticipants must not be negative"))
	}
	if c.WebhookMaxAttempts < 1 || c.WebhookConcurrency < 1 || c.WebhookLogSize < 1 || c.CallLogSize < 1 {
		errs = append(errs, errors.New("webhook attempts, concurrency and log sizes must be positive"))
	}
	for _, p := range []float64{c.Statuses.Read, c.Statuses.ReadWithoutDelivered, c.Statuses.Aggregate} {
		if p < 0 || p > 1 {
			errs = append(errs, errors.New("status probabilities must be within [0, 1]"))
			break
		}
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
