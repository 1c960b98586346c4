package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/graph"
)

// Owners knows which business phone number each group belongs to, over the
// groups_owners KV bucket (events.Names.OwnerBucket) and an in-process
// cache.
//
// Graph's group operations (GET, POST, DELETE /{GROUP_ID}/…) name only the
// group, and every number of a deployment shares the worker's access
// token: Graph would act on any group of any of them. A command names the
// number it acts for, and may be submitted by a caller limited to that
// number; it is carried out on a group only when the group is that
// number's (Check).
//
// What groupflow sees costs no Graph call: every group webhook item comes
// under its group's own number (metadata.phone_number_id), a group created
// through groupflow among them, and Learn records it. A group nobody has
// recorded (created elsewhere, its webhook not processed yet) is looked up
// in the number's group list, GET /{PHONE_NUMBER_ID}/groups, every page,
// and each group listed is recorded. Group ids are never reused and a
// group never changes number, so an entry is true for good: the bucket has
// no TTL and the cache is never invalidated. A group that is not listed is
// not remembered as anyone's: listing is the truth, and a group created a
// moment later is found by the next listing.
type Owners struct {
	kv jetstream.KeyValue

	mu    sync.RWMutex
	cache map[string]string // group id → phone number id; at most maxCachedOwners
	// lists holds the numbers whose groups this process is listing; a
	// check that needs the same list waits for it and then finds the
	// groups in the cache.
	lists map[string]chan struct{}
}

// maxCachedOwners bounds the cache: about 100 bytes an entry. Past it, an
// arbitrary entry makes room, to be read from the bucket again if needed.
const maxCachedOwners = 100_000

// maxGroupPages bounds one listing: Meta allows 10,000 active groups a
// number, 10 pages of groupPageSize. A listing that goes on is a fault
// (a cursor that leads back), not a number's groups.
const maxGroupPages = 100

// groupPageSize is the largest page Graph lists.
const groupPageSize = 1024

// ErrGroupNotOwned is the error (matched with errors.Is) of a group that is
// not one of the phone number's groups.
var ErrGroupNotOwned = errors.New("group is not one of the phone number's groups")

// NotOwnedError names the groups of a check that are not the number's.
// It says nothing of whose they are: the caller may be another business.
type NotOwnedError struct {
	Phone  string
	Groups []string
}

func (e *NotOwnedError) Error() string {
	if len(e.Groups) == 1 {
		return fmt.Sprintf("group %s is not one of phone number %s's groups", e.Groups[0], e.Phone)
	}
	shown := e.Groups[:min(len(e.Groups), 3)]
	more := ""
	if n := len(e.Groups) - len(shown); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("groups %s%s are not phone number %s's groups", strings.Join(shown, ", "), more, e.Phone)
}

// Is makes errors.Is(err, ErrGroupNotOwned) true.
func (e *NotOwnedError) Is(target error) bool { return target == ErrGroupNotOwned }

// GroupLister fetches one page of a number's groups (graph.Client's
// ListGroups), taking the number's rate-limit token for its call.
type GroupLister func(ctx context.Context, opts graph.PageOptions) (graph.GroupsPage, error)

// NewOwners returns the owner records over kv (the bucket named by
// events.Names.OwnerBucket).
func NewOwners(kv jetstream.KeyValue) *Owners {
	return &Owners{kv: kv, cache: map[string]string{}, lists: map[string]chan struct{}{}}
}

func ownerKey(groupID string) string { return escapeKey(groupID) }

// Learn records that groupID belongs to phone, unless this process knows
// it already: a webhook item, a create completed, a group found.
func (o *Owners) Learn(ctx context.Context, groupID, phone string) error {
	if groupID == "" || phone == "" || o.cached(groupID) == phone {
		return nil
	}
	if err := o.store(ctx, groupID, phone); err != nil {
		return err
	}
	o.remember(phone, groupID)
	return nil
}

