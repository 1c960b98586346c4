package webhook

import (
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// DefaultMaxBody is the default request body limit: Meta caps payloads at
// 3 MB, plus a margin for envelope and encoding slack.
const DefaultMaxBody = 3<<20 + 256<<10

// DefaultPublishTimeout is how long a POST waits for the Publisher by
// default. Meta expects a prompt answer and retries anything else.
const DefaultPublishTimeout = 10 * time.Second

// Handler is Meta's webhook endpoint. GET is the subscription handshake;
// POST verifies the signature on the raw body, splits the delivery into
// items, publishes them and answers 200 only after all are stored, so a
// delivery is either durably accepted or retried by Meta.
//
// POST answers: 413 body over MaxBody, 401 signature missing, 403 signature
// wrong, 400 not a webhook envelope, 503 publishing failed, 500 handler not
// configured; nothing is published in any of these cases except 503, where
// some items may be stored and Meta's retry is deduplicated by MsgID.
type Handler struct {
	// AppSecret is the Meta app secret that keys X-Hub-Signature-256.
	// Required: without it every POST is refused.
	AppSecret []byte
	// VerifyToken is the token configured in Meta's webhook settings for
	// the GET handshake. Empty refuses every handshake.
	VerifyToken string
	// MaxBody caps the request body in bytes. Defaults to DefaultMaxBody.
	MaxBody int64
	// PublishTimeout bounds the wait for Publisher. Defaults to
	// DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Publisher stores the items. Required.
	Publisher Publisher
	// Logger receives one line per refused or failed delivery. Defaults to
	// slog.Default().
	Logger *slog.Logger
	// Metrics counts deliveries by field and result and signature failures
	// by reason. Optional; *telemetry.Metrics satisfies it.
	Metrics Metrics

	macs     macPool
	refusals oncePerSecond
}

// oncePerSecond lets one event a second through (the zero value is ready).
type oncePerSecond struct {
	mu   sync.Mutex
	last time.Time
}

func (o *oncePerSecond) allow(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if now.Sub(o.last) < time.Second {
		return false
	}
	o.last = now
	return true
}

// Metrics is what the handler reports; results are "published",
// "unavailable", "malformed", "too_large" and "signature_invalid".
type Metrics interface {
	Webhook(ctx context.Context, field, result string)
	SignatureFailure(ctx context.Context, reason string)
}

func (h *Handler) count(ctx context.Context, field, result string) {
	if h.Metrics != nil {
		h.Metrics.Webhook(ctx, field, result)
	}
}

func (h *Handler) countItems(ctx context.Context, items []Item, result string) {
	for i := range items {
		h.count(ctx, items[i].Field, result)
	}
}

func (h *Handler) signatureFailure(ctx context.Context, reason string) {
	if h.Metrics != nil {
		h.Metrics.SignatureFailure(ctx, reason)
	}
	h.count(ctx, "unknown", "signature_invalid")
}

// refuseSignature answers a delivery whose signature is missing (401) or
// wrong (403). Anyone can post such requests: the metric counts every one,
// the log says at most one refusal a second, with who sent it. bytes is
// the body's size, or -1 when it was not read.
func (h *Handler) refuseSignature(ctx context.Context, log *slog.Logger, w http.ResponseWriter, r *http.Request, err error, bytes int) {
	missing := errors.Is(err, ErrSignatureMissing)
	if h.refusals.allow(time.Now()) {
		msg := "webhook refused: signature invalid (at most one refusal line a second)"
		if missing {
			msg = "webhook refused: signature missing (at most one refusal line a second)"
		}
		log.WarnContext(ctx, msg, slog.Int("bytes", bytes), slog.String("remote_addr", r.RemoteAddr))
	}
	if missing {
		h.signatureFailure(ctx, "missing")
		http.Error(w, "signature missing", http.StatusUnauthorized)
		return
	}
	h.signatureFailure(ctx, "mismatch")
	http.Error(w, "signature invalid", http.StatusForbidden)
}

var _ http.Handler = (*Handler)(nil)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		Handshake(h.VerifyToken)(w, r)
	case http.MethodPost:
		h.post(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (h *Handler) post(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	log := cmp.Or(h.Logger, slog.Default())
	if len(h.AppSecret) == 0 || h.Publisher == nil {
		log.ErrorContext(ctx, "webhook handler not configured: app secret and publisher are required")
		http.Error(w, "not configured", http.StatusInternalServerError)
		return
	}
	// A request without a well-formed signature cannot be Meta's: it is
	// refused before its body is read, so that unsigned requests cost no
	// memory and no wait for bytes that may never come.
	if err := CheckSignatureHeader(r.Header.Get(SignatureHeader)); err != nil {
		h.refuseSignature(ctx, log, w, r, err, -1)
		return
	}
	limit := cmp.Or(h.MaxBody, DefaultMaxBody)
	if r.ContentLength > limit {
		if h.refusals.allow(time.Now()) {
			log.WarnContext(ctx, "webhook refused: body too large (at most one refusal line a second)", slog.Int64("bytes", r.ContentLength), slog.Int64("limit", limit), slog.String("remote_addr", r.RemoteAddr))
		}
		h.count(ctx, "unknown", "too_large")
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	bp, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			if h.refusals.allow(time.Now()) {
				log.WarnContext(ctx, "webhook refused: body too large (at most one refusal line a second)", slog.Int64("limit", limit), slog.String("remote_addr", r.RemoteAddr))
			}
			h.count(ctx, "unknown", "too_large")
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if h.refusals.allow(time.Now()) {
			log.WarnContext(ctx, "webhook refused: read body (at most one refusal line a second)", slog.String("err", err.Error()), slog.String("remote_addr", r.RemoteAddr))
		}
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	body := *bp
	// Parse copies what it keeps, so the buffer goes back to the pool as
	// soon as the body is verified and parsed.
	defer func() {
		if bp != nil {
			putBody(bp)
		}
	}()

	// Signature first: nothing unauthenticated is parsed.
	if err := h.macs.verify(h.AppSecret, body, r.Header.Get(SignatureHeader)); err != nil {
		h.refuseSignature(ctx, log, w, r, err, len(body))
		return
	}

	items, err := Parse(body)
	putBody(bp)
	bp = nil
	if err != nil {
		log.WarnContext(ctx, "webhook refused: malformed", slog.String("err", err.Error()))
		h.count(ctx, "unknown", "malformed")
		http.Error(w, "malformed webhook", http.StatusBadRequest)
		return
	}
	if len(items) > 0 {
		pctx, cancel := context.WithTimeout(ctx, cmp.Or(h.PublishTimeout, DefaultPublishTimeout))
		err := h.Publisher.Publish(pctx, items)
		cancel()
		if err != nil {
			log.ErrorContext(ctx, "webhook not stored; Meta will retry", slog.Int("items", len(items)), slog.String("err", err.Error()))
			h.countItems(ctx, items, "unavailable")
			http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	h.countItems(ctx, items, "published")
	w.WriteHeader(http.StatusOK)
}

// bodyPool holds request body buffers. Bodies are read whole (the
// signature covers all of them); reusing the buffers spares an allocation
// and, for large deliveries, io.ReadAll's repeated growing and copying.
var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledBody keeps a buffer that held an unusually large delivery out
// of the pool.
const maxPooledBody = 256 << 10

// maxPresize is the most readBody allocates on the strength of a
// Content-Length alone.
const maxPresize = 64 << 10

func putBody(bp *[]byte) {
	if cap(*bp) <= maxPooledBody {
		bodyPool.Put(bp)
	}
}

// readBody reads r to the end into a pooled buffer (give it back with
// putBody), sized up front when the length is known and within limit.
func readBody(r io.Reader, contentLength, limit int64) (*[]byte, error) {
	bp := bodyPool.Get().(*[]byte)
	buf := (*bp)[:0]
	// One byte more than announced lets the read that sees EOF happen
	// without growing the buffer.
	// Sized up front only up to maxPresize: the length is the client's
	// word, and a client that announces megabytes and sends nothing must
	// not get them allocated. Larger bodies grow as their bytes arrive.
	if want := min(contentLength+1, maxPresize); contentLength >= 0 && contentLength <= limit && int64(cap(buf)) < want {
		buf = make([]byte, 0, want)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			putBody(bp)
			return nil, err
		}
	}
	*bp = buf
	return bp, nil
}
