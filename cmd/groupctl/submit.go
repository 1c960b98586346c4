package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// submitFlags are the envelope flags every `submit <type>` shares.
type submitFlags struct {
	id, phone, group, deadline string
	file                       string
	wait                       bool
	waitTimeout                time.Duration
	json                       bool
}

func (a *app) submitCommand() *cobra.Command {
	var f submitFlags
	c := &cobra.Command{
		Use:   "submit <command-type> [flags] | submit --file cmd.json",
		Short: "Publish a command (built from flags, or read from a JSON file or stdin)",
		Long: `Publish one command to groups.cmd.<phone_number_id>.<type> with its id as
Nats-Msg-Id. The command is validated exactly as the worker will (events.DecodeCommand)
before anything is sent: an invalid command exits 2 with every problem listed.

Build it from flags with a subcommand per command type (submit create_group --help),
or give the whole JSON with --file cmd.json (--file - reads stdin).

--wait follows the events until the command's terminal event: exit 0 when it
succeeded, 1 when it failed, was rejected or only partially succeeded.`,
		Example: `  groupctl submit create_group --phone 106540352242922 --subject "Book club" --wait
  groupctl submit approve_join_requests --phone 106540352242922 --group <group-id> --all-pending --wait
  echo '{"id":"x-1","type":"get_invite_link","phone_number_id":"106540352242922","group_id":"<id>"}' | groupctl submit -f - --wait`,
		Args: noSubcommand,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.file == "" {
				return usageErrorf("name a command type (groupctl submit <type> --help) or give --file")
			}
			for _, name := range []string{"id", "phone", "group", "deadline"} {
				if c.Flags().Changed(name) {
					return usageErrorf("--%s cannot be combined with --file: the file holds the whole command", name)
				}
			}
			body, err := readInput(c.InOrStdin(), f.file)
			if err != nil {
				return usageErrorf("read --file: %v", err)
			}
			return a.submit(c.Context(), body, f)
		},
	}
	pf := c.PersistentFlags()
	pf.StringVar(&f.id, "id", "", "command id, the idempotency key (default: generated and printed)")
	pf.StringVar(&f.phone, "phone", "", "business phone number id (env GROUPCTL_PHONE_NUMBER_ID)")
	pf.StringVar(&f.deadline, "deadline", "", "RFC 3339 time or duration from now (e.g. 10m) after which nothing is sent")
	pf.BoolVar(&f.wait, "wait", false, "follow events until the command's terminal event; exit 1 unless it succeeded")
	pf.DurationVar(&f.waitTimeout, "wait-timeout", 11*time.Minute, "longest --wait waits (async commands wait for their webhook)")
	pf.BoolVar(&f.json, "json", false, "print the publish acknowledgement, or with --wait the terminal CloudEvent, as JSON")
	c.Flags().StringVarP(&f.file, "file", "f", "", "read the command JSON from this file ('-' for stdin)")

	for _, s := range commandSpecs() {
		c.AddCommand(a.typedSubmitCommand(s, &f))
	}
	return c
}

func readInput(stdin io.Reader, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(stdin, events.MaxCommandSize+1))
	}
	return os.ReadFile(name) //nolint:gosec // G304: the operator names the file to submit
}

// commandSpec describes the flags of one command type: flags registers
// them on fs and returns the function that builds the params (nil params
// for a type without any).
type commandSpec struct {
	typ   string
	short string
	group bool // takes --group
	flags func(fs *pflag.FlagSet) func(c *cobra.Command) (any, error)
}

