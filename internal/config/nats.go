package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/groupflow/groupflow/internal/events"
)

// NATS holds how a groupflow process connects to NATS.
type NATS struct {
	URL      string
	Creds    string // path of a .creds file
	NKey     string // path of an nkey seed file
	User     string
	Password string
	TLSCert  string
	TLSKey   string
	TLSCA    string
	Prefix   string
	Replicas int
	// MaxAckPending is the shared consumers' limit of unacknowledged
	// messages, across all workers.
	MaxAckPending int
	// InboxPrefix replaces nats.go's "_INBOX" in every reply subject the
	// connection makes up (requests, publish acks, pull and ordered
	// consumers), so a user may be allowed to subscribe to its own replies
	// only. Empty keeps "_INBOX".
	InboxPrefix string
}

// LoadNATS reads the NATS_* variables, GROUPFLOW_PREFIX and
// GROUPFLOW_MAX_ACK_PENDING.
func LoadNATS(e *Env) NATS {
	n := NATS{
		URL:      e.String("NATS_URL", nats.DefaultURL, "NATS server URL(s), comma separated"),
		Creds:    e.String("NATS_CREDS", "", "path of a NATS .creds file"),
		NKey:     e.String("NATS_NKEY", "", "path of a NATS nkey seed file"),
		User:     e.String("NATS_USER", "", "NATS user name"),
		Password: e.Secret("NATS_PASSWORD", "NATS password"),
		TLSCert:  e.String("NATS_TLS_CERT", "", "client certificate for NATS TLS"),
		TLSKey:   e.String("NATS_TLS_KEY", "", "client key for NATS TLS"),
		TLSCA:    e.String("NATS_TLS_CA", "", "CA bundle to verify the NATS server"),
		Prefix:   e.String("GROUPFLOW_PREFIX", "groups", "prefix of every subject, stream and bucket"),
		Replicas: e.Int("NATS_REPLICAS", 1, 1, "replicas of streams and buckets (3 in production)"),
		MaxAckPending: e.Int("GROUPFLOW_MAX_ACK_PENDING", 1024, 1,
			"unacknowledged messages the shared command and webhook consumers hand out across all workers: at least the sum of every worker's WORKER_CONCURRENCY; set it alike in every process"),
		InboxPrefix: e.String("NATS_INBOX_PREFIX", "",
			"prefix of reply subjects instead of _INBOX, the one the NATS user may subscribe to (_INBOX_ingest, _INBOX_worker: deploy/nats/accounts.conf)"),
	}
	if err := checkURLs(n.URL); err != nil {
		e.fail("NATS_URL", "%v", err)
	}
	e.Check(n.Replicas <= events.MaxReplicas, "NATS_REPLICAS", "want 1 to %d (JetStream keeps at most %[1]d replicas), got %d", events.MaxReplicas, n.Replicas)
	e.Check(events.ValidPrefix(n.Prefix), "GROUPFLOW_PREFIX", "want ASCII letters, digits, - and _ (it names subjects, streams and buckets), got %q", n.Prefix)
	e.Check(ValidInboxPrefix(n.InboxPrefix), "NATS_INBOX_PREFIX", "want a subject prefix such as _INBOX_worker (no wildcards, spaces or empty tokens), got %q", n.InboxPrefix)
	e.Check((n.TLSCert == "") == (n.TLSKey == ""), "NATS_TLS_CERT", "NATS_TLS_CERT and NATS_TLS_KEY go together")
	e.Check(n.User == "" || n.Password != "", "NATS_PASSWORD", "required with NATS_USER")
	return n
}

// checkURLs says what is wrong with a comma-separated list of NATS URLs,
// naming each entry with its credentials hidden. nats.go would take
// "http://…" for a NATS server, and retry it forever in silence. An entry
// without a scheme is a host (and port) as nats.go takes it, nats://; an
// unreachable one is reported by LogAttempts.
func checkURLs(urls string) error {
	const want = "want nats://, tls://, ws:// or wss:// URLs (or host:port), comma separated"
	var ws, plain bool
	for i, raw := range splitList(urls) {
		raw = withScheme(raw)
		u, err := url.Parse(raw)
		if err != nil {
			var ue *url.Error
			if strings.Contains(raw, "@") || !errors.As(err, &ue) {
				return fmt.Errorf("%s; entry %d is not a URL", want, i+1) // the error could quote a credential
			}
			return fmt.Errorf("%s; entry %d is not a URL: %w", want, i+1, ue.Err)
		}
		switch u.Scheme {
		case "nats", "tls":
			plain = true
		case "ws", "wss":
			ws = true
		default:
			return fmt.Errorf("%s; %q has scheme %s", want, RedactURL(raw), u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("%s; %q has no host", want, RedactURL(raw))
		}
	}
	if ws && plain {
		return errors.New("ws:// and wss:// URLs cannot be mixed with nats:// and tls:// ones (nats.go refuses the mix)")
	}
	return nil
}

// Connect connects with the configured credentials and reconnects forever:
// a broker outage delays work, it never ends the process. A refused
// password, token or credential is tried again too (nats.go would give up
// after the same refusal twice and leave the process connected to
// nothing): a user provisioned late or a secret rotated on the server
// first is taken as soon as the server and the client agree, and
// LogAttempts says why until then.
func (n NATS) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.IgnoreAuthErrorAbort(),
	}
	if n.Creds != "" {
		opts = append(opts, nats.UserCredentials(n.Creds))
	}
	if n.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(n.NKey)
		if err != nil {
			return nil, fmt.Errorf("load NATS_NKEY: %w", err)
		}
		opts = append(opts, o)
	}
	if n.User != "" {
		opts = append(opts, nats.UserInfo(n.User, n.Password))
	}
	if n.TLSCert != "" {
		opts = append(opts, nats.ClientCert(n.TLSCert, n.TLSKey))
	}
	if n.TLSCA != "" {
		opts = append(opts, nats.RootCAs(n.TLSCA))
	}
	if n.InboxPrefix != "" {
		if !ValidInboxPrefix(n.InboxPrefix) {
			return nil, fmt.Errorf("NATS inbox prefix %q: not a subject prefix", n.InboxPrefix)
		}
		opts = append(opts, nats.CustomInboxPrefix(n.InboxPrefix))
	}
	nc, err := nats.Connect(n.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", RedactURL(n.URL), err)
	}
	return nc, nil
}

