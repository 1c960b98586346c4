package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
)

// The demo walks through the laptop stack (`make run`): it runs groupctl's
// own commands in-process, printing each as the command line a person
// would type, drives simulated WhatsApp users through the simulator's
// /_sim/ admin API, and prints every event as it arrives.

type demoFlags struct {
	phone    string
	simURL   string
	waba     string
	template string
	pace     time.Duration
	timeout  time.Duration
}

func (a *app) demoCommand() *cobra.Command {
	var f demoFlags
	c := &cobra.Command{
		Use:   "demo",
		Short: "Walk through groupflow on the `make run` stack, printing each command and event",
		Long: `A scripted walk on the laptop stack that ` + "`make run`" + ` starts (NATS on 127.0.0.1:4222,
the simulator on 127.0.0.1:8090): create a group, fetch its invite link, invite
simulated users with a campaign, let some join, let others ask to join a group
that needs approval and approve them in bulk, remove one participant. Every
groupctl command is printed before it runs and every event as it arrives.`,
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			return a.demo(c.Context(), f)
		},
	}
	fs := c.Flags()
	fs.StringVar(&f.phone, "phone", "106540352242922", "business phone number id to act as")
	fs.StringVar(&f.simURL, "sim-url", "http://127.0.0.1:8090", "the simulator's base URL (its /_sim/ admin API drives the users)")
	fs.StringVar(&f.waba, "waba", "100000000000001", "WhatsApp Business Account id of the number (the simulator's default)")
	fs.StringVar(&f.template, "template", "groupflow_group_invite", "name of the invite template the demo makes sure exists")
	fs.DurationVar(&f.pace, "pace", 1200*time.Millisecond, "pause between steps, so a person can follow")
	fs.DurationVar(&f.timeout, "step-timeout", 2*time.Minute, "longest one step may wait for its events")
	return c
}

// demo is one run of the walk.
type demo struct {
	a   *app
	f   demoFlags
	out *syncWriter
	tag string // makes ids unique per run: the ledger remembers ids for days
	// base numbers this run's simulated users, so a second run meets new
	// people (the simulator remembers who joined and who was removed).
	base int
	sim  *http.Client
	log  *eventLog
	n    int // step number
}

