package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/groupflow/groupflow/internal/events"
)

// renderEvent is one event as a line a person reads:
//
//	14:02:07 group.created               group 120363… "Book club" (command demo-create)
//
// The time is the event's (for domain events, when Meta says it happened),
// in local time.
func renderEvent(e event.Event) string {
	return fmt.Sprintf("%s %-27s %s", e.Time().Local().Format("15:04:05"), e.Type(), describe(e))
}

// describe is the part of the line after the type.
func describe(e event.Event) string {
	d, err := events.DataOf(e)
	if err != nil {
		// A type newer than this groupctl, or data it cannot read.
		return strings.TrimSpace(e.Subject() + " " + truncate(string(e.Data()), 160))
	}
	switch d := d.(type) {
	case *events.CommandResult:
		return describeResult(d)
	case *events.GroupCreated:
		s := fmt.Sprintf("group %s %q", d.GroupID, d.Subject)
		if d.JoinApprovalMode == events.JoinApprovalRequired {
			s += " (join approval required)"
		}
		return s + byCommand(d.CommandID)
	case *events.GroupCreateFailed:
		return fmt.Sprintf("%q: %s", d.Subject, graphErrors(d.Errors)) + byCommand(d.CommandID)
	case *events.GroupDeleted:
		return "group " + d.GroupID + byCommand(d.CommandID)
	case *events.GroupSettingsUpdated:
		var parts []string
		if u := d.Subject; u != nil {
			parts = append(parts, "subject "+settingOutcome(strconv.Quote(u.Text), u.Updated, u.Errors))
		}
		if u := d.Description; u != nil {
			parts = append(parts, "description "+settingOutcome(strconv.Quote(truncate(u.Text, 40)), u.Updated, u.Errors))
		}
		if u := d.ProfilePicture; u != nil {
			parts = append(parts, "picture "+settingOutcome("", u.Updated, u.Errors))
		}
		if len(d.Errors) > 0 {
			parts = append(parts, graphErrors(d.Errors))
		}
		return fmt.Sprintf("group %s: %s", d.GroupID, strings.Join(parts, ", ")) + byCommand(d.CommandID)
	case *events.ParticipantsJoined:
		s := fmt.Sprintf("group %s: %s joined", d.GroupID, people(d.Participants))
		if d.Reason != "" {
			s += " via " + strings.ReplaceAll(d.Reason, "_", " ")
		}
		if d.CommandID != "" {
			s += " (approved by " + d.CommandID + ")"
		}
		return s
	case *events.ParticipantsRemoved:
		s := fmt.Sprintf("group %s: %s removed", d.GroupID, people(d.Removed))
		if d.InitiatedBy != "" && d.InitiatedBy != events.InitiatedByBusiness {
			s += " by " + d.InitiatedBy
		}
		for _, f := range d.Failed {
			s += fmt.Sprintf("; %s not removed: %s", person(f.Participant), graphErrors(f.Errors))
		}
		if len(d.Errors) > 0 {
			s += "; " + graphErrors(d.Errors)
		}
		return s + byCommand(d.CommandID)
	case *events.ParticipantLeft:
		return fmt.Sprintf("group %s: %s left", d.GroupID, person(d.Participant))
	case *events.JoinRequestCreated:
		return fmt.Sprintf("group %s: %s asks to join (request %s)", d.GroupID, person(d.Participant), d.JoinRequestID)
	case *events.JoinRequestRevoked:
		return fmt.Sprintf("group %s: %s withdrew request %s", d.GroupID, person(d.Participant), d.JoinRequestID)
	case *events.GroupSuspended:
		return "group " + d.GroupID + " suspended by Meta: sends fail with 131207"
	case *events.GroupSuspensionCleared:
		return "group " + d.GroupID + " may send again"
	case *events.MessageStatus:
		to := cmp.Or(d.RecipientID, d.RecipientUserID, "an unnamed recipient")
		if p := cmp.Or(d.ParticipantID, d.ParticipantUserID); p != "" {
			to = p + " in group " + d.GroupID
		}
		s := fmt.Sprintf("%s: message %s to %s", d.Status, d.MessageID, to)
		if len(d.Errors) > 0 {
			s += ": " + graphErrors(d.Errors)
		}
		if d.CampaignID != "" {
			s += " (campaign " + d.CampaignID + ")"
		} else if d.CommandID != "" {
			s += " (command " + d.CommandID + ")"
		}
		return s
	case *events.CampaignStarted:
		return fmt.Sprintf("campaign %s: %d invites with template %s/%s", d.CampaignID, d.Total, d.Template.Name, d.Template.Language) + byCommand(d.CommandID)
	case *events.CampaignProgress:
		s := fmt.Sprintf("campaign %s: %s", d.CampaignID, countsLine(d.Counts, 20))
		if d.State != "" && d.State != events.CampaignStateRunning {
			s += " — " + d.State
		}
		if d.PausedUntil != nil {
			s += " until " + d.PausedUntil.Local().Format("15:04:05")
		}
		if d.Reason != "" {
			s += " (" + d.Reason + ")"
		}
		return s
	case *events.CampaignCompleted:
		return fmt.Sprintf("campaign %s %s: %s", d.CampaignID, d.State, countsLine(d.Counts, 20))
	case *events.CampaignInviteeJoined:
		return fmt.Sprintf("campaign %s: %s joined group %s", d.CampaignID, d.To, d.GroupID)
	}
	return e.Subject()
}

