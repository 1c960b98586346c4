package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"strings"
	"sync"
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
	var sum [sha256.Size]byte
	return verifyMAC(hmac.New(sha256.New, appSecret), &sum, body, header)
}

// verifyMAC is Verify with a fresh (or reset) HMAC state keyed with the app
// secret and room for its sum.
func verifyMAC(m hash.Hash, sum *[sha256.Size]byte, body []byte, header string) error {
	var got [sha256.Size]byte
	if err := parseSignature(got[:], header); err != nil {
		return err
	}
	m.Write(body)
	if !hmac.Equal(got[:], m.Sum(sum[:0])) {
		return ErrSignatureInvalid
	}
	return nil
}

// CheckSignatureHeader says whether header is shaped like a signature
// (ErrSignatureMissing, ErrSignatureInvalid or nil), without the body: a
// request that cannot be Meta's is refused before its body is read.
func CheckSignatureHeader(header string) error {
	var got [sha256.Size]byte
	return parseSignature(got[:], header)
}

// parseSignature decodes an X-Hub-Signature-256 value into dst.
func parseSignature(dst []byte, header string) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrSignatureMissing
	}
	// The algorithm name is compared case-insensitively: it is not secret and
	// some proxies re-case header values.
	if len(header) < len(signaturePrefix) || !strings.EqualFold(header[:len(signaturePrefix)], signaturePrefix) {
		return ErrSignatureInvalid
	}
	if !decodeHex(dst, header[len(signaturePrefix):]) {
		return ErrSignatureInvalid
	}
	return nil
}

// decodeHex decodes s, upper or lower case, into exactly len(dst) bytes.
func decodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHexChar(s[2*i])
		lo, ok2 := fromHexChar(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHexChar(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// macPool keeps keyed HMAC states between requests: keying one (two SHA-256
// states and the padded key) costs more than the MAC of a typical delivery.
// A state remembers its key, so one made for a replaced AppSecret is
// dropped, not used.
type macPool struct{ pool sync.Pool }

type keyedMAC struct {
	key []byte
	mac hash.Hash
	sum [sha256.Size]byte
}

// verify is Verify(appSecret, body, header) with a pooled state.
func (p *macPool) verify(appSecret, body []byte, header string) error {
	if len(appSecret) == 0 {
		return ErrNoAppSecret
	}
	k, _ := p.pool.Get().(*keyedMAC)
	if k == nil || !bytes.Equal(k.key, appSecret) {
		k = &keyedMAC{key: bytes.Clone(appSecret), mac: hmac.New(sha256.New, appSecret)}
	}
	err := verifyMAC(k.mac, &k.sum, body, header)
	k.mac.Reset()
	p.pool.Put(k)
	return err
}

func mac(key, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(body)
	return h.Sum(nil)
}
