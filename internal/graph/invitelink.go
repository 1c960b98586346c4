package graph

import "context"

type wireInviteLink struct {
	InviteLink string `json:"invite_link"`
}

// InviteLink returns the group's current invite link
// (https://chat.whatsapp.com/<LINK_ID>).
func (c *Client) InviteLink(ctx context.Context, groupID string) (string, error) {
	return c.inviteLink(ctx, EndpointGetInviteLink, "GET", groupID)
}

// ResetInviteLink replaces the group's invite link and returns the new one;
// every earlier link stops working. After an ambiguous error the link may
// have changed: read it with InviteLink rather than resetting again.
func (c *Client) ResetInviteLink(ctx context.Context, groupID string) (string, error) {
	return c.inviteLink(ctx, EndpointResetInviteLink, "POST", groupID)
}

func (c *Client) inviteLink(ctx context.Context, ep, method, groupID string) (string, error) {
	if err := requireIDs(ep, groupID); err != nil {
		return "", err
	}
	r := request{endpoint: ep, method: method, path: "{group_id}/invite_link", ids: []string{groupID}}
	if method != "GET" {
		r.json = struct {
			MessagingProduct string `json:"messaging_product"`
		}{messagingProduct}
	}
	var out wireInviteLink
	resp, err := c.call(ctx, r, &out)
	if err != nil {
		return "", err
	}
	if out.InviteLink == "" {
		return "", c.malformed(ep, resp.status, "no invite_link")
	}
	return out.InviteLink, nil
}
