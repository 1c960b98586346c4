package graph

import "context"

// TemplateRef names an approved template of the account.
type TemplateRef struct {
	Name     string
	Language string // language code, e.g. "en"
}

// SendResult is the synchronous answer to a send: the message id (wamid)
// that status webhooks will carry, and the recipient id Graph resolved
// (the group id for group sends).
type SendResult struct {
	MessageID string
	WAID      string
}

type wireSendResult struct {
	Contacts []struct {
		Input string     `json:"input"`
		WAID  flexString `json:"wa_id"`
	} `json:"contacts"`
	Messages []struct {
		ID flexString `json:"id"`
	} `json:"messages"`
}

type wireLanguage struct {
	Code string `json:"code"`
}

type wireParameter struct {
	Type    string `json:"type"`
	GroupID string `json:"group_id,omitempty"`
}

type wireComponent struct {
	Type       string          `json:"type"`
	Parameters []wireParameter `json:"parameters"`
}

type wireTemplate struct {
	Name       string          `json:"name"`
	Language   wireLanguage    `json:"language"`
	Components []wireComponent `json:"components,omitempty"`
}

type wireText struct {
	Body       string `json:"body"`
	PreviewURL bool   `json:"preview_url,omitempty"`
}

type wireMessage struct {
	MessagingProduct string        `json:"messaging_product"`
	RecipientType    string        `json:"recipient_type"`
	To               string        `json:"to"`
	Type             string        `json:"type"`
	Template         *wireTemplate `json:"template,omitempty"`
	Text             *wireText     `json:"text,omitempty"`
}

// SendGroupInvite sends the group-invite-link template tpl to the user to
// (a phone number or WhatsApp id). Meta replaces the group_id body parameter
// with the group's live invite link at delivery. A send is not idempotent:
// after an error for which IsAmbiguous is true the user may have the
// message.
func (c *Client) SendGroupInvite(ctx context.Context, phoneID, to, groupID string, tpl TemplateRef) (SendResult, error) {
	const ep = EndpointSendGroupInvite
	if err := requireIDs(ep, phoneID, to, groupID, tpl.Name, tpl.Language); err != nil {
		return SendResult{}, err
	}
	return c.sendMessage(ctx, ep, phoneID, wireMessage{
		MessagingProduct: messagingProduct,
		RecipientType:    "individual",
		To:               to,
		Type:             "template",
		Template: &wireTemplate{
			Name:     tpl.Name,
			Language: wireLanguage{Code: tpl.Language},
			Components: []wireComponent{{
				Type:       "body",
				Parameters: []wireParameter{{Type: "group_id", GroupID: groupID}},
			}},
		},
	})
}

// SendGroupText sends a text message to a group. Graph refuses it with
// 131020 while the business is the group's only member.
func (c *Client) SendGroupText(ctx context.Context, phoneID, groupID, body string) (SendResult, error) {
	const ep = EndpointSendGroupText
	if err := requireIDs(ep, phoneID, groupID); err != nil {
		return SendResult{}, err
	}
	if body == "" {
		return SendResult{}, invalid(ep, "empty body")
	}
	return c.sendMessage(ctx, ep, phoneID, wireMessage{
		MessagingProduct: messagingProduct,
		RecipientType:    "group",
		To:               groupID,
		Type:             "text",
		Text:             &wireText{Body: body},
	})
}

func (c *Client) sendMessage(ctx context.Context, ep, phoneID string, msg wireMessage) (SendResult, error) {
	var out wireSendResult
	resp, err := c.call(ctx, request{endpoint: ep, method: "POST", path: "{phone_number_id}/messages", ids: []string{phoneID}, json: msg}, &out)
	if err != nil {
		return SendResult{}, err
	}
	if len(out.Messages) == 0 || out.Messages[0].ID == "" {
		return SendResult{}, c.malformed(ep, resp.status, "no message id")
	}
	res := SendResult{MessageID: string(out.Messages[0].ID)}
	if len(out.Contacts) > 0 {
		res.WAID = string(out.Contacts[0].WAID)
	}
	return res, nil
}