// connectLogEvery is how often a connection that keeps failing for the same
// reason is logged again: nats.go tries about four times a second.
const connectLogEvery = 10 * time.Second

// LogAttempts is an option for Connect that logs, through log, why the
// connection to NATS cannot be made, so that an unreachable or wrong
// NATS_URL is not waited on in silence: the first failed attempt at once,
// then one line per changed reason or every 10 s, with the count of failed
// attempts; and a line when the connection is finally made. It covers the
// first connection (nats.go reports its failures to ReconnectErrHandler
// when RetryOnFailedConnect is set, as Connect sets it) and every
// reconnection. It sets nats.go's ConnectHandler and ReconnectErrHandler.
func (n NATS) LogAttempts(log *slog.Logger) nats.Option {
	a := &attempts{log: log, url: RedactURL(n.URL), secrets: n.secrets(), every: connectLogEvery, now: time.Now}
	return func(o *nats.Options) error {
		o.ReconnectErrCB = func(_ *nats.Conn, err error) { a.failed(err) }
		o.ConnectedCB = func(*nats.Conn) { a.connected() }
		return nil
	}
}

// secrets lists what must never be logged: the password option and the
// credentials in the URLs.
func (n NATS) secrets() []string {
	var out []string
	if n.Password != "" {
		out = append(out, n.Password)
	}
	for _, raw := range splitList(n.URL) {
		u, err := parseNATSURL(raw)
		if err != nil || u.User == nil {
			continue
		}
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		} else if t := u.User.Username(); t != "" {
			out = append(out, t) // a bare token
		}
	}
	return out
}

// attempts keeps LogAttempts's count between nats.go's callbacks.
type attempts struct {
	log     *slog.Logger
	url     string // redacted
	secrets []string
	every   time.Duration
	now     func() time.Time

	mu       sync.Mutex
	failures int // since the last line
	total    int // since the last connection
	reason   string
	logged   time.Time
}

func (a *attempts) failed(err error) {
	// nats.go's first report when every server refused the connection; the
	// next attempt, a quarter of a second later, says why.
	if err == nil || errors.Is(err, nats.ErrNoServers) {
		return
	}
	reason := err.Error()
	for _, s := range a.secrets {
		reason = strings.ReplaceAll(reason, s, "xxxxx")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures++
	a.total++
	now := a.now()
	if reason == a.reason && now.Sub(a.logged) < a.every {
		return
	}
	a.log.Warn("cannot connect to NATS", slog.String("nats", a.url), slog.String("error", reason),
		slog.Int("failed_attempts", a.failures))
	a.reason, a.logged, a.failures = reason, now, 0
}

func (a *attempts) connected() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log.Info("connected to NATS", slog.String("nats", a.url), slog.Int("failed_attempts", a.total))
	a.failures, a.total, a.reason = 0, 0, ""
}

// ValidInboxPrefix reports whether p can start reply subjects: empty (the
// default _INBOX), or dot-separated tokens without wildcards or white space
// and no empty token (so no leading, trailing or double dot).
func ValidInboxPrefix(p string) bool {
	if p == "" {
		return true
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}

// RedactURL hides passwords and tokens in a comma-separated list of URLs
// (nats://user:secret@host → nats://user:xxxxx@host).
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := parseNATSURL(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "(unparsable URL)"
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx") // a bare token
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// withScheme gives a NATS URL entry without a scheme the one nats.go
// assumes: "alice:pw@nats:4222" is nats://alice:pw@nats:4222, where
// url.Parse alone would take "alice" for the scheme and miss the password.
func withScheme(raw string) string {
	if raw != "" && !strings.Contains(raw, "://") {
		return "nats://" + raw
	}
	return raw
}

func parseNATSURL(raw string) (*url.URL, error) { return url.Parse(withScheme(raw)) }
