// Package graph is a typed client for the WhatsApp Cloud API's Groups endpoints
// (Graph API), with one Error type whose retry class tells callers whether a
// call may be repeated, must wait, or has failed for good.
//
// Every method takes a context and makes one HTTP exchange per Graph call
// (paging iterators and RemoveParticipants make several, each bounded by
// Config.Timeout). Failures come in three shapes, all understood by ClassOf
// and IsAmbiguous:
//
//   - *Error: Graph answered with an error (or a 2xx answer could not be
//     read). Class follows the code tables of Meta's error pages, never the
//     message text; throttles carry RetryAfter (from Retry-After and the
//     usage headers) and a Scope saying what to pause.
//   - transport failures (dial, timeout, reset): ClassTransient, and
//     ambiguous when the request had been written, because Meta may have
//     executed it. Create group, reset invite link and sends are not
//     idempotent: never repeat them blindly after an ambiguous error.
//   - ErrInvalidArgument: refused locally, nothing was sent.
//
// Meta's answers disagree on JSON types (quoted numbers and booleans, codes as
// strings, lists bare or wrapped in {"data": …}); the decoders accept every
// spelling seen (flex.go) so that one odd field never fails a call.
//
// The access token travels only in the Authorization header. It is never put
// in a URL, and any answer echoing it is redacted before it reaches an error.
package graph
