package jobs_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/jobs"
)

// commandCase is one command type as TestEveryCommandTypeThroughEachErrorClass
// runs it: make builds a command (with what it needs in the simulator) whose
// main Graph call is to endpoint; refused builds one that Graph refuses for
// good, with refusal's code and subcode.
type commandCase struct {
	typ, endpoint string
	make          func(t *testing.T, s *stack, id string) events.Command
	refused       func(t *testing.T, s *stack, id string) events.Command
	refusal       graphRefusal
}

// graphRefusal is the code and subcode of the error the simulator answers
// a refused command's call with.
type graphRefusal struct{ code, subcode int }

// unknownObject is Graph's answer about an object it does not know, as
// the unknown group (and the unknown account) get: code 100, subcode 33.
var unknownObject = graphRefusal{100, 33}

const unknownGroup = "Y2FwaV9ncm91cDpub3RoZXJl"

func errorClassCases() []commandCase {
	onGroup := func(typ string, params func(t *testing.T, s *stack, g sim.GroupState) any) func(*testing.T, *stack, string) events.Command {
		return func(t *testing.T, s *stack, id string) events.Command {
			g := s.newGroup(t, "Group of "+id, graph.JoinApprovalRequired)
			var p any
			if params != nil {
				p = params(t, s, g)
			}
			return command(id, typ, g.ID, p)
		}
	}
	refusedOn := func(typ string, p any) func(*testing.T, *stack, string) events.Command {
		// A group Graph does not know, recorded as the number's (as a
		// deleted group of its would be) so that Graph is asked and refuses.
		return func(t *testing.T, s *stack, id string) events.Command {
			s.knownAs(t, unknownGroup, phone)
			return command(id, typ, unknownGroup, p)
		}
	}
	invite := func(group string) events.SendGroupInviteParams {
		return events.SendGroupInviteParams{To: "15550000901", GroupID: group, Template: events.TemplateRef{Name: "my_group_invite", Language: "en"}}
	}
	template := events.EnsureInviteTemplateParams{WABAID: sim.DefaultWABAID, Name: "my_group_invite", Language: "en"}
	return []commandCase{
		{
			typ: events.CreateGroup, endpoint: sim.EndpointCreateGroup,
			make: func(_ *testing.T, _ *stack, id string) events.Command {
				return command(id, events.CreateGroup, "", events.CreateGroupParams{Subject: "Group of " + id})
			},
			refused: func(t *testing.T, s *stack, id string) events.Command {
				if err := s.sim.SetNumber(phone, sim.NumberSettings{Ineligible: true}); err != nil {
					t.Fatal(err)
				}
				return command(id, events.CreateGroup, "", events.CreateGroupParams{Subject: "Group of " + id})
			},
			refusal: graphRefusal{code: 131215},
		},
		{typ: events.DeleteGroup, endpoint: sim.EndpointDeleteGroup, make: onGroup(events.DeleteGroup, nil), refused: refusedOn(events.DeleteGroup, nil), refusal: unknownObject},
		{
			typ: events.UpdateGroupSettings, endpoint: sim.EndpointUpdateSettings,
			make: onGroup(events.UpdateGroupSettings, func(*testing.T, *stack, sim.GroupState) any {
				return events.UpdateGroupSettingsParams{Description: ptr("Changed")}
			}),
			refused: refusedOn(events.UpdateGroupSettings, events.UpdateGroupSettingsParams{Description: ptr("Changed")}),
			refusal: unknownObject,
		},
		{typ: events.GetInviteLink, endpoint: sim.EndpointGetInviteLink, make: onGroup(events.GetInviteLink, nil), refused: refusedOn(events.GetInviteLink, nil), refusal: unknownObject},
		{typ: events.ResetInviteLink, endpoint: sim.EndpointResetInviteLink, make: onGroup(events.ResetInviteLink, nil), refused: refusedOn(events.ResetInviteLink, nil), refusal: unknownObject},
		{
			typ: events.ApproveJoinRequests, endpoint: sim.EndpointApproveJoin,
			make: onGroup(events.ApproveJoinRequests, func(t *testing.T, s *stack, g sim.GroupState) any {
				return events.JoinRequestsParams{JoinRequestIDs: s.joinRequests(t, g, "15550000911")}
			}),
			refused: refusedOn(events.ApproveJoinRequests, events.JoinRequestsParams{AllPending: true}),
			refusal: unknownObject,
		},
		{
			typ: events.RejectJoinRequests, endpoint: sim.EndpointRejectJoin,
			make: onGroup(events.RejectJoinRequests, func(t *testing.T, s *stack, g sim.GroupState) any {
				return events.JoinRequestsParams{JoinRequestIDs: s.joinRequests(t, g, "15550000912")}
			}),
			refused: refusedOn(events.RejectJoinRequests, events.JoinRequestsParams{AllPending: true}),
			refusal: unknownObject,
		},
		{
			typ: events.RemoveParticipants, endpoint: sim.EndpointRemoveParticipant,
			make: func(t *testing.T, s *stack, id string) events.Command {
				g := s.newGroup(t, "Group of "+id, "")
				s.members(t, g, "15550000913")
				return command(id, events.RemoveParticipants, g.ID, events.RemoveParticipantsParams{Participants: []string{"15550000913"}})
			},
			refused: refusedOn(events.RemoveParticipants, events.RemoveParticipantsParams{Participants: []string{"15550000913"}}),
			refusal: unknownObject,
		},
		{
			typ: events.EnsureInviteTemplate, endpoint: sim.EndpointCreateTemplate,
			make: func(_ *testing.T, _ *stack, id string) events.Command {
				return command(id, events.EnsureInviteTemplate, "", template)
			},
			refused: func(_ *testing.T, _ *stack, id string) events.Command {
				// The number's own account, whose templates the
				// simulator does not know (it has those of DefaultWABAID
				// only): an account Graph does not know fails the check
				// before any template call.
				p := template
				p.WABAID = otherWABA
				c := command(id, events.EnsureInviteTemplate, "", p)
				c.PhoneNumberID = otherPhone
				return c
			},
			refusal: unknownObject,
		},
		{
			typ: events.SendGroupInvite, endpoint: sim.EndpointSendMessage,
			make: func(t *testing.T, s *stack, id string) events.Command {
				withInviteTemplate(t, s)
				return command(id, events.SendGroupInvite, "", invite(s.newGroup(t, "Group of "+id, "").ID))
			},
			refused: func(t *testing.T, s *stack, id string) events.Command {
				withInviteTemplate(t, s)
				p := invite(s.newGroup(t, "Group of "+id, "").ID)
				p.Template.Name = "no_such_template"
				return command(id, events.SendGroupInvite, "", p)
			},
			refusal: graphRefusal{code: 132001},
		},
	}
}

