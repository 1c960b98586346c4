package sim

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Webhook envelope, as Meta sends it: one entry (the WABA) with one change.
type envelope struct {
	Object string          `json:"object"`
	Entry  []envelopeEntry `json:"entry"`
}

type envelopeEntry struct {
	ID      string           `json:"id"`
	Changes []envelopeChange `json:"changes"`
}

type envelopeChange struct {
	Value any    `json:"value"`
	Field string `json:"field"`
}

type metadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

type groupsValue struct {
	MessagingProduct string   `json:"messaging_product"`
	Metadata         metadata `json:"metadata"`
	Groups           []any    `json:"groups"`
}

type messagesValue struct {
	MessagingProduct string         `json:"messaging_product"`
	Metadata         metadata       `json:"metadata"`
	Contacts         []contact      `json:"contacts,omitempty"`
	Messages         []inboundMsg   `json:"messages,omitempty"`
	Statuses         []statusObject `json:"statuses,omitempty"`
}

// Webhook fields.
const (
	fieldLifecycle    = "group_lifecycle_update"
	fieldParticipants = "group_participants_update"
	fieldSettings     = "group_settings_update"
	fieldStatus       = "group_status_update"
	fieldMessages     = "messages"
)

// WebhookRecord is one webhook the simulator produced and what became of it.
type WebhookRecord struct {
	ID    uint64 `json:"id"`
	Field string `json:"field"`
	// Body is the exact JSON that was (or is to be) posted and signed.
	Body json.RawMessage `json:"body"`
	// Duplicate marks the extra copy made by Faults.WebhookDuplicate.
	Duplicate  bool      `json:"duplicate,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	Attempts   int       `json:"attempts"`
	Delivered  bool      `json:"delivered"`
	LastStatus int       `json:"last_status,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	// GaveUp is set when no URL was configured or attempts ran out.
	GaveUp bool `json:"gave_up,omitempty"`
}

type outbound struct {
	rec   *WebhookRecord
	due   time.Time
	order uint64 // ties in due are sent in creation order
	index int
}

type outHeap []*outbound

func (h outHeap) Len() int { return len(h) }
func (h outHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].order < h[j].order
	}
	return h[i].due.Before(h[j].due)
}
func (h outHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *outHeap) Push(x any)   { o := x.(*outbound); o.index = len(*h); *h = append(*h, o) }
func (h *outHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return o
}

// dispatcher schedules webhooks on a due-time heap and posts them from a
// small pool of workers; non-200 answers are rescheduled with backoff.
type dispatcher struct {
	s      *Server
	client *http.Client
	ownTr  *http.Transport // closed on Close when we made the client

	mu       sync.Mutex
	queue    outHeap
	inflight int
	order    uint64
	ids      uint64
	log      []*WebhookRecord // ring
	logNext  int
	logFull  bool

	wake chan struct{}
	work chan *outbound
	wg   sync.WaitGroup
	stop context.CancelFunc
}

