package main

// Campaign progress comes from two places: the campaign.* events, which
// every groupflow version publishes, and the groups_campaigns KV bucket,
// which holds the live counters (read with jobs.ReadCampaign).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// campaignView is what `campaign status` shows (and prints with --json).
type campaignView struct {
	CampaignID    string                `json:"campaign_id"`
	CommandID     string                `json:"command_id,omitempty"`
	PhoneNumberID string                `json:"phone_number_id,omitempty"`
	State         string                `json:"state"`
	Template      events.TemplateRef    `json:"template,omitzero"`
	Counts        events.CampaignCounts `json:"counts"`
	// PausedUntil and Reason say why a paused campaign sends nothing.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	Reason      string    `json:"reason,omitempty"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
	// Source says where the counters came from: "kv" or "events".
	Source string `json:"source"`
}

// campaignRunning is the state shown until a campaign says otherwise.
const campaignRunning = events.CampaignStateRunning

func (v campaignView) final() bool {
	return v.State == events.CampaignStateCompleted || v.State == events.CampaignStateCancelled
}

func (a *app) campaignCommand() *cobra.Command {
	var asJSON, watch bool
	status := &cobra.Command{
		Use:   "status <campaign-id>",
		Short: "Show an invite campaign's progress (with --watch until it ends)",
		Long: `Show an invite campaign's counters — sent, failed, cancelled, unknown, joined,
pending — with a progress bar, from the groups_campaigns bucket and the campaign
events. --watch keeps updating until the campaign completes or is cancelled.
Exits 1 when the campaign is unknown.`,
		Args: exactArgs("campaign-id"),
		RunE: func(c *cobra.Command, args []string) error {
			return a.campaignStatus(c.Context(), args[0], asJSON, watch)
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print the progress as JSON (one line per update with --watch)")
	status.Flags().BoolVarP(&watch, "watch", "w", false, "keep updating until the campaign ends")
	return parentCommand("campaign", "Invite campaigns", status)
}

func (a *app) campaignStatus(ctx context.Context, id string, asJSON, watch bool) error {
	if !events.ValidCommandID(id) {
		return usageErrorf("%q is not a campaign id (1–128 of A-Z a-z 0-9 _ - . :)", id)
	}
	js, err := a.connect(ctx)
	if err != nil {
		return err
	}
	tr := newCampaignTracker(id)
	if err := tr.readKV(ctx, a, js); err != nil {
		return err
	}
	// The events give the start (total, template) and, when the bucket has
	// no record, the counters: the stored ones first, then live.
	names := a.names()
	subjects := []string{names.Event("*", "campaign.*"), names.Event("*", events.EventCommandSucceeded), names.Event("*", events.EventCommandFailed)}
	rctx, cancel := a.requestCtx(ctx)
	str, err := js.Stream(rctx, names.EventStream())
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = str.Info(rctx)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("read %s: %w", names.EventStream(), err)
	}
	lastSeq := info.State.LastSeq
	err = a.readStored(ctx, js, names.EventStream(), jetstream.ConsumerConfig{FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverAllPolicy},
		func(m jetstream.Msg) error {
			tr.apply(m)
			if md, err := m.Metadata(); err == nil {
				lastSeq = max(lastSeq, md.Sequence.Stream)
			}
			return nil
		})
	if err != nil {
		return err
	}
	view, ok := tr.view()
	if !ok {
		return fmt.Errorf("campaign %s is unknown: not in %s and no campaign events", id, names.CampaignBucket())
	}
	out := campaignPrinter{w: a.stdout, json: asJSON, live: watch && isTerminal(a.stdout)}
	if err := out.print(view); err != nil {
		return err
	}
	if !watch || view.final() {
		return out.done()
	}

	// Live: new events (from after the stored ones: nothing is counted
	// twice), and the bucket every second for counters the throttled
	// progress events have not reported yet.
	rctx, cancel = a.requestCtx(ctx)
	cons, err := js.OrderedConsumer(rctx, names.EventStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: lastSeq + 1,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %s: %w", names.EventStream(), err)
	}
	defer it.Stop()
	updates := make(chan struct{}, 1)
	go func() {
		for {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				return
			}
			if tr.apply(m) {
				select {
				case updates <- struct{}{}:
				default:
				}
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := view
	for {
		select {
		case <-ctx.Done():
			return out.done()
		case <-updates:
		case <-tick.C:
			if err := tr.readKV(ctx, a, js); err != nil && ctx.Err() == nil {
				fmt.Fprintf(a.stderr, "groupctl: %v\n", err)
			}
		}
		v, _ := tr.view()
		if reflect.DeepEqual(v, last) {
			continue
		}
		last = v
		if err := out.print(v); err != nil {
			return err
		}
		if v.final() {
			return out.done()
		}
	}
}

// campaignTracker folds a campaign's KV record and events into a view.
type campaignTracker struct {
	id string

	// guarded by mu: events arrive on another goroutine while watching.
	mu        sync.Mutex
	kv        *jobs.CampaignStatus
	started   *events.CampaignStarted
	startedAt time.Time
	phone     string
	counts    *events.CampaignCounts
	state     string
	paused    time.Time
	reason    string
	updatedAt time.Time
	joined    int
	seen      bool
}

func newCampaignTracker(id string) *campaignTracker {
	return &campaignTracker{id: id}
}

func (t *campaignTracker) readKV(ctx context.Context, a *app, js jetstream.JetStream) error {
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	kv, err := js.KeyValue(rctx, a.names().CampaignBucket())
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil // an older topology: the events are enough
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", a.names().CampaignBucket(), err)
	}
	st, err := jobs.ReadCampaign(rctx, kv, t.id)
	if errors.Is(err, jobs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read campaign %s: %w", t.id, err)
	}
	t.mu.Lock()
	t.kv = &st
	t.mu.Unlock()
	return nil
}

// apply folds one event in and reports whether it was about the campaign.
func (t *campaignTracker) apply(m jetstream.Msg) bool {
	e, err := events.Unmarshal(m.Data())
	if err != nil {
		return false
	}
	if cid, _ := e.Extensions()[events.ExtCampaignID].(string); cid != t.id {
		// The command that started or cancelled it carries the campaign
		// in its result only.
		if !strings.HasPrefix(e.Type(), "command.") {
			return false
		}
		d, err := events.DataOf(e)
		r, ok := d.(*events.CommandResult)
		if err != nil || !ok || (r.CommandType != events.StartInviteCampaign && r.CommandType != events.CancelCampaign) {
			return false
		}
		var cr events.CampaignResult
		if json.Unmarshal(r.Result, &cr) != nil || cr.CampaignID != t.id {
			return false
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		t.seen = true
		if r.CommandType == events.StartInviteCampaign && r.Outcome == events.OutcomeSucceeded {
			c := cr.Counts
			t.counts, t.state, t.updatedAt = &c, events.CampaignStateCompleted, e.Time()
		}
		return true
	}
	d, err := events.DataOf(e)
	if err != nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen = true
	t.phone, _ = e.Extensions()[events.ExtPhoneNumberID].(string)
	if e.Time().After(t.updatedAt) {
		t.updatedAt = e.Time()
	}
	switch d := d.(type) {
	case *events.CampaignStarted:
		t.started, t.startedAt = d, e.Time()
		if t.state == "" {
			t.state = campaignRunning
		}
	case *events.CampaignProgress:
		c := d.Counts
		if t.state != events.CampaignStateCompleted && t.state != events.CampaignStateCancelled {
			t.counts, t.state = &c, cmp.Or(d.State, campaignRunning)
			t.paused, t.reason = time.Time{}, d.Reason
			if d.PausedUntil != nil {
				t.paused = *d.PausedUntil
			}
		}
	case *events.CampaignCompleted:
		c := d.Counts
		t.counts, t.state = &c, d.State
	case *events.CampaignInviteeJoined:
		t.joined++
	}
	return true
}

// view merges what is known; ok is false when nothing is.
func (t *campaignTracker) view() (campaignView, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kv == nil && !t.seen {
		return campaignView{}, false
	}
	v := campaignView{CampaignID: t.id, State: t.state, PhoneNumberID: t.phone, StartedAt: t.startedAt, UpdatedAt: t.updatedAt, Source: "events"}
	if t.state == events.CampaignStatePaused {
		v.PausedUntil, v.Reason = t.paused, t.reason
	}
	if s := t.started; s != nil {
		v.CommandID, v.Template, v.Counts.Total, v.Counts.Pending = s.CommandID, s.Template, s.Total, s.Total
	}
	if t.counts != nil {
		v.Counts = *t.counts
	}
	v.Counts.Joined = max(v.Counts.Joined, t.joined)
	if r := t.kv; r != nil {
		v.Source = "kv"
		v.CommandID = cmp.Or(r.CommandID, v.CommandID)
		v.PhoneNumberID = cmp.Or(r.PhoneNumberID, v.PhoneNumberID)
		joined := max(r.Counts.Joined, v.Counts.Joined)
		v.Counts = r.Counts
		v.Counts.Joined = joined
		// A completion event is final even if the record lags behind it.
		if r.State != "" && !v.final() {
			v.State = r.State
			v.PausedUntil, v.Reason = time.Time{}, ""
			if r.Paused {
				v.State, v.PausedUntil, v.Reason = events.CampaignStatePaused, r.PausedUntil, r.PauseReason
			}
		}
		if v.StartedAt.IsZero() {
			v.StartedAt = r.CreatedAt
		}
		if r.UpdatedAt.After(v.UpdatedAt) {
			v.UpdatedAt = r.UpdatedAt
		}
	}
	if v.State == "" {
		v.State = campaignRunning
	}
	return v, true
}

// campaignPrinter prints views: a table once, a rewritten line on a
// terminal while watching, or a line (or JSON object) per update.
type campaignPrinter struct {
	w       io.Writer
	json    bool
	live    bool
	printed int
}

func (p *campaignPrinter) print(v campaignView) error {
	defer func() { p.printed++ }()
	if p.json {
		return writeJSON(p.w, v)
	}
	line := fmt.Sprintf("%s — %s", countsLine(v.Counts, 30), v.State)
	if !v.PausedUntil.IsZero() {
		line += " until " + stamp(v.PausedUntil)
	}
	if v.Reason != "" {
		line += " (" + v.Reason + ")"
	}
	if p.printed == 0 {
		head := "campaign " + v.CampaignID
		if v.Template.Name != "" {
			head += fmt.Sprintf(" — template %s/%s", v.Template.Name, v.Template.Language)
		}
		if v.CommandID != "" {
			head += ", command " + v.CommandID
		}
		if v.PhoneNumberID != "" {
			head += ", phone " + v.PhoneNumberID
		}
		if !v.StartedAt.IsZero() {
			head += ", started " + stamp(v.StartedAt)
		}
		if _, err := fmt.Fprintln(p.w, head); err != nil {
			return err
		}
	}
	if p.live {
		_, err := fmt.Fprintf(p.w, "\r\033[K%s", line)
		return err
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}

func (p *campaignPrinter) done() error {
	if p.live && p.printed > 0 {
		_, err := fmt.Fprintln(p.w)
		return err
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
