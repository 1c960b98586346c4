package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"io"
	"net/http"
)

// maxChallenge bounds the echoed hub.challenge. Meta sends a short number;
// anything much longer is not Meta.
const maxChallenge = 1024

// Handshake returns the handler for Meta's subscription check: a GET with
// hub.mode=subscribe, hub.verify_token and hub.challenge. When the mode is
// "subscribe" and the token equals verifyToken, it answers 200 with the
// challenge as text/plain; otherwise 403 (400 for a missing or oversized
// challenge). An empty verifyToken never matches, so an unconfigured endpoint
// cannot be subscribed by anyone.
func Handshake(verifyToken string) http.HandlerFunc {
	// Hash once so the per-request comparison is over equal lengths and
	// leaks neither the token nor its length through timing.
	want := sha256.Sum256([]byte(verifyToken))
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		got := sha256.Sum256([]byte(q.Get("hub.verify_token")))
		tokenOK := subtle.ConstantTimeCompare(got[:], want[:]) == 1
		if verifyToken == "" || q.Get("hub.mode") != "subscribe" || !tokenOK {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		challenge := q.Get("hub.challenge")
		if challenge == "" || len(challenge) > maxChallenge {
			http.Error(w, "bad hub.challenge", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// The challenge is caller-chosen text: never let a browser sniff it
		// into HTML.
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, challenge) //nolint:gosec // G705: text/plain and nosniff, as above; Meta's handshake needs the echo
	}
}
