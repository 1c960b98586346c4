package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	e.Check(ValidInboxPrefix(n.InboxPrefix), "NATS_INBOX_PREFIX", "want a subject prefix such as _INBOX_worker (no wildcards, spaces or empty tokens), got %q", n.InboxPrefix)
	e.Check((n.TLSCert == "") == (n.TLSKey == ""), "NATS_TLS_CERT", "NATS_TLS_CERT and NATS_TLS_KEY go together")
	e.Check(n.User == "" || n.Password != "", "NATS_PASSWORD", "required with NATS_USER")
	return n
}

// Connect connects with the configured credentials and reconnects forever:
// a broker outage delays work, it never ends the process.
func (n NATS) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
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
		u, err := url.Parse(strings.TrimSpace(p))
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
