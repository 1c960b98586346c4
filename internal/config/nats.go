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
}

// LoadNATS reads the NATS_* and GROUPFLOW_PREFIX variables.
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
	}
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
	nc, err := nats.Connect(n.URL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", RedactURL(n.URL), err)
	}
	return nc, nil
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
