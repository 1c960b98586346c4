package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
)

// msgIDBytes is how much of the SHA-256 an id keeps: 128 bits make a
// collision between distinct webhook items practically impossible while
// keeping ids short in logs and headers.
const msgIDBytes = 16

// digest hashes parts unambiguously (each is length-prefixed) into a hex id.
func digest(parts []string) string {
	h := sha256.New()
	var n [20]byte
	for _, p := range parts {
		h.Write(strconv.AppendInt(n[:0], int64(len(p)), 10))
		h.Write([]byte{':'})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil)[:msgIDBytes])
}

// canonical is a JSON rendering that does not depend on the sender's key
// order or whitespace: maps are written with sorted keys and numbers keep
// their (normalised) text.
func canonical(v any) string {
	return string(marshal(v))
}

// marshal encodes v without HTML escaping (wamids may contain '>').
// Encoding generic JSON values cannot fail.
func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only values decoded from JSON reach here; they always encode.
		panic("webhook: encode normalised item: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
