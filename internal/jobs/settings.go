package jobs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// Settings named in a settings request's Pending.Items and in the items
// of its result.
const (
	settingSubject     = "subject"
	settingDescription = "description"
	settingPicture     = "profile_picture"
)

// maxPicture is Meta's limit on a group picture.
const maxPicture = 5 << 20

// updateGroupSettings changes subject and description in one call and the
// picture in another; each call's group_settings_update webhook reports
// its settings. Setting a value again is harmless, so both calls are
// retried freely; a call whose request id is recorded is not repeated.
func (w *Worker) updateGroupSettings(ctx context.Context, job *Job) (Result, error) {
	p, err := params[events.UpdateGroupSettingsParams](job)
	if err != nil {
		return Result{}, err
	}
	groupID := job.Command.GroupID
	sent := func(field string) bool {
		return slices.ContainsFunc(job.Entry.Pending, func(pd Pending) bool { return slices.Contains(pd.Items, field) })
	}
	var fields []string
	if p.Subject != nil {
		fields = append(fields, settingSubject)
	}
	if p.Description != nil {
		fields = append(fields, settingDescription)
	}
	if len(fields) > 0 && !sent(fields[0]) {
		var res graph.AsyncResult
		err := w.call(ctx, job, ratelimit.GroupOps, Safe, func(ctx context.Context) (err error) {
			res, err = w.graph.UpdateGroupSettings(ctx, groupID, graph.UpdateSettingsRequest{Subject: p.Subject, Description: p.Description})
			return err
		})
		if err := w.pendSettings(ctx, job, res.RequestID, fields, err); err != nil {
			return Result{}, err
		}
	}
	if p.ProfilePicture != nil && !sent(settingPicture) {
		jpeg, err := w.picture(ctx, *p.ProfilePicture)
		var res graph.AsyncResult
		if err == nil {
			err = w.call(ctx, job, ratelimit.GroupOps, Safe, func(ctx context.Context) (err error) {
				res, err = w.graph.UpdateGroupPicture(ctx, groupID, jpeg)
				return err
			})
		}
		if err := w.pendSettings(ctx, job, res.RequestID, []string{settingPicture}, err); err != nil {
			return Result{}, err
		}
	}
	var waiting []Pending
	for _, pd := range job.Entry.Pending {
		if !pd.Done {
			waiting = append(waiting, pd)
		}
	}
	if len(waiting) == 0 {
		return w.completion(job.Command, job.Entry, false), nil
	}
	return Result{Await: waiting}, nil
}

// pendSettings records the outcome of a settings request: awaiting its
// webhook, or settled at once when Graph gave no request id (the answer is
// all there is) or refused the settings for good (callErr is permanent;
// the other settings of the command go ahead). Any other error is returned
// for a retry.
func (w *Worker) pendSettings(ctx context.Context, job *Job, requestID string, fields []string, callErr error) error {
	p := Pending{RequestID: requestID, Items: fields}
	if errors.Is(callErr, errExpired) && len(job.Entry.Pending) == 0 {
		return callErr // nothing was sent: the command expired as a whole
	}
	if callErr != nil {
		if k, _ := classify(callErr); k != kindPermanent {
			return callErr
		}
		// As any command's permanent failure says it: Graph's code,
		// subcode and type with the message.
		p.Failure = failure(events.ReasonPermanentError, callErr)
		requestID = ""
	}
	if requestID == "" {
		p.RequestID, p.Done = "sync-"+fields[0], true
	}
	return job.AddPending(ctx, p)
}

// picture returns the JPEG bytes of a picture given inline or by URL.
func (w *Worker) picture(ctx context.Context, pic events.Picture) ([]byte, error) {
	if pic.MediaBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(pic.MediaBase64)
		if err != nil {
			return nil, Permanent(fmt.Errorf("profile picture: %w", err))
		}
		return b, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pic.URL, nil)
	if err != nil {
		return nil, Permanent(fmt.Errorf("profile picture URL: %w", err))
	}
	resp, err := w.cfg.HTTPClient.Do(req)
	if errors.Is(err, errNotPublic) {
		// Said alike for every internal address, so the answer tells
		// nothing of what listens there.
		return nil, Permanent(fmt.Errorf("profile picture URL: its host (or a redirect's) is %w", errNotPublic))
	}
	if err != nil {
		return nil, Transient(fmt.Errorf("fetch profile picture: %w", err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, Transient(fmt.Errorf("fetch profile picture: HTTP %d", resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return nil, Permanent(fmt.Errorf("fetch profile picture: HTTP %d", resp.StatusCode))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPicture+1))
	if err != nil {
		return nil, Transient(fmt.Errorf("fetch profile picture: %w", err))
	}
	if len(b) > maxPicture {
		return nil, Permanent(errors.New("profile picture is larger than 5 MB"))
	}
	return b, nil
}