func newDispatcher(s *Server) *dispatcher {
	d := &dispatcher{
		s:    s,
		wake: make(chan struct{}, 1),
		work: make(chan *outbound),
		log:  make([]*WebhookRecord, s.cfg.WebhookLogSize),
	}
	d.client = s.cfg.HTTPClient
	if d.client == nil {
		d.ownTr = http.DefaultTransport.(*http.Transport).Clone()
		d.client = &http.Client{Timeout: 10 * time.Second, Transport: d.ownTr}
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	d.wg.Add(1 + s.cfg.WebhookConcurrency)
	go d.schedule(ctx)
	for range s.cfg.WebhookConcurrency {
		go d.worker(ctx)
	}
	return d
}

func (d *dispatcher) close() {
	d.stop()
	d.wg.Wait()
	if d.ownTr != nil {
		d.ownTr.CloseIdleConnections()
	} else {
		d.client.CloseIdleConnections()
	}
}

// emit records a webhook and schedules its delivery
// after WebhookDelay (+ injected extra delay, reordering, duplication).
// extra shifts the due time, e.g. for statuses that follow a send.
// phone is the number whose account is the envelope's entry.
func (d *dispatcher) emit(phone, field string, value any, extra time.Duration) {
	env := envelope{
		Object: "whatsapp_business_account",
		Entry: []envelopeEntry{{
			ID:      d.s.accountOf(phone),
			Changes: []envelopeChange{{Value: value, Field: field}},
		}},
	}
	body, err := json.Marshal(env)
	if err != nil {
		d.s.log.Error("webhook marshal failed", slog.String("field", field), slog.Any("error", err))
		return
	}
	f := d.s.faults.Load().f
	delay := d.s.cfg.WebhookDelay + extra + f.WebhookExtraDelay
	if d.s.hookRand.chance(f.WebhookReorder) {
		delay += time.Duration(d.s.hookRand.int64n(int64(3*d.s.cfg.WebhookDelay) + 1))
	}
	now := time.Now()
	d.schedule1(field, body, false, now.Add(delay))
	if d.s.hookRand.chance(f.WebhookDuplicate) {
		dup := time.Duration(d.s.hookRand.int64n(int64(d.s.cfg.WebhookDelay) + 1))
		d.schedule1(field, body, true, now.Add(delay+dup))
	}
}

func (d *dispatcher) schedule1(field string, body []byte, dup bool, due time.Time) {
	d.mu.Lock()
	d.ids++
	d.order++
	rec := &WebhookRecord{ID: d.ids, Field: field, Body: body, Duplicate: dup, CreatedAt: d.s.clock.Now()}
	d.log[d.logNext] = rec
	d.logNext++
	if d.logNext == len(d.log) {
		d.logNext, d.logFull = 0, true
	}
	heap.Push(&d.queue, &outbound{rec: rec, due: due, order: d.order})
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// schedule hands due webhooks to the workers.
func (d *dispatcher) schedule(ctx context.Context) {
	defer d.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		var next *outbound
		wait := time.Hour
		if len(d.queue) > 0 {
			if w := time.Until(d.queue[0].due); w <= 0 {
				next = heap.Pop(&d.queue).(*outbound)
				d.inflight++
			} else {
				wait = w
			}
		}
		d.mu.Unlock()
		if next != nil {
			select {
			case d.work <- next:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

func (d *dispatcher) worker(ctx context.Context) {
	defer d.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-d.work:
			d.deliver(ctx, o)
		}
	}
}

func (d *dispatcher) deliver(ctx context.Context, o *outbound) {
	target := d.s.webhookURL.Load()
	rec := o.rec
	if target == nil || *target == "" {
		d.mu.Lock()
		rec.GaveUp = true
		d.inflight--
		d.mu.Unlock()
		return
	}
	status, err := d.post(ctx, *target, rec.Body)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	rec.Attempts++
	rec.LastStatus = status
	rec.LastError = ""
	if err != nil {
		rec.LastError = err.Error()
	}
	if status == http.StatusOK {
		rec.Delivered = true
		return
	}
	if ctx.Err() != nil {
		return
	}
	if rec.Attempts >= d.s.cfg.WebhookMaxAttempts {
		rec.GaveUp = true
		d.s.log.Warn("webhook delivery gave up", slog.Uint64("webhook_id", rec.ID),
			slog.String("field", rec.Field), slog.Int("attempts", rec.Attempts), slog.Int("status", status))
		return
	}
	back := d.s.cfg.WebhookRetryBackoff << min(rec.Attempts-1, 20)
	back = min(back, d.s.cfg.WebhookRetryMaxBackoff)
	back = back/2 + time.Duration(d.s.hookRand.int64n(int64(back/2)+1))
	d.order++
	heap.Push(&d.queue, &outbound{rec: rec, due: time.Now().Add(back), order: d.order})
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// post sends one signed webhook; the status is 0 when no answer came.
func (d *dispatcher) post(ctx context.Context, target string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	req.Header.Set("X-Hub-Signature-256", Sign(d.s.cfg.AppSecret, body))
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, scrubURLError(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// scrubURLError drops the URL (it may carry credentials in its query) from
// transport errors before they are logged or recorded.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Sign returns the X-Hub-Signature-256 value for body: "sha256=" + hex of
// HMAC-SHA256(appSecret, body).
func Sign(appSecret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (d *dispatcher) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue) + d.inflight
}

func (d *dispatcher) records() []WebhookRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []WebhookRecord
	add := func(r *WebhookRecord) {
		if r != nil {
			out = append(out, *r)
		}
	}
	if d.logFull {
		for _, r := range d.log[d.logNext:] {
			add(r)
		}
	}
	for _, r := range d.log[:d.logNext] {
		add(r)
	}
	return out
}

func (d *dispatcher) resetLog() {
	d.mu.Lock()
	clear(d.log)
	d.logNext, d.logFull = 0, false
	d.mu.Unlock()
}

// Webhooks returns the remembered webhooks, oldest first.
func (s *Server) Webhooks() []WebhookRecord { return s.hooks.records() }

// ResetWebhooks forgets the remembered webhooks (pending ones are still sent).
func (s *Server) ResetWebhooks() { s.hooks.resetLog() }

// PendingWebhooks counts webhooks scheduled or being delivered.
func (s *Server) PendingWebhooks() int { return s.hooks.pending() }

// SetWebhookURL changes where webhooks go from now on ("" stops sending).
func (s *Server) SetWebhookURL(u string) { s.webhookURL.Store(&u) }
