package jobs

import (
	"strconv"
	"testing"

	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// The admission counts are kept only while a command is being admitted:
// numbers named once must not stay for the worker's life.
func TestAdmissionCountsAreDroppedOnceReleased(t *testing.T) {
	t.Parallel()
	p := newParkings()
	first, ahead := p.admit("1", ratelimit.GroupOps)
	if ahead != 0 {
		t.Fatalf("first admission has %d ahead, want 0", ahead)
	}
	second, ahead := p.admit("1", ratelimit.GroupOps)
	if ahead != 1 {
		t.Fatalf("second admission has %d ahead, want 1", ahead)
	}
	first.release()
	first.release() // a second release uncounts nothing
	if _, ahead := p.admit("1", ratelimit.GroupOps); ahead != 1 {
		t.Fatalf("admission after one of two released has %d ahead, want 1", ahead)
	}
	second.release()

	var adms []*admission
	for i := range 1000 {
		a, _ := p.admit(strconv.Itoa(1666_000_0000+i), ratelimit.Messages)
		adms = append(adms, a)
	}
	for _, a := range adms {
		a.release()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.admitted) != 1 {
		t.Errorf("%d admission counts kept, want 1 (the one still admitted)", len(p.admitted))
	}
}
