package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// msgIDBytes is how much of the SHA-256 an id keeps: 128 bits make a
// collision between distinct webhook items practically impossible while
// keeping ids short in logs and headers.
const msgIDBytes = 16

// A MsgID is the truncated SHA-256 of a key made of parts, each written as
// its length in decimal, ':' and its bytes, so that no two lists of parts
// share a key. The parser builds the key in a reused buffer (tree.idKey) and
// hashes it once; canonical renderings of objects are encoding/json's (keys
// sorted, numbers as normalised), so a re-serialised redelivery gets the
// same id.

// part appends one part to the key.
func (p *parser) part(s string) {
	p.t.idKey = strconv.AppendInt(p.t.idKey, int64(len(s)), 10)
	p.t.idKey = append(p.t.idKey, ':')
	p.t.idKey = append(p.t.idKey, s...)
}

func (p *parser) partBytes(b []byte) {
	p.t.idKey = strconv.AppendInt(p.t.idKey, int64(len(b)), 10)
	p.t.idKey = append(p.t.idKey, ':')
	p.t.idKey = append(p.t.idKey, b...)
}

// partJSON appends the canonical JSON of v (null for noNode).
func (p *parser) partJSON(v int32) {
	t := p.t
	t.buf = t.appendJSON(t.buf[:0], v)
	p.partBytes(t.buf)
}

// appendMsgID hashes the key into a hex id appended to t.ids.
func (p *parser) appendMsgID() {
	sum := sha256.Sum256(p.t.idKey)
	var id [2 * msgIDBytes]byte
	hex.Encode(id[:], sum[:msgIDBytes])
	p.t.ids = append(p.t.ids, id[:]...)
}