func withInviteTemplate(t *testing.T, s *stack) {
	t.Helper()
	_, err := s.graph.AddLibraryTemplate(context.Background(), sim.DefaultWABAID, graph.AddTemplateRequest{
		Name: "my_group_invite", Category: "UTILITY", Language: "en", LibraryTemplateName: "group_invite_upon_request"})
	if err != nil {
		t.Fatal(err)
	}
}

// Issue #4 asks for each command type end to end through each class of
// Graph error on its main call: throttled (the command waits, on the
// delivery after, at least as long as Meta asked, and then succeeds),
// transient without effect (retried in process, one delivery) and
// permanent (failed at once with Graph's code, one call).
func TestEveryCommandTypeThroughEachErrorClass(t *testing.T) {
	t.Parallel()
	const retryAfter = 700 * time.Millisecond
	for _, tc := range errorClassCases() {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			t.Run("throttled, it waits as long as Meta asks, then succeeds", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				s.startWorker(t)
				c := tc.make(t, s, "throttled")
				if err := s.sim.SetFaults(sim.Faults{Throttle: 1, Limit: 1, ThrottleRetryAfter: retryAfter, Endpoints: []string{tc.endpoint}}); err != nil {
					t.Fatal(err)
				}
				s.publish(t, c)
				r := s.terminal(t, c.ID)
				wantOutcome(t, r, events.OutcomeSucceeded)
				at := s.callTimes(tc.endpoint)
				if len(at) != 2 || r.Attempts != 2 {
					t.Fatalf("%d %s calls over %d deliveries, want 2 over 2: the throttled one and one after the pause", len(at), tc.endpoint, r.Attempts)
				}
				if gap := at[1].Sub(at[0]); gap < retryAfter {
					t.Errorf("the call after the throttle came %v after it, want at least the %v Meta asked for", gap, retryAfter)
				}
			})
			t.Run("a transient error without effect is retried in process", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				s.startWorker(t)
				c := tc.make(t, s, "transient")
				if err := s.sim.SetFaults(sim.Faults{Code1: 1, Limit: 1, Endpoints: []string{tc.endpoint}}); err != nil {
					t.Fatal(err)
				}
				s.publish(t, c)
				r := s.terminal(t, c.ID)
				wantOutcome(t, r, events.OutcomeSucceeded)
				if n := s.calls(tc.endpoint); n != 2 || r.Attempts != 1 {
					t.Fatalf("%d %s calls over %d deliveries, want 2 in one delivery", n, tc.endpoint, r.Attempts)
				}
			})
			t.Run("a permanent error fails it at once", func(t *testing.T) {
				t.Parallel()
				s := setup(t)
				s.startWorker(t, func(c *jobs.Config) { c.RetryMaxElapsed = time.Second })
				c := tc.refused(t, s, "refused")
				s.publish(t, c)
				r := s.terminal(t, c.ID)
				wantFailure(t, r, events.ReasonPermanentError)
				if r.Attempts != 1 {
					t.Fatalf("failed after %d deliveries, want one", r.Attempts)
				}
				wantGraphRefusal(t, r.Error, tc.refusal)
			})
		})
	}
}