func (a *app) demo(ctx context.Context, f demoFlags) error {
	if !events.ValidToken(f.phone) {
		return usageErrorf("--phone %q is not a phone number id", f.phone)
	}
	f.simURL = strings.TrimRight(f.simURL, "/")
	d := &demo{a: a, f: f, out: &syncWriter{w: a.stdout}, sim: &http.Client{Timeout: 10 * time.Second}}
	var b [2]byte
	_, _ = rand.Read(b[:])
	d.tag = "demo-" + time.Now().Format("150405") + "-" + hex.EncodeToString(b[:])
	d.base = (int(b[0])<<8 | int(b[1])) % 10000 * 100

	// Preflight: say plainly what is missing.
	if err := d.simCall(ctx, http.MethodGet, "/_sim/health", nil, nil); err != nil {
		return fmt.Errorf("the simulator does not answer at %s (%w): start the stack with `make run` in another terminal", f.simURL, err)
	}
	js, err := a.connect(ctx)
	if err != nil {
		return fmt.Errorf("%w: start the stack with `make run` in another terminal", err)
	}
	rctx, cancel := a.requestCtx(ctx)
	_, err = js.Stream(rctx, a.names().CommandStream())
	cancel()
	if err != nil {
		return fmt.Errorf("no %s stream at %s (%w): is the worker running? `make run` starts it", a.names().CommandStream(), a.nc.ConnectedUrl(), err)
	}
	stop, err := d.showEvents(ctx, js)
	if err != nil {
		return err
	}
	defer stop()

	d.say("groupflow demo — business number %s, simulator %s, run %s", f.phone, f.simURL, d.tag)
	d.say("Every $ line is a command you can run yourself (groupctl is bin/groupctl after `make build`);")
	d.say("lines starting with ⇢ are the events groupflow published to %s, as they arrive.", a.names().EventStream())

	// 1. A group; Meta finishes creating it asynchronously, by webhook.
	d.step(ctx, "Create a group — Meta completes it by webhook")
	createID := d.tag + "-create"
	res, err := d.submitAndWait(ctx, createID, "create_group", "--subject", "Book club "+time.Now().Format("15:04"),
		"--description", "Created by the groupflow demo")
	if err != nil {
		return err
	}
	var created events.CreateGroupResult
	_ = json.Unmarshal(res.Result, &created)
	group := created.GroupID

	// 2. The invite template (Meta's "group invite link" library template), in
	// the number's account: the group's webhook told the worker which it is.
	d.step(ctx, "Make sure the WABA has a group invite template")
	tplID := d.tag + "-template"
	if _, err := d.submitAndWait(ctx, tplID, "ensure_invite_template", "--waba", f.waba, "--name", f.template, "--language", "en"); err != nil {
		return err
	}

	// 3. The group's invite link.
	d.step(ctx, "Fetch the group's invite link")
	res, err = d.submitAndWait(ctx, d.tag+"-link", "get_invite_link", "--group", group)
	if err != nil {
		return err
	}
	var link events.InviteLinkResult
	_ = json.Unmarshal(res.Result, &link)

	// 4. Invitations: a campaign, or single invites on a worker without
	// campaigns.
	invitees := d.users(1, 5)
	d.step(ctx, "Invite %d simulated users with an invite campaign", len(invitees))
	campaignID := d.tag + "-campaign"
	args := []string{"--campaign-id", campaignID, "--template", f.template, "--language", "en", "--invite-group", group}
	for _, u := range invitees {
		args = append(args, "--to", u)
	}
	campaignRan := true
	if res, err = d.submitAndWait(ctx, d.tag+"-campaign", "start_invite_campaign", args...); err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitFailure || res == nil {
			return err
		}
		campaignRan = false
		d.say("This worker cannot run campaigns (%s); sending the invites one by one instead.", failureText(res))
		for i, u := range invitees {
			if _, err := d.submitAndWait(ctx, fmt.Sprintf("%s-invite-%d", d.tag, i+1), "send_group_invite",
				"--to", u, "--group", group, "--template", f.template, "--language", "en"); err != nil {
				return err
			}
		}
	}

	// 5. Some of them tap the link.
	joiners := invitees[:3]
	d.step(ctx, "%d of them join with the invite link", len(joiners))
	for _, u := range joiners {
		var jr struct {
			Joined bool `json:"joined"`
		}
		if err := d.simCall(ctx, http.MethodPost, "/_sim/users/"+u+"/join", map[string]string{"invite_link": link.InviteLink}, &jr); err != nil {
			return err
		}
	}
	if err := d.waitJoined(ctx, group, joiners); err != nil {
		return err
	}
	if campaignRan {
		// The campaign credits its invitees' joins; shown here if they come
		// soon, but the walk does not depend on them.
		d.waitSoft(ctx, 10*time.Second, func(seen []event.Event) bool {
			n := 0
			for _, e := range seen {
				if c, _ := e.Extensions()[events.ExtCampaignID].(string); c == campaignID && e.Type() == events.EventCampaignInviteeJoined {
					n++
				}
			}
			return n >= len(joiners)
		})
	}

	// 6. A group that needs approval.
	d.step(ctx, "Create a second group whose admins approve who joins")
	res, err = d.submitAndWait(ctx, d.tag+"-create-approval", "create_group", "--subject", "Members only "+time.Now().Format("15:04"),
		"--join-approval-mode", "approval_required")
	if err != nil {
		return err
	}
	var created2 events.CreateGroupResult
	_ = json.Unmarshal(res.Result, &created2)
	group2, link2 := created2.GroupID, created2.InviteLink
	if link2 == "" {
		if res, err = d.submitAndWait(ctx, d.tag+"-link-approval", "get_invite_link", "--group", group2); err != nil {
			return err
		}
		var l events.InviteLinkResult
		_ = json.Unmarshal(res.Result, &l)
		link2 = l.InviteLink
	}

	askers := d.users(11, 3)
	d.step(ctx, "%d people ask to join it", len(askers))
	for _, u := range askers {
		if err := d.simCall(ctx, http.MethodPost, "/_sim/users/"+u+"/join", map[string]string{"invite_link": link2}, nil); err != nil {
			return err
		}
	}
	if err := d.waitFor(ctx, fmt.Sprintf("%d join requests", len(askers)), func(seen []event.Event) bool {
		return countPeople(seen, events.EventGroupJoinRequestCreated, group2, askers) == len(askers)
	}); err != nil {
		return err
	}
	d.optional(ctx, "group", "join-requests", group2, "--phone", f.phone)

	d.step(ctx, "Approve every pending request in one command")
	if _, err := d.submitAndWait(ctx, d.tag+"-approve", "approve_join_requests", "--group", group2, "--all-pending"); err != nil {
		return err
	}
	if err := d.waitJoined(ctx, group2, askers); err != nil {
		return err
	}

	// 7. Someone is removed.
	removed := joiners[0]
	d.step(ctx, "Remove one participant from the first group")
	if _, err := d.submitAndWait(ctx, d.tag+"-remove", "remove_participants", "--group", group, "--participant", removed); err != nil {
		return err
	}
	if err := d.waitFor(ctx, "the removal", func(seen []event.Event) bool {
		return countPeople(seen, events.EventGroupParticipantsRemoved, group, []string{removed}) == 1
	}); err != nil {
		return err
	}

	// 8. Where things stand.
	d.step(ctx, "Where things stand")
	d.optional(ctx, "group", "info", group, "--phone", f.phone)
	if campaignRan {
		d.optional(ctx, "campaign", "status", campaignID)
	}
	d.optional(ctx, "status", createID)
	d.optional(ctx, "health")
	d.pause(ctx)
	d.say("")
	d.say("Done. Replay everything with:  groupctl events --all --phone %s", f.phone)
	return nil
}

