package ratelimit_test

import (
	"fmt"
	"testing"

	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

func TestAccountsAreConfiguredOrLearnt(t *testing.T) {
	a := ratelimit.NewAccounts(map[string]string{"1001": "waba-a"})
	if got := a.Of("1001"); got != "waba-a" {
		t.Fatalf("configured number: %q, want waba-a", got)
	}
	if got := a.Of("1002"); got != "" {
		t.Fatalf("unknown number: %q, want empty", got)
	}
	a.Learn("1002", "waba-b")
	a.Learn("1001", "waba-x") // configuration wins over a webhook
	a.Learn("1003", "")       // says nothing
	if got := a.Of("1002"); got != "waba-b" {
		t.Errorf("learnt number: %q, want waba-b", got)
	}
	if got := a.Of("1001"); got != "waba-a" {
		t.Errorf("configured number after a webhook said otherwise: %q, want waba-a", got)
	}
	if got := a.Of("1003"); got != "" {
		t.Errorf("number learnt from an empty account: %q", got)
	}
	a.Learn("1002", "waba-c") // a number moved to another account
	if got := a.Of("1002"); got != "waba-c" {
		t.Errorf("moved number: %q, want waba-c", got)
	}
}

// Webhooks naming ever new numbers do not grow it without end; numbers
// it already knows still follow their webhooks.
func TestAccountsLearnABoundedNumberOfNumbers(t *testing.T) {
	a := ratelimit.NewAccounts(nil)
	for i := range 20000 {
		a.Learn(fmt.Sprint(i), "waba")
	}
	known := 0
	for i := range 20000 {
		if a.Of(fmt.Sprint(i)) != "" {
			known++
		}
	}
	if known == 0 || known > 10000 {
		t.Fatalf("%d numbers known after 20000 learnt, want between 1 and 10000", known)
	}
	a.Learn("0", "other")
	if got := a.Of("0"); got != "other" {
		t.Fatalf("a known number's new account was not learnt at the bound: %q", got)
	}
}