// wantGraphRefusal checks that a command failed by Graph's permanent error
// says what Graph said, whichever its type (an asynchronous command whose
// call was refused too): its code, subcode and type (the simulator's are
// all OAuthException, as Meta's), and the Graph client's account of the
// error as the message.
func wantGraphRefusal(t *testing.T, got *events.FailureInfo, want graphRefusal) {
	t.Helper()
	said := fmt.Sprintf("code %d", want.code)
	if want.subcode != 0 {
		said += fmt.Sprintf("/%d", want.subcode)
	}
	if got.Code != want.code || got.Subcode != want.subcode || got.Type != "OAuthException" ||
		!strings.HasPrefix(got.Message, "graph: ") || !strings.Contains(got.Message, said+": ") {
		t.Errorf("error %+v, want code %d, subcode %d, type OAuthException and Graph's error (%q) as the message",
			*got, want.code, want.subcode, said)
	}
}

// callTimes returns when the simulator saw each call of endpoint.
func (s *stack) callTimes(endpoint string) []time.Time {
	var at []time.Time
	for _, c := range s.sim.Calls() {
		if c.Endpoint == endpoint {
			at = append(at, c.Time)
		}
	}
	return at
}

// A rejection that Graph takes for some requests and not others is a
// partial success that reports each request (approvals: TestJoinRequests).
func TestRejectionReportsEachRequest(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.startWorker(t)
	g := s.newGroup(t, "Partly rejected", graph.JoinApprovalRequired)
	ids := s.joinRequests(t, g, "15550000921", "15550000922")
	if err := s.sim.RevokeJoinRequest(ids[1]); err != nil {
		t.Fatal(err)
	}
	s.publish(t, command("rej-partial", events.RejectJoinRequests, g.ID, events.JoinRequestsParams{JoinRequestIDs: ids}))
	r := s.terminal(t, "rej-partial")
	wantOutcome(t, r, events.OutcomePartiallySucceeded)
	byID := itemsByID(r)
	if len(r.Items) != 2 || byID[ids[0]].Outcome != events.ItemRejected || byID[ids[1]].Outcome != events.ItemFailed || byID[ids[1]].Code != graph.CodeJoinRequestUnknown {
		t.Fatalf("items = %+v, want %s rejected and %s failed with 131213", r.Items, ids[0], ids[1])
	}
	if st, _ := s.sim.Group(g.ID); len(st.JoinRequests) != 0 || len(st.Participants) != 0 {
		t.Fatalf("group = %+v, want no requests left and nobody let in", st)
	}
}
