package sim

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
)

// idGen makes identifiers that look like Meta's. They derive from the seed
// and a counter, so a run with the same seed and the same call order yields
// the same ids, and generating one never takes a lock.
type idGen struct {
	seed uint64
	n    atomic.Uint64
}

func (g *idGen) next() uint64 {
	return splitmix64(g.seed + g.n.Add(1)*0x9E3779B97F4A7C15)
}

func splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (g *idGen) chars(n int, alphabet string) string {
	b := make([]byte, n)
	var v uint64
	for i := range b {
		if i%8 == 0 {
			v = g.next()
		}
		b[i] = alphabet[v%uint64(len(alphabet))]
		v >>= 8
	}
	return string(b)
}

// linkID is the 22-character part of https://chat.whatsapp.com/<LINK_ID>.
func (g *idGen) linkID() string { return g.chars(22, alnum) }

// requestID is UUID-shaped, like the request_id samples on Meta's pages.
func (g *idGen) requestID() string {
	a, b := g.next(), g.next()
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", uint32(a), uint16(a>>32), uint16(a>>48)&0xfff,
		uint16(b)&0x3fff|0x8000, b>>16&0xffffffffffff)
}

// fbtraceID mimics Graph's fbtrace_id (e.g. "A4O5a8RAgePwbcGSu").
func (g *idGen) fbtraceID() string { return "A" + g.chars(16, alnum+"-_") }

// digits returns n decimal digits.
func (g *idGen) digits(n int) string {
	b := make([]byte, n)
	var v uint64
	for i := range b {
		if i%16 == 0 {
			v = g.next()
		}
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b)
}

// groupNumber is the WhatsApp group JID number (120363…, 18 digits).
func (g *idGen) groupNumber() string { return "120363" + g.digits(12) }

// wamid mimics "wamid.HBgL…": base64 of a small binary frame holding the
// recipient and a 20-character hex message key.
func (g *idGen) wamid(recipient string) string {
	if len(recipient) > 200 {
		recipient = recipient[:200]
	}
	key := strings.ToUpper(hex.EncodeToString([]byte(g.chars(10, alnum))))
	frame := make([]byte, 0, len(recipient)+32)
	frame = append(frame, 0x1c, 0x18, byte(len(recipient)))
	frame = append(frame, recipient...)
	frame = append(frame, 0x15, 0x02, 0x00, 0x12, 0x18, byte(len(key)))
	frame = append(frame, key...)
	frame = append(frame, 0x00)
	return "wamid." + base64.StdEncoding.EncodeToString(frame)
}

// conversationID is the 32-hex conversation id of v23-and-older statuses.
func (g *idGen) conversationID() string {
	return fmt.Sprintf("%016x%016x", g.next(), g.next())
}

// numericID is a Graph object id (templates).
func (g *idGen) numericID() string { return "1" + g.digits(15) }

// metaEscape applies Meta's id escaping on top of base64: "Z" → "ZA" and
// "=" → "ZD", so ids use only letters and digits.
func metaEscape(s string) string {
	if !strings.ContainsAny(s, "Z=") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case 'Z':
			b.WriteString("ZA")
		case '=':
			b.WriteString("ZD")
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func metaUnescape(s string) (string, bool) {
	if !strings.Contains(s, "Z") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != 'Z' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		switch s[i+1] {
		case 'A':
			b.WriteByte('Z')
		case 'D':
			b.WriteByte('=')
		default:
			return "", false
		}
		i++
	}
	return b.String(), true
}

func encodeMetaID(plain string) string {
	return metaEscape(base64.StdEncoding.EncodeToString([]byte(plain)))
}

func decodeMetaID(id string) (string, bool) {
	u, ok := metaUnescape(id)
	if !ok {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(u)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(u)
		if err != nil {
			return "", false
		}
	}
	return string(raw), true
}

// groupID is base64("capi_group:<business phone>:<group number>") with
// Meta's escaping, as in the fact sheet §1.
func groupID(businessPhone, groupNumber string) string {
	return encodeMetaID("capi_group:" + businessPhone + ":" + groupNumber)
}

// isGroupIDShape reports whether id decodes like a group id, whether or not
// such a group exists (Graph answers 131041 for those, 100/33 for others).
func isGroupIDShape(id string) bool {
	plain, ok := decodeMetaID(id)
	return ok && strings.HasPrefix(plain, "capi_group:")
}

// joinRequestID is base64("<user phone>:<group number>").
func joinRequestID(waID, groupNumber string) string {
	return encodeMetaID(waID + ":" + groupNumber)
}

// cursor is the paging cursor: base64 JSON with Meta's escaping. Offset is
// the sequence number of the boundary item, which keeps pages stable while
// items are added or removed.
type cursor struct {
	Offset    uint64 `json:"offset"`
	VersionID string `json:"versionId"`
}

func encodeCursor(seq uint64, version string) string {
	b, _ := json.Marshal(cursor{Offset: seq, VersionID: version})
	return encodeMetaID(string(b))
}

func decodeCursor(s, version string) (uint64, bool) {
	plain, ok := decodeMetaID(s)
	if !ok {
		return 0, false
	}
	var c cursor
	if err := json.Unmarshal([]byte(plain), &c); err != nil || c.VersionID != version {
		return 0, false
	}
	return c.Offset, true
}

// isDigits reports whether s is non-empty and only ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// normalizeWAID accepts "+1 650-555-1234" style phone numbers and returns
// the digits, or "" when it cannot be a WhatsApp id.
func normalizeWAID(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "+")
	s = strings.NewReplacer(" ", "", "-", "", "(", "", ")", "").Replace(s)
	if !isDigits(s) || len(s) < 8 || len(s) > 15 {
		return ""
	}
	return s
}

// displayPhone derives the business number shown in webhook metadata from
// the phone number id ("1555" + its last 7 digits), stable per id.
func displayPhone(phoneID string) string {
	tail := phoneID
	if len(tail) > 7 {
		tail = tail[len(tail)-7:]
	}
	return "1555" + strings.Repeat("0", 7-len(tail)) + tail
}

// bsuidFor derives stable business-scoped user ids from a wa_id.
func bsuidFor(seed uint64, waID string) (userID, parentUserID, username string) {
	h := seed
	for i := 0; i < len(waID); i++ {
		h = splitmix64(h ^ uint64(waID[i]))
	}
	userID = fmt.Sprintf("US.1%019d", h%1e19)
	parentUserID = fmt.Sprintf("US.ENT.1%019d", splitmix64(h)%1e19)
	tail := waID
	if len(tail) > 4 {
		tail = tail[len(tail)-4:]
	}
	username = "user" + tail
	return userID, parentUserID, username
}
