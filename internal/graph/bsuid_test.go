package graph_test

import (
	"testing"

	"github.com/groupflow/groupflow/internal/graph"
)

// Business-scoped user ids carry any country's code, not only "US.": each
// goes out as user_id, never as a phone number.
func TestIsBSUID(t *testing.T) {
	for id, want := range map[string]bool{
		"US.13491208655302741918": true,
		"BR.13491208655302741918": true,
		"US.ENT.1349120865530274": true,
		"+15550783881":            false,
		"15550783881":             false,
		"us.1349":                 false,
		"U.1349":                  false,
		"US.":                     false,
		"USA.1349":                false,
	} {
		if got := graph.IsBSUID(id); got != want {
			t.Errorf("IsBSUID(%q) = %v, want %v", id, got, want)
		}
	}
}
