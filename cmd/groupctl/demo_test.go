package main

import (
	"strings"
	"testing"
)

// The demo runs to its end on a real stack and shows what it promises.
func TestDemoWalksThroughTheStack(t *testing.T) {
	t.Parallel()
	s := setupStack(t)
	r := s.groupctl(t, "demo", "--sim-url", s.simURL, "--phone", phone, "--pace", "0", "--step-timeout", "1m")
	if testing.Verbose() {
		t.Logf("demo output:\n%s", r.stdout)
	}
	wantCode(t, r, 0)
	wantContains(t, "demo output", r.stdout,
		"── 1. Create a group", "── 2. Make sure the WABA has a group invite template",
		"$ groupctl submit create_group --phone "+phone,
		"⇢ ", "group.created", "command.succeeded",
		"get_invite_link", "link https://",
		"/_sim/users/", "group.participants_joined",
		"--join-approval-mode approval_required", "group.join_request_created", "asks to join",
		"approve_join_requests", "3 approved",
		"group.participants_removed", "removed",
		"Where things stand", "$ groupctl health",
		"Done.",
	)
	// The worker runs campaigns: the demo's fallback to single invites
	// (for workers without them) must not be taken.
	wantContains(t, "demo output", r.stdout, "campaign.started", "campaign.completed", "campaign.invitee_joined",
		"$ groupctl campaign status", "5/5 done: 5 sent, 0 failed", "3 joined — completed")
	if strings.Contains(r.stdout, "one by one") {
		t.Fatalf("the demo fell back to single invites:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "(that did not work") {
		t.Fatalf("an optional step failed on a complete stack:\n%s", r.stdout)
	}
}

func TestDemoSaysWhatIsMissing(t *testing.T) {
	t.Parallel()
	b := setupNATS(t)
	r := b.groupctl(t, "demo", "--sim-url", "http://127.0.0.1:1", "--pace", "0")
	wantCode(t, r, 1)
	wantContains(t, "stderr", r.stderr, "the simulator does not answer at http://127.0.0.1:1", "make run")
}
