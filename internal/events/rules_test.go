package events

import "testing"

func TestValidCommandID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"order-4711": true, "a:b.c_d-e": true, "": false, "a b": false, "é": false,
		string(make([]byte, 129)): false,
	} {
		if got := ValidCommandID(id); got != want {
			t.Errorf("ValidCommandID(%q) = %v, want %v", id, got, want)
		}
	}
}
