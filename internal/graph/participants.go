package graph

import (
	"context"
	"strings"
)

// MaxParticipantsPerRemove is the most participants one removal call may
// name (Graph: 1–8).
const MaxParticipantsPerRemove = 8

// RemoveResult is the synchronous outcome of one removal call (one chunk).
// The per-participant outcome arrives in the group_participants_remove
// webhook carrying RequestID; Failed lists participants Graph refused at
// once (HTTP 206, code 131201).
type RemoveResult struct {
	RequestID    string
	Participants []string
	Failed       []ItemFailure
}

type wireRemoveParticipant struct {
	User   string `json:"user,omitempty"`
	UserID string `json:"user_id,omitempty"`
}

type wireRemoveResult struct {
	Success   *flexBool  `json:"success"`
	RequestID flexString `json:"request_id"`
	Failed    []struct {
		Input  flexString      `json:"input"`
		User   flexString      `json:"user"`
		UserID flexString      `json:"user_id"`
		WAID   flexString      `json:"wa_id"`
		Errors []wireItemError `json:"errors"`
	} `json:"failed_participants"`
	Errors []wireItemError `json:"errors"`
}

// RemoveParticipants removes participants (phone numbers or WhatsApp ids;
// business-scoped ids, see IsBSUID, are sent as user_id) from a
// group. Duplicates are dropped (Graph refuses them with 131202), and the
// rest is sent in chunks of MaxParticipantsPerRemove, one call per chunk,
// in order. It stops at the first failed call and returns the results of
// the calls before it: participants in no result were not sent.
func (c *Client) RemoveParticipants(ctx context.Context, groupID string, participants []string) ([]RemoveResult, error) {
	const ep = EndpointRemoveParticipants
	if err := requireIDs(ep, groupID); err != nil {
		return nil, err
	}
	if err := requireIDs(ep, participants...); err != nil {
		return nil, err
	}
	unique := dedupe(participants)
	var results []RemoveResult
	for start := 0; start < len(unique); start += MaxParticipantsPerRemove {
		chunk := unique[start:min(start+MaxParticipantsPerRemove, len(unique))]
		res, err := c.removeChunk(ctx, groupID, chunk)
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// IsBSUID reports whether id is a business-scoped user id: a two-letter
// country code, a dot, then the id itself ("US.13491208655302741918"), the
// form command validation accepts. Anything else is a phone number or a
// WhatsApp id.
func IsBSUID(id string) bool {
	upper := func(b byte) bool { return 'A' <= b && b <= 'Z' }
	return len(id) > 3 && upper(id[0]) && upper(id[1]) && id[2] == '.'
}

func (c *Client) removeChunk(ctx context.Context, groupID string, chunk []string) (RemoveResult, error) {
	const ep = EndpointRemoveParticipants
	entries := make([]wireRemoveParticipant, 0, len(chunk))
	for _, p := range chunk {
		if IsBSUID(p) {
			entries = append(entries, wireRemoveParticipant{UserID: p})
		} else {
			entries = append(entries, wireRemoveParticipant{User: p})
		}
	}
	body := struct {
		MessagingProduct string                  `json:"messaging_product"`
		Participants     []wireRemoveParticipant `json:"participants"`
	}{messagingProduct, entries}
	resp, err := c.send(ctx, request{endpoint: ep, method: "DELETE", path: "{group_id}/participants", ids: []string{groupID}, json: body})
	if err != nil {
		return RemoveResult{}, err
	}
	var out wireRemoveResult
	if err := c.decodeBody(ep, resp, &out); err != nil {
		return RemoveResult{}, err
	}
	res := RemoveResult{RequestID: string(out.RequestID), Participants: chunk}
	for _, f := range out.Failed {
		id := cmpFlex(f.Input, f.User, f.UserID, f.WAID)
		res.Failed = append(res.Failed, ItemFailure{ID: id, Errors: c.itemErrors(f.Errors)})
	}
	switch {
	case len(res.Failed) > 0:
		// Partial: the per-participant outcome is the answer.
		return res, nil
	case resp.graphErr != nil:
		return res, resp.graphErr
	case out.Success != nil && !bool(*out.Success):
		return res, c.redact(&Error{Endpoint: ep, HTTPStatus: resp.status,
			Message: "graph answered success: false", Class: ClassPermanent})
	}
	return res, nil
}

func cmpFlex(vs ...flexString) string {
	for _, v := range vs {
		if v != "" {
			return string(v)
		}
	}
	return ""
}

// dedupe returns ids without repeats, first spelling first. Phone numbers
// are compared without formatting ("+1 555-0100" and "15550100" are one
// user to Graph, which refuses the pair with 131202).
func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		key := id
		if !IsBSUID(id) {
			key = phoneFormatting.Replace(id)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, id)
		}
	}
	return out
}

var phoneFormatting = strings.NewReplacer("+", "", " ", "", "-", "", "(", "", ")", "")
