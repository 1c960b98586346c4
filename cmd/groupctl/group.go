package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/query"
)

// query asks the query service (groups.query.<phone>.<name>) and decodes
// its reply into out.
func (a *app) query(ctx context.Context, phone, name string, req, out any) error {
	if _, err := a.connect(ctx); err != nil {
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	subject := a.names().Query(phone, name)
	rctx, cancel := a.requestCtx(ctx)
	defer cancel()
	msg := nats.NewMsg(subject)
	msg.Data = body
	reply, err := a.nc.RequestMsgWithContext(rctx, msg)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("no query service answers on %s: is a worker running?", subject)
	case err != nil:
		return fmt.Errorf("query %s: %w", subject, err)
	}
	if qe := query.ReplyError(reply); qe != nil {
		msg := fmt.Sprintf("%s: %d %s", name, qe.Code, qe.Message)
		if qe.GraphCode != 0 && !strings.Contains(qe.Message, fmt.Sprintf("code %d", qe.GraphCode)) {
			msg += fmt.Sprintf(" (Graph code %d)", qe.GraphCode)
		}
		if d := qe.RetryAfter(); d > 0 {
			msg += fmt.Sprintf("; retry in %s", d)
		}
		if qe.Code == 400 {
			return usageErrorf("%s", msg)
		}
		return errors.New(msg)
	}
	if err := json.Unmarshal(reply.Data, out); err != nil {
		return fmt.Errorf("%s: unreadable reply: %w", name, err)
	}
	return nil
}

func (a *app) groupCommand() *cobra.Command {
	var phone string
	var asJSON bool
	var fields []string
	info := &cobra.Command{
		Use:   "info <group-id>",
		Short: "Show a group: subject, description, settings and participants",
		Args:  exactArgs("group-id"),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := a.phoneOr(phone)
			if err != nil {
				return err
			}
			var r query.GroupInfoReply
			if err := a.query(c.Context(), p, events.QueryGroupInfo, query.GroupInfoRequest{GroupID: args[0], Fields: fields}, &r); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, r)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
			row("group", r.ID)
			row("subject", r.Subject)
			if r.Description != nil {
				row("description", *r.Description)
			}
			if r.JoinApprovalMode != "" {
				row("join approval", r.JoinApprovalMode)
			}
			if r.Suspended != nil {
				row("suspended", fmt.Sprint(*r.Suspended))
			}
			if !r.CreationTime.IsZero() {
				row("created", stamp(r.CreationTime))
			}
			if r.TotalParticipantCount != nil {
				row("participants", fmt.Sprint(*r.TotalParticipantCount))
			}
			for _, p := range r.Participants {
				row("", queryPerson(p))
			}
			return tw.Flush()
		},
	}
	info.Flags().StringSliceVar(&fields, "fields", nil, "only these Graph fields (subject, description, participants, join_approval_mode, suspended, creation_timestamp, total_participant_count)")

	var limit int
	var after, before string
	list := &cobra.Command{
		Use:   "list",
		Short: "List the number's active groups, one page at a time",
		Args:  exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			p, err := a.phoneOr(phone)
			if err != nil {
				return err
			}
			var r query.ListGroupsReply
			if err := a.query(c.Context(), p, events.QueryListGroups, query.ListGroupsRequest{Limit: limit, After: after, Before: before}, &r); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, r)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSUBJECT\tCREATED")
			for _, g := range r.Groups {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.ID, g.Subject, stamp(g.CreatedAt))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if r.HasNext {
				a.printf("more: groupctl group list --phone %s --after %s\n", p, r.After)
			}
			return nil
		},
	}
	list.Flags().IntVar(&limit, "limit", 0, "page size, 1–1024 (default 25)")
	list.Flags().StringVar(&after, "after", "", "cursor of the next page")
	list.Flags().StringVar(&before, "before", "", "cursor of the previous page")

	requests := &cobra.Command{
		Use:   "join-requests <group-id>",
		Short: "List a group's pending join requests",
		Args:  exactArgs("group-id"),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := a.phoneOr(phone)
			if err != nil {
				return err
			}
			var r query.ListJoinRequestsReply
			req := query.ListJoinRequestsRequest{GroupID: args[0], Limit: limit, After: after, Before: before}
			if err := a.query(c.Context(), p, events.QueryListJoinRequests, req, &r); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, r)
			}
			if len(r.JoinRequests) == 0 {
				a.printf("no pending join requests\n")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REQUEST\tFROM\tSINCE")
			for _, jr := range r.JoinRequests {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", jr.JoinRequestID, queryPerson(jr.Participant), stamp(jr.CreatedAt))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if r.HasNext {
				a.printf("more: groupctl group join-requests %s --phone %s --after %s\n", args[0], p, r.After)
			}
			return nil
		},
	}
	requests.Flags().IntVar(&limit, "limit", 0, "page size, 1–1024")
	requests.Flags().StringVar(&after, "after", "", "cursor of the next page")
	requests.Flags().StringVar(&before, "before", "", "cursor of the previous page")

	link := &cobra.Command{
		Use:   "invite-link <group-id>",
		Short: "Show a group's current invite link",
		Args:  exactArgs("group-id"),
		RunE: func(c *cobra.Command, args []string) error {
			p, err := a.phoneOr(phone)
			if err != nil {
				return err
			}
			var r query.InviteLinkReply
			if err := a.query(c.Context(), p, events.QueryInviteLink, query.InviteLinkRequest{GroupID: args[0]}, &r); err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.stdout, r)
			}
			a.printf("%s\n", r.InviteLink)
			return nil
		},
	}

	c := parentCommand("group", "Read groups through the query service (groups.query.<phone>.<name>)", info, list, requests, link)
	c.PersistentFlags().StringVar(&phone, "phone", "", "business phone number id (env GROUPCTL_PHONE_NUMBER_ID)")
	c.PersistentFlags().BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func queryPerson(p query.ParticipantRef) string {
	parts := []string{}
	for _, s := range []string{p.WAID, p.UserID} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	s := strings.Join(parts, " / ")
	if p.Username != "" {
		s += " (@" + p.Username + ")"
	}
	return s
}