// users are simulated WhatsApp ids, 1555 and seven digits.
func (d *demo) users(first, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("1555%07d", d.base+first+i)
	}
	return out
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) step(ctx context.Context, format string, args ...any) {
	d.pause(ctx)
	d.n++
	title := fmt.Sprintf("── %d. %s ", d.n, fmt.Sprintf(format, args...))
	if n := 78 - len([]rune(title)); n > 0 {
		title += strings.Repeat("─", n)
	}
	d.say("\n%s", title)
}

func (d *demo) pause(ctx context.Context) {
	if d.f.pace <= 0 {
		return
	}
	t := time.NewTimer(d.f.pace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// groupctl runs one groupctl command in-process, printed first as the
// command line to type.
func (d *demo) groupctl(ctx context.Context, args ...string) error {
	d.say("$ groupctl %s", shellJoin(args))
	var global []string
	if d.a.natsURL != "" {
		global = append(global, "--nats-url", d.a.natsURL)
	}
	if d.a.creds != "" {
		global = append(global, "--creds", d.a.creds)
	}
	if d.a.prefix != "" {
		global = append(global, "--prefix", d.a.prefix)
	}
	code := run(ctx, append(args, global...), d.a.getenv, strings.NewReader(""), d.out, d.out)
	if code != exitOK {
		return &exitError{code: code}
	}
	return nil
}

// optional runs a command whose failure does not stop the demo (the query
// service, for one, may not be deployed).
func (d *demo) optional(ctx context.Context, args ...string) {
	if err := d.groupctl(ctx, args...); err != nil {
		d.say("(that did not work; the demo goes on)")
	}
}

// submitAndWait submits a command and waits for its terminal event, which
// the event printer shows. res is the result, also when err says it failed.
func (d *demo) submitAndWait(ctx context.Context, id, cmdType string, params ...string) (*events.CommandResult, error) {
	args := append([]string{"submit", cmdType, "--phone", d.f.phone, "--id", id}, params...)
	if err := d.groupctl(ctx, args...); err != nil {
		return nil, err
	}
	var res *events.CommandResult
	err := d.waitFor(ctx, "the result of "+id, func(seen []event.Event) bool {
		for _, e := range seen {
			if c, _ := e.Extensions()[events.ExtCommandID].(string); c == id && events.IsTerminal(e.Type()) {
				if data, err := events.DataOf(e); err == nil {
					res = data.(*events.CommandResult)
					return true
				}
			}
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if res.Outcome != events.OutcomeSucceeded {
		return res, failed(fmt.Errorf("%s %s %s: %s", cmdType, id, res.Outcome, failureText(res)))
	}
	return res, nil
}

func failureText(r *events.CommandResult) string {
	switch {
	case r.Error != nil && r.Error.Message != "":
		return r.Error.Message
	case r.Error != nil:
		return r.Error.Reason
	case len(r.ValidationErrors) > 0:
		return r.ValidationErrors[0].Field + ": " + r.ValidationErrors[0].Message
	}
	return r.Outcome
}

func (d *demo) waitJoined(ctx context.Context, group string, who []string) error {
	return d.waitFor(ctx, fmt.Sprintf("%d people to join", len(who)), func(seen []event.Event) bool {
		return countPeople(seen, events.EventGroupParticipantsJoined, group, who) == len(who)
	})
}

// countPeople counts the people of who named by events of type about group.
func countPeople(seen []event.Event, typ, group string, who []string) int {
	got := map[string]bool{}
	for _, e := range seen {
		if e.Type() != typ {
			continue
		}
		data, err := events.DataOf(e)
		if err != nil {
			continue
		}
		var refs []events.ParticipantRef
		var g string
		switch d := data.(type) {
		case *events.ParticipantsJoined:
			g, refs = d.GroupID, d.Participants
		case *events.ParticipantsRemoved:
			g, refs = d.GroupID, d.Removed
		case *events.JoinRequestCreated:
			g, refs = d.GroupID, []events.ParticipantRef{d.Participant}
		}
		if g != group {
			continue
		}
		for _, r := range refs {
			for _, id := range []string{r.WAID, r.Input, strings.TrimPrefix(r.Input, "+")} {
				if slices.Contains(who, id) {
					got[id] = true
				}
			}
		}
	}
	return len(got)
}

// waitFor blocks until done holds for the events seen since the demo
// started, or the step times out.
func (d *demo) waitFor(ctx context.Context, what string, done func([]event.Event) bool) error {
	ctx, cancel := context.WithTimeout(ctx, d.f.timeout)
	defer cancel()
	for {
		seen, changed := d.log.snapshot()
		if done(seen) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("gave up waiting for %s after %s: is the worker running? (data/worker.log)", what, d.f.timeout)
			}
			return ctx.Err()
		}
	}
}

// waitSoft is waitFor for what is nice to see but not needed.
func (d *demo) waitSoft(ctx context.Context, limit time.Duration, done func([]event.Event) bool) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	_ = d.waitFor(ctx, "", done)
}

// showEvents prints every new event and keeps it for waitFor.
func (d *demo) showEvents(ctx context.Context, js jetstream.JetStream) (stop func(), err error) {
	rctx, cancel := d.a.requestCtx(ctx)
	defer cancel()
	cons, err := js.OrderedConsumer(rctx, d.a.names().EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.a.names().Event(d.f.phone, ">")},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow events: %w", err)
	}
	d.log = newEventLog()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := it.Next()
			if err != nil {
				return
			}
			e, err := events.Unmarshal(m.Data())
			if err != nil {
				continue
			}
			fmt.Fprintf(d.out, "  ⇢ %s\n", renderEvent(e))
			d.log.add(e)
		}
	}()
	return func() { it.Stop(); <-done }, nil
}

// simCall calls the simulator's admin API, printed first as a curl line.
func (d *demo) simCall(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	curl := "$ curl -s"
	if method != http.MethodGet {
		curl += " -X " + method
	}
	curl += " " + d.f.simURL + path
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
		curl += " -d '" + string(b) + "'"
	}
	if path != "/_sim/health" {
		d.say("%s", curl)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.f.simURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.sim.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, oneLine(string(b)))
	}
	if path != "/_sim/health" {
		d.say("%s", bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// eventLog keeps the events seen and wakes waiters on each new one.
type eventLog struct {
	mu      sync.Mutex
	all     []event.Event
	changed chan struct{}
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) add(e event.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, e)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *eventLog) snapshot() ([]event.Event, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clip(l.all), l.changed
}

// syncWriter serialises writes from the event printer and the commands.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,+@") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}
