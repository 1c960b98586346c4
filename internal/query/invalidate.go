package query

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/jobs"
)

// ErrCacheOff is returned by the Service's Invalidate methods when the
// cache is off or the service is not started.
var ErrCacheOff = errors.New("query: cache not running")

// Invalidator makes cached answers stale, on every worker, without a
// running Service: the worker calls it before it publishes an event that
// announces a change (jobs.Config.Reads), so whoever receives the event
// never reads an answer older than it, whether or not a query service is
// running at that moment.
type Invalidator struct {
	c *cache
}

var _ jobs.ReadCache = (*Invalidator)(nil)

// NewInvalidator invalidates in the reads bucket kv (Names.ReadsBucket,
// made by events.Ensure). It makes no call.
func NewInvalidator(kv jetstream.KeyValue) *Invalidator {
	return &Invalidator{c: &cache{kv: kv}}
}

// InvalidateGroup makes every cached answer about groupID (group_info,
// list_join_requests, invite_link) stale, whatever number it was asked
// through: one write to the reads bucket.
func (i *Invalidator) InvalidateGroup(ctx context.Context, phone, groupID string) error {
	if groupID == "" {
		return errors.New("query: invalidate: empty group id")
	}
	return i.c.invalidate(ctx, scope{phone, groupID})
}

// InvalidateNumber makes the cached list_groups answers of phone stale:
// one write to the reads bucket. A phone number id that is not numeric
// has nothing cached (queries refuse it), so there is nothing to do.
func (i *Invalidator) InvalidateNumber(ctx context.Context, phone string) error {
	if !validPhone(phone) {
		return nil
	}
	return i.c.invalidate(ctx, scope{phone: phone})
}

// InvalidateGroup is Invalidator.InvalidateGroup on the service's bucket.
func (s *Service) InvalidateGroup(ctx context.Context, phone, groupID string) error {
	inv, err := s.invalidator(phone)
	if err != nil {
		return err
	}
	return inv.InvalidateGroup(ctx, phone, groupID)
}

// InvalidateNumber is Invalidator.InvalidateNumber on the service's bucket.
func (s *Service) InvalidateNumber(ctx context.Context, phone string) error {
	inv, err := s.invalidator(phone)
	if err != nil {
		return err
	}
	return inv.InvalidateNumber(ctx, phone)
}

func (s *Service) invalidator(phone string) (*Invalidator, error) {
	if !validPhone(phone) {
		return nil, errors.New("query: invalidate: phone number id must be numeric")
	}
	s.mu.Lock()
	c := s.cache
	s.mu.Unlock()
	if c == nil {
		return nil, ErrCacheOff
	}
	return &Invalidator{c: c}, nil
}