func commandSpecs() []commandSpec {
	return []commandSpec{
		{typ: events.CreateGroup, short: "Create a group (completes on Meta's group_create webhook)",
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.CreateGroupParams
				fs.StringVar(&p.Subject, "subject", "", "group subject, 1–128 characters (required)")
				fs.StringVar(&p.Description, "description", "", "group description, up to 2048 characters")
				fs.StringVar(&p.JoinApprovalMode, "join-approval-mode", "", "approval_required or auto_approve (Meta's default)")
				return func(*cobra.Command) (any, error) { return p, nil }
			}},
		{typ: events.DeleteGroup, short: "Delete a group", group: true},
		{typ: events.UpdateGroupSettings, short: "Change a group's subject, description or profile picture", group: true,
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var subject, description, picURL, picFile string
				fs.StringVar(&subject, "subject", "", "new subject")
				fs.StringVar(&description, "description", "", "new description (\"\" clears it)")
				fs.StringVar(&picURL, "picture-url", "", "URL of a square JPEG the worker fetches")
				fs.StringVar(&picFile, "picture-file", "", "square JPEG file sent inline")
				return func(c *cobra.Command) (any, error) {
					var p events.UpdateGroupSettingsParams
					if c.Flags().Changed("subject") {
						p.Subject = &subject
					}
					if c.Flags().Changed("description") {
						p.Description = &description
					}
					switch {
					case picURL != "" && picFile != "":
						return nil, usageErrorf("give --picture-url or --picture-file, not both")
					case picURL != "":
						p.ProfilePicture = &events.Picture{URL: picURL}
					case picFile != "":
						b, err := os.ReadFile(picFile) //nolint:gosec // G304: the operator names the picture
						if err != nil {
							return nil, usageErrorf("read --picture-file: %v", err)
						}
						p.ProfilePicture = &events.Picture{MediaBase64: base64.StdEncoding.EncodeToString(b)}
					}
					return p, nil
				}
			}},
		{typ: events.GetInviteLink, short: "Read a group's invite link", group: true},
		{typ: events.ResetInviteLink, short: "Replace a group's invite link", group: true},
		{typ: events.ApproveJoinRequests, short: "Approve join requests (by id, or every pending one)", group: true, flags: joinRequestFlags},
		{typ: events.RejectJoinRequests, short: "Reject join requests (by id, or every pending one)", group: true, flags: joinRequestFlags},
		{typ: events.RemoveParticipants, short: "Remove participants from a group", group: true,
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.RemoveParticipantsParams
				fs.StringSliceVar(&p.Participants, "participant", nil, "phone number, wa_id or user id to remove (repeat or comma separate)")
				return func(*cobra.Command) (any, error) { return p, nil }
			}},
		{typ: events.EnsureInviteTemplate, short: "Make sure the WABA has the group invite template",
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.EnsureInviteTemplateParams
				fs.StringVar(&p.WABAID, "waba", "", "WhatsApp Business Account id (required)")
				fs.StringVar(&p.Name, "name", "", "template name (required)")
				fs.StringVar(&p.Language, "language", "en", "template language")
				return func(*cobra.Command) (any, error) { return p, nil }
			}},
		{typ: events.SendGroupInvite, short: "Send one person a group invite template",
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.SendGroupInviteParams
				fs.StringVar(&p.To, "to", "", "recipient phone number (required)")
				fs.StringVar(&p.GroupID, "invite-group", "", "group the invite is for (default: --group)")
				fs.StringVar(&p.Template.Name, "template", "", "invite template name (required)")
				fs.StringVar(&p.Template.Language, "language", "en", "invite template language")
				fs.StringVar(&p.OnAmbiguous, "on-ambiguous", "", "fail (at most once, default) or resend (at least once)")
				return func(c *cobra.Command) (any, error) {
					if p.GroupID == "" {
						p.GroupID, _ = c.Flags().GetString("group")
					}
					return p, nil
				}
			}},
		{typ: events.StartInviteCampaign, short: "Invite many people to groups with a template",
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.StartInviteCampaignParams
				var to []string
				var group, invitesFile, object string
				fs.StringVar(&p.CampaignID, "campaign-id", "", "campaign id (default: generated and printed)")
				fs.StringVar(&p.Template.Name, "template", "", "invite template name (required)")
				fs.StringVar(&p.Template.Language, "language", "en", "invite template language")
				fs.StringSliceVar(&to, "to", nil, "recipient phone numbers, invited to --invite-group (repeat or comma separate)")
				fs.StringVar(&group, "invite-group", "", "group the --to recipients are invited to")
				fs.StringVar(&invitesFile, "invites-file", "", `JSON array of {"to","group_id"} ('-' for stdin)`)
				fs.StringVar(&object, "invites-object", "", "object store reference <bucket>/<name> of a large invite list")
				return func(c *cobra.Command) (any, error) {
					if p.CampaignID == "" {
						p.CampaignID = newID("campaign")
					}
					for _, t := range to {
						p.Invites = append(p.Invites, events.Invite{To: t, GroupID: group})
					}
					if invitesFile != "" {
						b, err := readInput(c.InOrStdin(), invitesFile)
						if err != nil {
							return nil, usageErrorf("read --invites-file: %v", err)
						}
						var more []events.Invite
						if err := json.Unmarshal(b, &more); err != nil {
							return nil, usageErrorf("--invites-file: want a JSON array of {\"to\",\"group_id\"}: %v", err)
						}
						p.Invites = append(p.Invites, more...)
					}
					if object != "" {
						bucket, name, ok := strings.Cut(object, "/")
						if !ok {
							return nil, usageErrorf("--invites-object: want <bucket>/<name>, got %q", object)
						}
						p.InvitesObject = &events.ObjectRef{Bucket: bucket, Name: name}
					}
					return p, nil
				}
			}},
		{typ: events.CancelCampaign, short: "Cancel a campaign's pending invites",
			flags: func(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
				var p events.CancelCampaignParams
				fs.StringVar(&p.CampaignID, "campaign-id", "", "campaign to cancel (required)")
				return func(*cobra.Command) (any, error) { return p, nil }
			}},
	}
}

