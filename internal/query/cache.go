package query

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// cache keeps answers in the reads bucket. Keys (KV keys allow
// [-/_=.A-Za-z0-9], so anything else is hashed):
//
//	gen.<phone>.group.<h(group id)>   a group's generation marker
//	gen.<phone>.list                  the number's group-list marker
//	ans.<phone>.<endpoint>.<h(args)>  an answer: 8-byte marker revision + reply
//
// An answer is good while its marker still has the revision recorded in it
// (see doc.go) and it is younger than ttl. Markers expire with the bucket's
// TTL like everything else; a marker that comes back is a new revision, so
// the answers of the old one are never served again.
type cache struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

// scope is what an answer depends on: a group, or (group "") the number's
// group list.
type scope struct {
	phone, group string
}

// markerKey is the scope's generation marker. A group's marker does not
// name a number: Graph's group reads do not depend on the number a query
// came in on, and events invalidate under the group's own number (the only
// one a group is answered for: Service.owned).
func (s scope) markerKey() string {
	if s.group == "" {
		return "gen." + s.phone + ".list"
	}
	return "gen.group." + digest(s.group)
}

func answerKey(phone, endpoint string, parts ...string) string {
	return "ans." + phone + "." + endpoint + "." + digest(parts...)
}

// digest is a 128-bit hex hash of parts, length-prefixed so that no two
// different lists of parts collide by concatenation.
func digest(parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// generation returns the current revision of sc's marker, creating the
// marker when there is none, so that every answer records a revision that
// a later invalidation changes.
func (c *cache) generation(ctx context.Context, sc scope) (uint64, error) {
	key := sc.markerKey()
	for range 3 {
		e, err := c.kv.Get(ctx, key)
		if err == nil {
			return e.Revision(), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, fmt.Errorf("read cache marker: %w", err)
		}
		rev, err := c.kv.Create(ctx, key, nil)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("create cache marker: %w", err)
		}
		// Another worker created it first: read theirs.
	}
	return 0, errors.New("create cache marker: lost three races")
}

// get returns the answer stored under key if it was made under generation
// gen and is younger than the TTL.
func (c *cache) get(ctx context.Context, key string, gen uint64) ([]byte, bool, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read cached answer: %w", err)
	}
	v := e.Value()
	if len(v) < 8 || binary.BigEndian.Uint64(v) != gen || c.now().Sub(e.Created()) >= c.ttl {
		return nil, false, nil
	}
	return v[8:], true, nil
}

func (c *cache) put(ctx context.Context, key string, gen uint64, body []byte) error {
	v := make([]byte, 8+len(body))
	binary.BigEndian.PutUint64(v, gen)
	copy(v[8:], body)
	if _, err := c.kv.Put(ctx, key, v); err != nil {
		return fmt.Errorf("store answer: %w", err)
	}
	return nil
}

// invalidate gives sc's marker a new revision: every answer cached for it
// is stale from now on, on every worker.
func (c *cache) invalidate(ctx context.Context, sc scope) error {
	if _, err := c.kv.Put(ctx, sc.markerKey(), nil); err != nil {
		return fmt.Errorf("invalidate %s: %w", sc.markerKey(), err)
	}
	return nil
}
