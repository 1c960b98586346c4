package graph

import (
	"cmp"
	"context"
	"encoding/json"
	"net/url"
)

// LibraryQuery filters the template library. Empty fields are not sent.
type LibraryQuery struct {
	Category string // e.g. "utility"
	Topic    string // e.g. "group_invite_link"
	Usecase  string
	Industry string
	Language string // e.g. "en"
	Name     string
	Search   string
}

func (q LibraryQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{
		"category": q.Category, "topic": q.Topic, "usecase": q.Usecase, "industry": q.Industry,
		"language": q.Language, "name": q.Name, "search": q.Search,
	} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

// LibraryTemplate is a template of Meta's template library.
type LibraryTemplate struct {
	ID       string
	Name     string
	Language string
	Category string
	Topic    string
	Usecase  string
	Header   string
	Body     string
	// Buttons are kept raw: their shape varies by button type, and adding
	// the template to an account only needs to echo inputs for them.
	Buttons []json.RawMessage
}

type wireLibraryTemplate struct {
	ID       flexString        `json:"id"`
	Name     string            `json:"name"`
	Language string            `json:"language"`
	Category string            `json:"category"`
	Topic    string            `json:"topic"`
	Usecase  string            `json:"usecase"`
	Header   string            `json:"header"`
	Body     string            `json:"body"`
	Buttons  []json.RawMessage `json:"buttons"`
}

type wireList[T any] struct {
	Data   []T        `json:"data"`
	Paging wirePaging `json:"paging"`
}

// TemplateLibrary returns every library template matching q, following
// pages.
func (c *Client) TemplateLibrary(ctx context.Context, q LibraryQuery) ([]LibraryTemplate, error) {
	const ep = EndpointTemplateLibrary
	var out []LibraryTemplate
	for t, err := range paginate(ctx, ep, func(ctx context.Context, after string) ([]wireLibraryTemplate, string, bool, error) {
		var page wireList[wireLibraryTemplate]
		_, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "message_template_library",
			query: PageOptions{After: after}.query(q.values())}, &page)
		return page.Data, page.Paging.Cursors.After, page.Paging.hasNext(), err
	}) {
		if err != nil {
			return out, err
		}
		out = append(out, LibraryTemplate{
			ID: string(t.ID), Name: t.Name, Language: t.Language, Category: t.Category, Topic: t.Topic,
			Usecase: t.Usecase, Header: t.Header, Body: t.Body, Buttons: t.Buttons,
		})
	}
	return out, nil
}

// AccountTemplate is a message template of a WhatsApp Business Account.
type AccountTemplate struct {
	ID       string
	Name     string
	Language string
	// Status is APPROVED, PENDING, REJECTED, PAUSED, DISABLED, …
	Status   string
	Category string
}

type wireAccountTemplate struct {
	ID       flexString `json:"id"`
	Name     string     `json:"name"`
	Language string     `json:"language"`
	Status   string     `json:"status"`
	Category string     `json:"category"`
}

// AccountTemplates returns the templates of wabaID whose name matches name
// (Graph's name filter; compare names exactly if that matters), following
// pages. An empty name lists every template.
func (c *Client) AccountTemplates(ctx context.Context, wabaID, name string) ([]AccountTemplate, error) {
	const ep = EndpointAccountTemplates
	if err := requireIDs(ep, wabaID); err != nil {
		return nil, err
	}
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	var out []AccountTemplate
	for t, err := range paginate(ctx, ep, func(ctx context.Context, after string) ([]wireAccountTemplate, string, bool, error) {
		var page wireList[wireAccountTemplate]
		_, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "{waba_id}/message_templates", ids: []string{wabaID},
			query: PageOptions{After: after}.query(cloneValues(q))}, &page)
		return page.Data, page.Paging.Cursors.After, page.Paging.hasNext(), err
	}) {
		if err != nil {
			return out, err
		}
		out = append(out, AccountTemplate{ID: string(t.ID), Name: t.Name, Language: t.Language, Status: t.Status, Category: t.Category})
	}
	return out, nil
}

// AddTemplateRequest copies a library template into an account unchanged
// (editing it would lose utility pricing).
type AddTemplateRequest struct {
	// Name is the template's name in the account.
	Name string
	// Category is the account category, e.g. "UTILITY".
	Category string
	Language string
	// LibraryTemplateName is LibraryTemplate.Name.
	LibraryTemplateName string
	// ButtonInputs are library_template_button_inputs, needed only when the
	// library template has buttons.
	ButtonInputs []json.RawMessage
}

// AddLibraryTemplate creates a template in wabaID from a library template.
// Approval may take up to 24 h: Status is usually PENDING or APPROVED.
func (c *Client) AddLibraryTemplate(ctx context.Context, wabaID string, req AddTemplateRequest) (AccountTemplate, error) {
	const ep = EndpointAddLibraryTemplate
	if err := requireIDs(ep, wabaID); err != nil {
		return AccountTemplate{}, err
	}
	body := struct {
		MessagingProduct    string            `json:"messaging_product"`
		Name                string            `json:"name"`
		Category            string            `json:"category"`
		Language            string            `json:"language"`
		LibraryTemplateName string            `json:"library_template_name"`
		ButtonInputs        []json.RawMessage `json:"library_template_button_inputs,omitempty"`
	}{messagingProduct, req.Name, req.Category, req.Language, req.LibraryTemplateName, req.ButtonInputs}
	var out wireAccountTemplate
	resp, err := c.call(ctx, request{endpoint: ep, method: "POST", path: "{waba_id}/message_templates", ids: []string{wabaID}, json: body}, &out)
	if err != nil {
		return AccountTemplate{}, err
	}
	if out.ID == "" {
		return AccountTemplate{}, c.malformed(ep, resp.status, "no template id")
	}
	return AccountTemplate{
		ID:       string(out.ID),
		Name:     cmp.Or(out.Name, req.Name),
		Language: cmp.Or(out.Language, req.Language),
		Status:   out.Status,
		Category: cmp.Or(out.Category, req.Category),
	}, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