func joinRequestFlags(fs *pflag.FlagSet) func(*cobra.Command) (any, error) {
	var p events.JoinRequestsParams
	fs.StringSliceVar(&p.JoinRequestIDs, "request", nil, "join request id (repeat or comma separate)")
	fs.BoolVar(&p.AllPending, "all-pending", false, "act on every request pending when the command runs")
	return func(*cobra.Command) (any, error) { return p, nil }
}

func (a *app) typedSubmitCommand(s commandSpec, f *submitFlags) *cobra.Command {
	var build func(*cobra.Command) (any, error)
	c := &cobra.Command{
		Use:   s.typ,
		Short: s.short,
		Args:  exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			phone, err := a.phoneOr(f.phone)
			if err != nil {
				return err
			}
			cmd := events.Command{ID: f.id, Type: s.typ, PhoneNumberID: phone, GroupID: f.group}
			if cmd.ID == "" {
				cmd.ID = newID(s.typ)
			}
			if s.typ == events.SendGroupInvite {
				cmd.GroupID = "" // the group is params.group_id; --group only defaults it
			}
			if f.deadline != "" {
				d, err := parseDeadline(f.deadline, time.Now())
				if err != nil {
					return usageErrorf("--deadline: %v", err)
				}
				cmd.Deadline = &d
			}
			if build != nil {
				p, err := build(c)
				if err != nil {
					return err
				}
				if cmd.Params, err = json.Marshal(p); err != nil {
					return err
				}
			}
			body, err := json.Marshal(cmd)
			if err != nil {
				return err
			}
			return a.submit(c.Context(), body, *f)
		},
	}
	if s.group || s.typ == events.SendGroupInvite {
		c.Flags().StringVar(&f.group, "group", "", "group id the command acts on")
	}
	if s.flags != nil {
		build = s.flags(c.Flags())
	}
	return c
}

// parseDeadline reads an RFC 3339 time or a duration from now.
func parseDeadline(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want an RFC 3339 time (2026-11-24T18:00:00Z) or a duration (10m), got %q", s)
	}
	return t, nil
}

// newID makes a command id nobody else will use: the type, the time and
// random bits, all within the id alphabet.
func newID(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%s-%s", strings.ReplaceAll(kind, "_", "-"), time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(b[:]))
}

