package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

// SignatureHeader is the header Meta signs every webhook POST with.
const SignatureHeader = "X-Hub-Signature-256"

// signaturePrefix names the algorithm in the header value.
const signaturePrefix = "sha256="

var (
	// ErrSignatureMissing means the request carried no X-Hub-Signature-256.
	ErrSignatureMissing = errors.New("webhook: signature missing")
	// ErrSignatureInvalid means the signature is malformed or does not match
	// the body. The error never says what was expected: that would hand an
	// attacker a valid signature.
	ErrSignatureInvalid = errors.New("webhook: signature invalid")
	// ErrNoAppSecret means Verify was called without an app secret: an empty
	// key would let anyone sign.
	ErrNoAppSecret = errors.New("webhook: app secret is empty")
)

// Sign returns the X-Hub-Signature-256 value Meta would send for body:
// "sha256=" followed by the hex HMAC-SHA256 of body keyed with appSecret.
// The simulator and tests use it to sign what they deliver.
func Sign(appSecret, body []byte) string {
	return signaturePrefix + hex.EncodeToString(mac(appSecret, body))
}

// Verify checks header (the X-Hub-Signature-256 value) against the raw body.
// It must run on the bytes exactly as received, before any JSON decoding.
// The comparison is constant-time. It returns nil, ErrSignatureMissing,
// ErrSignatureInvalid or ErrNoAppSecret.
func Verify(appSecret, body []byte, header string) error {
	if len(appSecret) == 0 {
		return ErrNoAppSecret
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrSignatureMissing
	}
	// The algorithm name is compared case-insensitively: it is not secret and
	// some proxies re-case header values.
	if len(header) < len(signaturePrefix) || !strings.EqualFold(header[:len(signaturePrefix)], signaturePrefix) {
		return ErrSignatureInvalid
	}
	got, err := hex.DecodeString(header[len(signaturePrefix):])
	if err != nil || len(got) != sha256.Size {
		return ErrSignatureInvalid
	}
	if !hmac.Equal(got, mac(appSecret, body)) {
		return ErrSignatureInvalid
	}
	return nil
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}