func describeResult(r *events.CommandResult) string {
	s := r.CommandType + " " + r.CommandID
	var detail []string
	switch r.Outcome {
	case events.OutcomeSucceeded, events.OutcomePartiallySucceeded:
		if x := resultSummary(r.CommandType, r.Result); x != "" {
			detail = append(detail, x)
		}
		if len(r.Items) > 0 {
			detail = append(detail, itemsSummary(r))
		}
		if r.GroupID != "" && r.CommandType != events.CreateGroup {
			s += " on group " + r.GroupID
		}
	case events.OutcomeFailed:
		if fi := r.Error; fi != nil {
			x := strings.ReplaceAll(fi.Reason, "_", " ")
			if fi.Code != 0 {
				x += fmt.Sprintf(" (code %d)", fi.Code)
			}
			if fi.Message != "" {
				x += ": " + truncate(fi.Message, 200)
			}
			detail = append(detail, x)
		}
	case events.OutcomeRejected:
		parts := make([]string, 0, len(r.ValidationErrors))
		for _, fe := range r.ValidationErrors {
			parts = append(parts, strings.TrimPrefix(fe.Field+": "+fe.Message, ": "))
		}
		detail = append(detail, "invalid: "+strings.Join(parts, "; "))
	}
	if r.Attempts > 1 {
		detail = append(detail, fmt.Sprintf("after %d attempts", r.Attempts))
	}
	if len(detail) == 0 {
		return s
	}
	return s + ": " + strings.Join(detail, ", ")
}

// resultSummary reads the typed result of a succeeded command.
func resultSummary(cmdType string, raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	switch cmdType {
	case events.CreateGroup:
		var r events.CreateGroupResult
		if json.Unmarshal(raw, &r) == nil {
			s := "group " + r.GroupID
			if r.InviteLink != "" {
				s += " link " + r.InviteLink
			}
			return s
		}
	case events.GetInviteLink, events.ResetInviteLink:
		var r events.InviteLinkResult
		if json.Unmarshal(raw, &r) == nil {
			return "link " + r.InviteLink
		}
	case events.EnsureInviteTemplate:
		var r events.EnsureInviteTemplateResult
		if json.Unmarshal(raw, &r) == nil {
			how := "already there"
			if r.Created {
				how = "created"
			}
			return fmt.Sprintf("template %s/%s %s, %s", r.Name, r.Language, r.Status, how)
		}
	case events.SendGroupInvite:
		var r events.SendGroupInviteResult
		if json.Unmarshal(raw, &r) == nil {
			return "message " + r.MessageID
		}
	case events.StartInviteCampaign, events.CancelCampaign:
		var r events.CampaignResult
		if json.Unmarshal(raw, &r) == nil {
			return "campaign " + r.CampaignID + " " + countsLine(r.Counts, 0)
		}
	}
	return truncate(string(raw), 160)
}