// submitAck is what `submit --json` prints without --wait.
type submitAck struct {
	CommandID string `json:"command_id"`
	Subject   string `json:"subject"`
	Stream    string `json:"stream"`
	Sequence  uint64 `json:"sequence"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// submit validates body, publishes it and, with --wait, follows it to its
// terminal event.
func (a *app) submit(ctx context.Context, body []byte, f submitFlags) error {
	cmd, err := events.DecodeCommand("", body)
	if err != nil {
		return usageErrorf("invalid command: %s", validationLine(err))
	}
	// The body goes out compacted but otherwise as given: the ledger and
	// the DLQ keep exactly what was sent.
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return usageErrorf("invalid command: %v", err)
	}
	js, err := a.connect(ctx)
	if err != nil {
		return err
	}
	ledger := a.readableLedger(ctx, js)
	if err := a.checkNotReused(ctx, ledger, cmd); err != nil {
		return err
	}
	names := a.names()
	subject := names.Command(cmd.PhoneNumberID, cmd.Type)

	var w *terminalWatch
	if f.wait {
		w, err = a.watchTerminal(ctx, cmd.PhoneNumberID, cmd.ID, ledger, jetstream.DeliverNewPolicy)
		if err != nil {
			return err
		}
		defer func() { w.stop() }()
	}
	ack, err := a.publish(ctx, subject, cmd.ID, compact.Bytes(), nil)
	if err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	if !f.wait {
		if f.json {
			return writeJSON(a.stdout, submitAck{CommandID: cmd.ID, Subject: subject, Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate})
		}
		dup := ""
		if ack.Duplicate {
			dup = " (duplicate id: already in the stream, not queued again)"
		}
		a.printf("submitted %s %s → %s (seq %d)%s\n", cmd.Type, cmd.ID, subject, ack.Sequence, dup)
		return nil
	}
	if !f.json {
		a.printf("submitted %s %s → %s, waiting for its result…\n", cmd.Type, cmd.ID, subject)
	}
	if ack.Duplicate && ledger == nil {
		// Sent before within the stream's duplicate window: its terminal
		// event may be out already, and nothing will publish it again.
		all, err := a.watchTerminal(ctx, cmd.PhoneNumberID, cmd.ID, nil, jetstream.DeliverAllPolicy)
		if err != nil {
			return err
		}
		w.stop()
		w = all
	}
	wctx, cancel := context.WithTimeout(ctx, f.waitTimeout)
	defer cancel()
	ev, err := w.wait(wctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return failed(fmt.Errorf("no result for %s after %s; `groupctl status %s` shows where it is", cmd.ID, f.waitTimeout, cmd.ID))
		}
		return err
	}
	if f.json {
		if err := writeJSON(a.stdout, ev); err != nil {
			return err
		}
	} else {
		a.printf("%s\n", renderEvent(ev))
	}
	if ev.Type() != events.EventCommandSucceeded {
		return failed(nil)
	}
	return nil
}

// readableLedger opens the command ledger, or returns nil when it cannot
// be read: a NATS user without access to it (the caller of
// deploy/nats/accounts.conf), refused at once, or no answer within
// --timeout. submit reads it only to do better, never to go on.
func (a *app) readableLedger(ctx context.Context, js jetstream.JetStream) *jobs.Ledger {
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	bucket := a.names().LedgerBucket()
	defer a.refused.onStream("KV_"+bucket, cancel)()
	kv, err := js.KeyValue(rctx, bucket)
	if err != nil {
		return nil
	}
	return jobs.NewLedger(kv, nil)
}

// ledgerGet reads a command's ledger entry, ended at once if the server
// refuses the read.
func (a *app) ledgerGet(ctx context.Context, ledger *jobs.Ledger, id string) (jobs.Entry, error) {
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	defer a.refused.onStream("KV_"+a.names().LedgerBucket(), cancel)()
	e, _, err := ledger.Get(rctx, id)
	return e, err
}

// checkNotReused refuses a command whose id the ledger has for another
// command: the worker would answer it with that command's stored result,
// and --wait would show it as this one's. Without a ledger it can read
// (nil), the submit goes on unchecked.
func (a *app) checkNotReused(ctx context.Context, ledger *jobs.Ledger, cmd events.Command) error {
	if ledger == nil {
		return nil
	}
	// Not found, or not readable: nothing to refuse.
	if e, err := a.ledgerGet(ctx, ledger, cmd.ID); err == nil {
		if why := e.Conflict(cmd); why != "" {
			return failed(fmt.Errorf("command id %q is already used by another command (%s; that one is %s): give this one a new --id (ids are remembered 7 days)",
				cmd.ID, why, e.State))
		}
	}
	return nil
}

// publish sends a command with its id as Nats-Msg-Id, in a producer span
// whose traceparent the worker continues when tracing is configured.
func (a *app) publish(ctx context.Context, subject, msgID string, body []byte, header nats.Header) (*jetstream.PubAck, error) {
	ctx, cancel := a.requestCtx(ctx)
	defer cancel()
	if header == nil {
		header = nats.Header{}
	}
	m := &nats.Msg{Subject: subject, Data: body, Header: header}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	return telemetry.PublishMsg(ctx, a.tracer, a.js, m)
}

// validationLine renders a *events.ValidationError as one line.
func validationLine(err error) string {
	var ve *events.ValidationError
	if !errors.As(err, &ve) {
		return err.Error()
	}
	parts := make([]string, 0, len(ve.Errors))
	for _, fe := range ve.Errors {
		if fe.Field == "" {
			parts = append(parts, fe.Message)
		} else {
			parts = append(parts, fe.Field+": "+fe.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// terminalWatch waits for one command's terminal event. It is started
// before the command is published, so the event cannot slip by. The
// ledger, when groupctl's NATS user may read it, covers a command already
// finished (its re-sent terminal event is dropped as a duplicate by the
// stream); without it, a command the stream took as a duplicate is watched
// again from the stream's start (watchTerminal with DeliverAllPolicy).
type terminalWatch struct {
	a      *app
	cmdID  string
	msgID  string
	ledger *jobs.Ledger // nil: not readable
	it     jetstream.MessagesContext
}

func (a *app) watchTerminal(ctx context.Context, phone, cmdID string, ledger *jobs.Ledger, from jetstream.DeliverPolicy) (*terminalWatch, error) {
	js, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	names := a.names()
	cons, err := js.OrderedConsumer(rctx, names.EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{names.Event(phone, "command.*")},
		DeliverPolicy:  from,
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	return &terminalWatch{a: a, cmdID: cmdID, msgID: events.TerminalEventID(cmdID, ""), ledger: ledger, it: it}, nil
}

func (w *terminalWatch) stop() { w.it.Stop() }

// wait returns the terminal event. It reads the ledger first and then
// every few seconds, in case the event was published before the watch.
func (w *terminalWatch) wait(ctx context.Context) (event.Event, error) {
	type result struct {
		ev  event.Event
		err error
	}
	found := make(chan result, 1)
	go func() {
		for {
			m, err := w.it.Next(jetstream.NextContext(ctx))
			if err != nil {
				found <- result{err: err}
				return
			}
			if ev, ok := w.terminal(m.Headers(), m.Data()); ok {
				found <- result{ev: ev}
				return
			}
		}
	}()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		if ev, ok := w.fromLedger(ctx); ok {
			return ev, nil
		}
		select {
		case r := <-found:
			if r.err != nil && ctx.Err() != nil {
				return event.Event{}, ctx.Err()
			}
			return r.ev, r.err
		case <-ctx.Done():
			return event.Event{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// terminal decodes the command's terminal event, ok false for any other.
func (w *terminalWatch) terminal(h nats.Header, data []byte) (event.Event, bool) {
	if h.Get(jetstream.MsgIDHeader) != w.msgID {
		return event.Event{}, false
	}
	ev, err := events.Unmarshal(data)
	return ev, err == nil
}

// fromLedger is the command's stored terminal event, if it has one. A
// ledger that cannot be read is not read again: the watch goes on without.
func (w *terminalWatch) fromLedger(ctx context.Context) (event.Event, bool) {
	if w.ledger == nil {
		return event.Event{}, false
	}
	e, err := w.a.ledgerGet(ctx, w.ledger, w.cmdID)
	if err != nil {
		if !errors.Is(err, jobs.ErrNotFound) && ctx.Err() == nil {
			w.ledger = nil
		}
		return event.Event{}, false
	}
	if e.Result == nil || !e.State.Terminal() {
		return event.Event{}, false
	}
	ev, err := events.Unmarshal(e.Result.Event)
	return ev, err == nil
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
