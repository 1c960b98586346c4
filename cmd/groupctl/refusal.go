package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// refusals hears the NATS server refuse what groupctl's user may not do. A
// request the user may not publish (the caller of deploy/nats/accounts.conf
// opening the ledger) gets no reply, only a permissions violation on the
// connection: without this, the request would wait out --timeout.
type refusals struct {
	mu    sync.Mutex
	next  int
	waits map[int]refusalWait
}

type refusalWait struct {
	match func(subject string) bool
	then  func()
}

// on calls then when the server refuses a subject match accepts, and
// keeps that refusal off stderr: the one waiting for it says what could
// not be done, if anything. stop forgets it.
func (r *refusals) on(match func(subject string) bool, then func()) (stop func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waits == nil {
		r.waits = map[int]refusalWait{}
	}
	id := r.next
	r.next++
	r.waits[id] = refusalWait{match: match, then: then}
	return func() {
		r.mu.Lock()
		delete(r.waits, id)
		r.mu.Unlock()
	}
}

// onStream is on for every API subject naming the stream (its INFO, its
// DIRECT.GET, …).
func (r *refusals) onStream(stream string, then func()) (stop func()) {
	return r.on(func(subject string) bool { return slices.Contains(strings.Split(subject, "."), stream) }, then)
}

// handle is the connection's error handler. A refusal someone waits for
// goes to them; every other error is printed, as nats.go's own handler
// does.
func (r *refusals) handle(_ *nats.Conn, sub *nats.Subscription, err error) {
	if subject, ok := refusedSubject(err); ok {
		r.mu.Lock()
		var thens []func()
		for _, w := range r.waits {
			if w.match(subject) {
				thens = append(thens, w.then)
			}
		}
		r.mu.Unlock()
		for _, then := range thens {
			then()
		}
		if len(thens) > 0 {
			return
		}
	}
	if sub != nil {
		fmt.Fprintf(os.Stderr, "%v for subscription on %q\n", err, sub.Subject)
		return
	}
	fmt.Fprintf(os.Stderr, "%v\n", err)
}

// refusedSubject is the subject of a permissions violation, which the
// server quotes: `Permissions Violation for Publish to "<subject>"`.
func refusedSubject(err error) (string, bool) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return "", false
	}
	_, rest, ok := strings.Cut(err.Error(), `"`)
	if !ok {
		return "", false
	}
	subject, _, ok := strings.Cut(rest, `"`)
	return subject, ok
}