// Owner returns the number groupID belongs to, or "" when neither the
// cache nor the bucket knows.
func (o *Owners) Owner(ctx context.Context, groupID string) (string, error) {
	if p := o.cached(groupID); p != "" {
		return p, nil
	}
	e, err := o.kv.Get(ctx, ownerKey(groupID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("owners: read the owner of group %s: %w", groupID, err)
	}
	p := string(e.Value())
	o.remember(p, groupID)
	return p, nil
}

// Check returns nil when every group of groups belongs to phone, and a
// *NotOwnedError (ErrGroupNotOwned) naming those that do not: recorded as
// another number's, or not in phone's group list. The list is fetched, at
// most once, only when some group is known nowhere; any other error (the
// bucket, the listing) says nothing of the groups and is worth a retry.
func (o *Owners) Check(ctx context.Context, phone string, groups []string, list GroupLister) error {
	var notOwned, unknown []string
	for _, g := range groups {
		p, err := o.Owner(ctx, g)
		switch {
		case err != nil:
			return err
		case p == "":
			unknown = append(unknown, g)
		case p != phone:
			notOwned = append(notOwned, g)
		}
	}
	if len(unknown) > 0 && len(notOwned) == 0 {
		var err error
		if unknown, err = o.lookUp(ctx, phone, unknown, list); err != nil {
			return err
		}
		notOwned = unknown
	}
	if len(notOwned) > 0 {
		return &NotOwnedError{Phone: phone, Groups: notOwned}
	}
	return nil
}

// lookUp lists phone's groups, records them all, and returns those of
// groups that are not among them. One listing per number runs at a time in
// a process: a lookup that waited for another finds what it listed in the
// cache.
func (o *Owners) lookUp(ctx context.Context, phone string, groups []string, list GroupLister) ([]string, error) {
	release, err := o.listing(ctx, phone)
	if err != nil {
		return nil, err
	}
	defer release()
	groups = slices.DeleteFunc(groups, func(g string) bool { return o.cached(g) == phone })
	if len(groups) == 0 {
		return nil, nil
	}
	listed, err := listAll(ctx, list)
	if err != nil {
		return nil, fmt.Errorf("owners: list the groups of phone number %s: %w", phone, err)
	}
	in := make(map[string]bool, len(listed))
	for _, g := range listed {
		in[g] = true
	}
	// The groups asked about first: the check needs them recorded.
	var missing []string
	for _, g := range groups {
		if !in[g] {
			missing = append(missing, g)
			continue
		}
		if err := o.Learn(ctx, g, phone); err != nil {
			return nil, err
		}
	}
	o.learnAll(ctx, phone, listed)
	return missing, nil
}

// learnAll records groups as phone's, best effort: each saves a later
// check, here or in another worker, a listing. The first listing of a
// number with thousands of groups writes thousands of entries, a few at a
// time.
func (o *Owners) learnAll(ctx context.Context, phone string, groups []string) {
	todo := make(chan string)
	var wg sync.WaitGroup
	for range learnWriters {
		wg.Go(func() {
			for g := range todo {
				_ = o.Learn(ctx, g, phone) // a later check reads or lists again
			}
		})
	}
	for _, g := range groups {
		if o.cached(g) != phone {
			todo <- g
		}
	}
	close(todo)
	wg.Wait()
}

// learnWriters is how many entries learnAll writes at once.
const learnWriters = 8

// listAll fetches every page of a number's group list. A cursor Graph no
// longer takes (131059: the list changed meanwhile) starts it again from
// the first page, a few times.
func listAll(ctx context.Context, list GroupLister) ([]string, error) {
	var all []string
	after, restarts := "", 0
	for pages := 0; ; pages++ {
		if pages == maxGroupPages {
			return nil, fmt.Errorf("more than %d pages", maxGroupPages)
		}
		page, err := list(ctx, graph.PageOptions{Limit: groupPageSize, After: after})
		if err != nil {
			if after != "" && restarts < 3 && codeOf(err) == graph.CodeInvalidCursor {
				all, after, restarts = all[:0], "", restarts+1
				continue
			}
			return nil, err
		}
		for _, g := range page.Groups {
			all = append(all, g.ID)
		}
		if !page.HasNext || page.After == "" {
			return all, nil
		}
		after = page.After
	}
}

// listing waits until no other listing of phone runs in this process and
// holds the number until release is called.
func (o *Owners) listing(ctx context.Context, phone string) (release func(), err error) {
	for {
		o.mu.Lock()
		busy, ok := o.lists[phone]
		if !ok {
			done := make(chan struct{})
			o.lists[phone] = done
			o.mu.Unlock()
			return func() {
				o.mu.Lock()
				delete(o.lists, phone)
				o.mu.Unlock()
				close(done)
			}, nil
		}
		o.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// store records groupID's number in the bucket. An entry there already is
// the same number (a group never changes number): another worker was first.
func (o *Owners) store(ctx context.Context, groupID, phone string) error {
	_, err := o.kv.Create(ctx, ownerKey(groupID), []byte(phone))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("owners: record the owner of group %s: %w", groupID, err)
	}
	return nil
}

func (o *Owners) cached(groupID string) string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.cache[groupID]
}

func (o *Owners) remember(phone string, groups ...string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, g := range groups {
		if _, ok := o.cache[g]; !ok && len(o.cache) >= maxCachedOwners {
			for k := range o.cache {
				delete(o.cache, k)
				break
			}
		}
		o.cache[g] = phone
	}
}
