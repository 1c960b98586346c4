package graph

import "context"

type wirePhoneNumber struct {
	ID flexString `json:"id"`
}

// AccountPhoneNumbers returns the phone number ids of the WhatsApp Business
// Account wabaID (GET /{WABA_ID}/phone_numbers), following pages.
func (c *Client) AccountPhoneNumbers(ctx context.Context, wabaID string) ([]string, error) {
	const ep = EndpointAccountPhoneNumbers
	if err := requireIDs(ep, wabaID); err != nil {
		return nil, err
	}
	var out []string
	for n, err := range paginate(ctx, ep, func(ctx context.Context, after string) ([]wirePhoneNumber, string, bool, error) {
		var page wireList[wirePhoneNumber]
		_, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "{waba_id}/phone_numbers", ids: []string{wabaID},
			query: PageOptions{After: after}.query(nil)}, &page)
		return page.Data, page.Paging.Cursors.After, page.Paging.hasNext(), err
	}) {
		if err != nil {
			return out, err
		}
		out = append(out, string(n.ID))
	}
	return out, nil
}