// itemsSummary counts per-item outcomes and names the failures:
// "2 approved, 1 failed (555…: 131213 request no longer exists)".
// itemsSummary counts a bulk command's items by outcome and names its
// first failures. The counts are the result's own where it has them: a
// long list (an all_pending of thousands) is cut at events.MaxItems.
func itemsSummary(r *events.CommandResult) string {
	counts := map[string]int{}
	var order []string
	var failures []string
	for _, it := range r.Items {
		if counts[it.Outcome] == 0 {
			order = append(order, it.Outcome)
		}
		counts[it.Outcome]++
		if it.Outcome == events.ItemFailed && len(failures) < 3 {
			failures = append(failures, strings.TrimSpace(fmt.Sprintf("%s: %s %s", it.ID, codeStr(it.Code), it.Reason)))
		}
	}
	if c := r.ItemCounts; c != nil {
		counts = map[string]int{events.ItemApproved: c.Approved, events.ItemRejected: c.Rejected,
			events.ItemRemoved: c.Removed, events.ItemFailed: c.Failed}
		order = slices.DeleteFunc([]string{events.ItemApproved, events.ItemRejected, events.ItemRemoved, events.ItemFailed},
			func(o string) bool { return counts[o] == 0 })
	}
	parts := make([]string, 0, len(order))
	for _, o := range order {
		parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
	}
	s := strings.Join(parts, ", ")
	if len(failures) > 0 {
		s += " (" + strings.Join(failures, "; ") + ")"
	}
	return s
}

func codeStr(code int) string {
	if code == 0 {
		return ""
	}
	return strconv.Itoa(code)
}

// byCode renders counts by Graph code as " (131026×3, 131049×1)", or ""
// when there are none.
func byCode(counts map[string]int) string {
	if len(counts) == 0 {
		return ""
	}
	codes := slices.Sorted(maps.Keys(counts))
	parts := make([]string, len(codes))
	for i, code := range codes {
		parts[i] = fmt.Sprintf("%s×%d", code, counts[code])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// countsLine shows campaign counters, with a progress bar when width > 0.
func countsLine(c events.CampaignCounts, width int) string {
	done := c.Total - c.Pending
	s := fmt.Sprintf("%d/%d done: %d sent, %d failed", done, c.Total, c.Sent, c.Failed)
	s += byCode(c.FailedByCode)
	if c.Cancelled > 0 {
		s += fmt.Sprintf(", %d cancelled", c.Cancelled)
	}
	if c.Unknown > 0 {
		s += fmt.Sprintf(", %d unknown", c.Unknown)
	}
	if c.Duplicates > 0 {
		s += fmt.Sprintf(", %d duplicates", c.Duplicates)
	}
	if c.Delivered > 0 || c.Read > 0 {
		s += fmt.Sprintf(", %d delivered, %d read", c.Delivered, c.Read)
	}
	if c.Undelivered > 0 {
		s += fmt.Sprintf(", %d undelivered", c.Undelivered) + byCode(c.UndeliveredByCode)
	}
	s += fmt.Sprintf(", %d joined", c.Joined)
	if width > 0 {
		s = progressBar(done, c.Total, width) + " " + s
	}
	return s
}

// progressBar draws done of total as [#####-----] 50%.
func progressBar(done, total, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat("-", width) + "]   0%"
	}
	done = min(max(done, 0), total)
	filled := done * width / total
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", filled), strings.Repeat("-", width-filled), done*100/total)
}

func byCommand(id string) string {
	if id == "" {
		return ""
	}
	return " (command " + id + ")"
}

func settingOutcome(what string, updated bool, errs []events.GraphError) string {
	s := what
	if s != "" {
		s += " "
	}
	if updated {
		return s + "updated"
	}
	if len(errs) > 0 {
		return s + "not updated: " + graphErrors(errs)
	}
	return s + "not updated"
}

func graphErrors(errs []events.GraphError) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		msg := e.Message
		if msg == "" {
			msg = e.Title
		}
		parts = append(parts, strings.TrimSpace(fmt.Sprintf("%d %s", e.Code, truncate(msg, 120))))
	}
	if len(parts) == 0 {
		return "no details"
	}
	return strings.Join(parts, "; ")
}

func people(ps []events.ParticipantRef) string {
	if len(ps) == 0 {
		return "nobody"
	}
	names := make([]string, 0, min(len(ps), 6))
	for i, p := range ps {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(ps)-5))
			break
		}
		names = append(names, person(p))
	}
	return strings.Join(names, ", ")
}

// person names a participant by what Meta gave: phone-based id first.
func person(p events.ParticipantRef) string {
	id := p.WAID
	if id == "" {
		id = p.UserID
	}
	if id == "" {
		id = p.Input
	}
	if id == "" {
		id = "someone"
	}
	if p.Username != "" {
		id += " (@" + p.Username + ")"
	}
	return id
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
