package graph

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"time"
)

// JoinRequest is a pending request to join a group with approval_required.
type JoinRequest struct {
	ID           string
	WAID         string
	UserID       string
	ParentUserID string
	Username     string
	CreatedAt    time.Time
}

// JoinRequestsPage is one page of pending join requests.
type JoinRequestsPage struct {
	Requests      []JoinRequest
	After, Before string
	HasNext       bool
}

// ItemError is one error of a per-item outcome.
type ItemError struct {
	Code    int
	Title   string
	Message string
	Details string
}

// Class returns the retry class of the item's error code.
func (e ItemError) Class() Class { return Classify(e.Code, 0) }

// ItemFailure is an item (join request, participant) Graph did not process,
// with the reasons it gave.
type ItemFailure struct {
	ID     string
	Errors []ItemError
}

// JoinRequestsResult is the outcome of approving or rejecting join requests.
// Ids in neither list were not reported on by Graph.
type JoinRequestsResult struct {
	Succeeded []string
	Failed    []ItemFailure
	// Errors are request-level errors Graph reported alongside the items.
	Errors []ItemError
}

type wireItemError struct {
	Code      flexInt       `json:"code"`
	Title     string        `json:"title"`
	Message   string        `json:"message"`
	ErrorData wireErrorData `json:"error_data"`
}

func (c *Client) itemErrors(ws []wireItemError) []ItemError {
	if len(ws) == 0 {
		return nil
	}
	out := make([]ItemError, 0, len(ws))
	for _, w := range ws {
		out = append(out, ItemError{
			Code:    int(w.Code),
			Title:   c.redactString(w.Title),
			Message: c.redactString(w.Message),
			Details: c.redactString(w.ErrorData.Details),
		})
	}
	return out
}

type wireJoinRequest struct {
	JoinRequestID     flexString `json:"join_request_id"`
	ID                flexString `json:"id"`
	WAID              flexString `json:"wa_id"`
	UserID            string     `json:"user_id"`
	ParentUserID      string     `json:"parent_user_id"`
	Username          string     `json:"username"`
	CreationTimestamp flexTime   `json:"creation_timestamp"`
}

type wireJoinRequestsPage struct {
	Data   []wireJoinRequest `json:"data"`
	Paging wirePaging        `json:"paging"`
}

// ListJoinRequests returns one page of a group's pending join requests.
func (c *Client) ListJoinRequests(ctx context.Context, groupID string, opts PageOptions) (JoinRequestsPage, error) {
	const ep = EndpointListJoinRequests
	if err := requireIDs(ep, groupID); err != nil {
		return JoinRequestsPage{}, err
	}
	var out wireJoinRequestsPage
	_, err := c.call(ctx, request{endpoint: ep, method: "GET", path: "{group_id}/join_requests", ids: []string{groupID}, query: opts.query(nil)}, &out)
	if err != nil {
		return JoinRequestsPage{}, err
	}
	page := JoinRequestsPage{
		Requests: make([]JoinRequest, 0, len(out.Data)),
		After:    out.Paging.Cursors.After,
		Before:   out.Paging.Cursors.Before,
		HasNext:  out.Paging.hasNext(),
	}
	for _, r := range out.Data {
		id := r.JoinRequestID
		if id == "" {
			id = r.ID
		}
		page.Requests = append(page.Requests, JoinRequest{
			ID: string(id), WAID: string(r.WAID), UserID: r.UserID, ParentUserID: r.ParentUserID,
			Username: r.Username, CreatedAt: r.CreationTimestamp.Time(),
		})
	}
	return page, nil
}

// JoinRequests iterates over every pending join request of a group. It
// yields at most one error, then stops.
func (c *Client) JoinRequests(ctx context.Context, groupID string) iter.Seq2[JoinRequest, error] {
	return paginate(ctx, EndpointListJoinRequests, func(ctx context.Context, after string) ([]JoinRequest, string, bool, error) {
		p, err := c.ListJoinRequests(ctx, groupID, PageOptions{After: after})
		return p.Requests, p.After, p.HasNext, err
	})
}

type wireJoinRequestsResult struct {
	Approved []flexString `json:"approved_join_requests"`
	Rejected []flexString `json:"rejected_join_requests"`
	Failed   []struct {
		JoinRequestID flexString      `json:"join_request_id"`
		Errors        []wireItemError `json:"errors"`
	} `json:"failed_join_requests"`
	Errors []wireItemError `json:"errors"`
}

// ApproveJoinRequests approves join requests in one call. Per-item outcomes
// are in the result, including on a partial (HTTP 206, code 131201) answer,
// which is not an error. An error is returned when Graph refused the whole
// request; when it refused every item, Failed still lists each item's
// reasons.
func (c *Client) ApproveJoinRequests(ctx context.Context, groupID string, ids []string) (JoinRequestsResult, error) {
	return c.joinRequests(ctx, EndpointApproveJoinRequests, "POST", groupID, ids)
}

// RejectJoinRequests rejects join requests in one call; outcomes as for
// ApproveJoinRequests.
func (c *Client) RejectJoinRequests(ctx context.Context, groupID string, ids []string) (JoinRequestsResult, error) {
	return c.joinRequests(ctx, EndpointRejectJoinRequests, "DELETE", groupID, ids)
}

func (c *Client) joinRequests(ctx context.Context, ep, method, groupID string, ids []string) (JoinRequestsResult, error) {
	if err := requireIDs(ep, groupID); err != nil {
		return JoinRequestsResult{}, err
	}
	if len(ids) == 0 {
		return JoinRequestsResult{}, nil
	}
	if err := requireIDs(ep, ids...); err != nil {
		return JoinRequestsResult{}, err
	}
	body := struct {
		MessagingProduct string   `json:"messaging_product"`
		JoinRequests     []string `json:"join_requests"`
	}{messagingProduct, ids}
	resp, err := c.send(ctx, request{endpoint: ep, method: method, path: "{group_id}/join_requests", ids: []string{groupID}, json: body})
	var graphErr *Error
	if err != nil && !errors.As(err, &graphErr) {
		return JoinRequestsResult{}, err
	}
	var out wireJoinRequestsResult
	if graphErr != nil {
		// When every item failed, Graph answers an error status and still
		// lists each item's reasons beside the error object.
		_ = json.Unmarshal(resp.body, &out)
	} else if err := c.decodeBody(ep, resp, &out); err != nil {
		return JoinRequestsResult{}, err
	}
	res := JoinRequestsResult{Errors: c.itemErrors(out.Errors)}
	for _, id := range append(out.Approved, out.Rejected...) {
		res.Succeeded = append(res.Succeeded, string(id))
	}
	for _, f := range out.Failed {
		res.Failed = append(res.Failed, ItemFailure{ID: string(f.JoinRequestID), Errors: c.itemErrors(f.Errors)})
	}
	if graphErr != nil {
		return res, graphErr
	}
	if len(res.Succeeded) > 0 || len(res.Failed) > 0 {
		return res, nil
	}
	// Nothing per item: the request as a whole failed.
	if resp.graphErr != nil {
		return res, resp.graphErr
	}
	if len(res.Errors) > 0 {
		first := res.Errors[0]
		e := &Error{Endpoint: ep, HTTPStatus: resp.status, Code: first.Code, Message: first.Message,
			Details: first.Details, UserTitle: first.Title}
		e.classify(resp.header)
		return res, e
	}
	return res, c.malformed(ep, resp.status, "no per-item outcome")
}
