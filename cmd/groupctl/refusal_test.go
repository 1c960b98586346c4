package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestRefusalsEndTheRequestWaitingForTheRefusedSubject(t *testing.T) {
	t.Parallel()
	violation := func(subject string) error {
		return fmt.Errorf("%w: Permissions Violation for Publish to %q", nats.ErrPermissionViolation, subject)
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"The stream's INFO", violation("$JS.API.STREAM.INFO.KV_groups_ledger"), true},
		{"A direct get from the stream", violation("$JS.API.DIRECT.GET.KV_groups_ledger.$KV.groups_ledger.c_x"), true},
		{"Another stream whose name starts alike", violation("$JS.API.STREAM.INFO.KV_groups_ledger2"), false},
		{"Another stream", violation("$JS.API.STREAM.INFO.KV_groups_reads"), false},
		{"An error that is no refusal", errors.New(`nats: slow consumer on "KV_groups_ledger"`), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r refusals
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			stop := r.onStream("KV_groups_ledger", cancel)
			defer stop()
			r.handle(nil, nil, tc.err)
			if got := ctx.Err() != nil; got != tc.want {
				t.Errorf("request ended: %v, want %v, for %v", got, tc.want, tc.err)
			}
		})
	}
}
