package webhook

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is a small JSON document model for Parse. Decoding webhooks into
// map[string]any with encoding/json was a fifth of the ingest's CPU profile
// (reflection, one allocation per value, a second pass to re-encode every
// item). The tree below decodes a body into two flat, pointer-free slices in
// one pass, refers to strings by their offset in one copy of the body, and
// writes items back in exactly the bytes encoding/json produced for the maps
// (keys sorted, duplicates resolved last-wins, numbers verbatim, the same
// string escaping with HTML escaping off), so MsgIDs and item data are
// unchanged. FuzzTree and testdata/parse-golden.jsonl hold it to that.
//
// Objects behave like the maps they replace: a node index is a reference,
// set and del change the object for every holder of the index.

type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
)

// noNode stands for a missing value (a key not in an object).
const noNode int32 = -1

// maxDepth is encoding/json's nesting limit; deeper documents are refused
// as they are by encoding/json.
const maxDepth = 10000

// A sref locates a string: src[off:off+n], or side[off] when flagSide is
// set (strings decoded from escapes, or made by normalisation). Nodes and
// members hold no pointers, so building the tree costs the garbage
// collector nothing.
type sref struct {
	off, n int32
	flags  uint8
}

const (
	// flagPlain: the string encodes as itself between quotes.
	flagPlain uint8 = 1 << iota
	flagSide
)

type node struct {
	kind kind
	// str is a string's value or a number's literal text.
	str sref
	// first and n locate an array's elements or an object's members in
	// tree.members. An object's members are sorted by key without
	// duplicates, the order encoding/json writes a map in.
	first, n int32
}

type member struct {
	key sref // objects only
	val int32
}

type tree struct {
	src     string
	side    []string
	nodes   []node
	members []member
	stack   []member // members of the containers being parsed
	buf     []byte   // scratch for unquoting and canonical renderings

	// The parser's scratch, kept here to be pooled with the tree.
	items            []Item
	out              []byte   // the items' Data, back to back
	ends             [][2]int // items[i]'s Data is out[ends[i][0]:ends[i][1]]
	ids              []byte   // the items' MsgIDs, back to back
	idKey            []byte   // the MsgID key being built
	objs, left, kept []int32
	below            []int32 // attachOrphanInitiatedBy's stack
	idBuf            []byte
	idSpans          [][2]int
}

var treePool = sync.Pool{New: func() any { return new(tree) }}

// maxPooledNodes keeps a tree decoded from an unusually large body from
// staying in the pool.
const maxPooledNodes = 1 << 16

func getTree() *tree { return treePool.Get().(*tree) }

func putTree(t *tree) {
	if cap(t.nodes) > maxPooledNodes || cap(t.members) > maxPooledNodes || cap(t.side) > maxPooledNodes || cap(t.out) > 1<<20 || cap(t.buf) > 1<<20 {
		return
	}
	// Drop the references into the body so a pooled tree does not keep it.
	clear(t.side)
	clear(t.items)
	*t = tree{
		side: t.side[:0], nodes: t.nodes[:0], members: t.members[:0], stack: t.stack[:0], buf: t.buf[:0],
		items: t.items[:0], out: t.out[:0], ends: t.ends[:0], ids: t.ids[:0], idKey: t.idKey[:0],
		objs: t.objs[:0], left: t.left[:0], kept: t.kept[:0], below: t.below[:0], idBuf: t.idBuf[:0], idSpans: t.idSpans[:0],
	}
	treePool.Put(t)
}

// parse decodes src, which must be exactly one JSON value with optional
// surrounding whitespace, and returns the root node. It accepts what
// encoding/json accepts (invalid UTF-8 in strings included) and nothing
// else.
func (t *tree) parse(src string) (int32, bool) {
	t.src = src
	i := skipSpace(src, 0)
	root, i, ok := t.value(i, 0)
	if !ok {
		return noNode, false
	}
	return root, skipSpace(src, i) == len(src)
}

func skipSpace(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

func (t *tree) add(n node) int32 {
	t.nodes = append(t.nodes, n)
	return int32(len(t.nodes) - 1)
}

func (t *tree) value(i, depth int) (int32, int, bool) {
	s := t.src
	if i >= len(s) {
		return noNode, i, false
	}
	switch c := s[i]; {
	case c == '{':
		return t.object(i+1, depth+1)
	case c == '[':
		return t.array(i+1, depth+1)
	case c == '"':
		str, j, ok := t.str(i + 1)
		if !ok {
			return noNode, j, false
		}
		return t.add(node{kind: kindString, str: str}), j, true
	case c == '-' || c >= '0' && c <= '9':
		j, ok := scanNumber(s, i)
		if !ok {
			return noNode, j, false
		}
		return t.add(node{kind: kindNumber, str: sref{off: int32(i), n: int32(j - i), flags: flagPlain}}), j, true
	case c == 't':
		if strings.HasPrefix(s[i:], "true") {
			return t.add(node{kind: kindTrue}), i + 4, true
		}
	case c == 'f':
		if strings.HasPrefix(s[i:], "false") {
			return t.add(node{kind: kindFalse}), i + 5, true
		}
	case c == 'n':
		if strings.HasPrefix(s[i:], "null") {
			return t.add(node{kind: kindNull}), i + 4, true
		}
	}
	return noNode, i, false
}

// scanNumber returns the end of the number starting at i: JSON's grammar,
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func scanNumber[S ~string | ~[]byte](s S, i int) (int, bool) {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i+1)
	default:
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func skipDigits[S ~string | ~[]byte](s S, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// str decodes the string whose contents start at i (after the opening
// quote). It returns the decoded value and the index after the closing
// quote.
func (t *tree) str(i int) (sref, int, bool) {
	s := t.src
	start := i
	for i < len(s) {
		c := s[i]
		if c == '"' {
			return sref{off: int32(start), n: int32(i - start), flags: flagPlain}, i + 1, true
		}
		if c == '\\' || c < ' ' || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	// Escapes, control characters or non-ASCII: validate as encoding/json's
	// scanner does, then decode as its unquote does.
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			return t.sideString(t.unquote(s[start:i]), 0), i + 1, true
		case c < ' ':
			return sref{}, i, false
		case c == '\\':
			i++
			if i >= len(s) {
				return sref{}, i, false
			}
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(s) || hex4(s[i+1:i+5]) < 0 {
					return sref{}, i, false
				}
				i += 5
			default:
				return sref{}, i, false
			}
		default:
			i++
		}
	}
	return sref{}, i, false
}

// sideString stores s out of src.
func (t *tree) sideString(s string, flags uint8) sref {
	t.side = append(t.side, s)
	return sref{off: int32(len(t.side) - 1), n: int32(len(s)), flags: flags | flagSide}
}

// s returns the string r refers to.
func (t *tree) s(r sref) string {
	if r.flags&flagSide != 0 {
		return t.side[r.off]
	}
	return t.src[r.off : r.off+r.n]
}

func (t *tree) keyOf(m member) string { return t.s(m.key) }

func hex4[S ~string | ~[]byte](s S) rune {
	var r rune
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s string) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	return hex4(s[2:6])
}

// unquote decodes the contents of a valid JSON string exactly as
// encoding/json does: escapes resolved, invalid UTF-8 and unpaired
// surrogates replaced by U+FFFD.
func (t *tree) unquote(s string) string {
	b := t.buf[:0]
	for r := 0; r < len(s); {
		switch c := s[r]; {
		case c == '\\':
			r++
			switch s[r] {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r-1:])
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // '"', '\\', '/'
				b = append(b, s[r])
			}
			r++
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRuneInString(s[r:])
			r += size
			b = utf8.AppendRune(b, rr)
		}
	}
	t.buf = b
	return string(b)
}

func (t *tree) array(i, depth int) (int32, int, bool) {
	if depth > maxDepth {
		return noNode, i, false
	}
	s := t.src
	mark := len(t.stack)
	i = skipSpace(s, i)
	if i < len(s) && s[i] == ']' {
		i++
	} else {
		for {
			v, j, ok := t.value(i, depth)
			if !ok {
				return noNode, j, false
			}
			t.stack = append(t.stack, member{val: v})
			i = skipSpace(s, j)
			if i >= len(s) {
				return noNode, i, false
			}
			if s[i] == ']' {
				i++
				break
			}
			if s[i] != ',' {
				return noNode, i, false
			}
			i = skipSpace(s, i+1)
		}
	}
	return t.close(kindArray, mark), i, true
}

func (t *tree) object(i, depth int) (int32, int, bool) {
	if depth > maxDepth {
		return noNode, i, false
	}
	s := t.src
	mark := len(t.stack)
	i = skipSpace(s, i)
	if i < len(s) && s[i] == '}' {
		i++
	} else {
		for {
			if i >= len(s) || s[i] != '"' {
				return noNode, i, false
			}
			key, j, ok := t.str(i + 1)
			if !ok {
				return noNode, j, false
			}
			i = skipSpace(s, j)
			if i >= len(s) || s[i] != ':' {
				return noNode, i, false
			}
			v, j, ok := t.value(skipSpace(s, i+1), depth)
			if !ok {
				return noNode, j, false
			}
			t.stack = append(t.stack, member{key: key, val: v})
			i = skipSpace(s, j)
			if i >= len(s) {
				return noNode, i, false
			}
			if s[i] == '}' {
				i++
				break
			}
			if s[i] != ',' {
				return noNode, i, false
			}
			i = skipSpace(s, i+1)
		}
		t.stack = t.stack[:mark+t.sortMembers(t.stack[mark:])]
	}
	return t.close(kindObject, mark), i, true
}

// sortMembers sorts an object's members by key, keeping the last of
// duplicate keys as decoding into a map does, and returns how many remain.
func (t *tree) sortMembers(ms []member) int {
	if len(ms) <= 12 {
		// Insertion sort: objects in webhooks have a handful of keys.
		for i := 1; i < len(ms); i++ {
			for j := i; j > 0 && t.s(ms[j].key) < t.s(ms[j-1].key); j-- {
				ms[j], ms[j-1] = ms[j-1], ms[j]
			}
		}
	} else {
		slices.SortStableFunc(ms, func(a, b member) int { return cmp.Compare(t.s(a.key), t.s(b.key)) })
	}
	// Stable order puts the last occurrence of a key last in its run.
	n := 0
	for i := range ms {
		if i+1 < len(ms) && t.s(ms[i+1].key) == t.s(ms[i].key) {
			continue
		}
		ms[n] = ms[i]
		n++
	}
	return n
}

// close turns the members on the stack above mark into a container node.
func (t *tree) close(k kind, mark int) int32 {
	first := len(t.members)
	t.members = append(t.members, t.stack[mark:]...)
	n := len(t.stack) - mark
	t.stack = t.stack[:mark]
	return t.add(node{kind: k, first: int32(first), n: int32(n)})
}

// Accessors. They accept noNode and nodes of any kind.

func (t *tree) kind(v int32) kind {
	if v == noNode {
		return kindNull
	}
	return t.nodes[v].kind
}

func (t *tree) isObject(v int32) bool { return v != noNode && t.nodes[v].kind == kindObject }
func (t *tree) isArray(v int32) bool  { return v != noNode && t.nodes[v].kind == kindArray }

// elems returns a container's members. The slice is only valid until the
// tree changes.
func (t *tree) elems(v int32) []member {
	n := &t.nodes[v]
	return t.members[n.first : n.first+n.n]
}

// text returns a string's value or a number's text, and "" for anything
// else.
func (t *tree) text(v int32) string {
	if v == noNode {
		return ""
	}
	switch n := &t.nodes[v]; n.kind {
	case kindString, kindNumber:
		return t.s(n.str)
	}
	return ""
}

// find returns the position of key among an object's members, or where it
// would be inserted.
func (t *tree) find(obj int32, key string) (int, bool) {
	ms := t.elems(obj)
	if len(ms) <= 8 {
		for i := range ms {
			if k := t.s(ms[i].key); k >= key {
				return i, k == key
			}
		}
		return len(ms), false
	}
	return slices.BinarySearchFunc(ms, key, func(m member, k string) int { return cmp.Compare(t.s(m.key), k) })
}

// get returns obj[key], or noNode.
func (t *tree) get(obj int32, key string) int32 {
	if !t.isObject(obj) {
		return noNode
	}
	if i, ok := t.find(obj, key); ok {
		return t.elems(obj)[i].val
	}
	return noNode
}

func (t *tree) has(obj int32, key string) bool {
	_, ok := t.find(obj, key)
	return ok
}

// set makes obj[key] = val.
func (t *tree) set(obj int32, key string, val int32) {
	i, ok := t.find(obj, key)
	if ok {
		t.elems(obj)[i].val = val
		return
	}
	// The members are contiguous: give the object a new, longer range.
	n := t.nodes[obj]
	first := int32(len(t.members))
	t.members = slices.Grow(t.members, int(n.n)+1)
	old := t.members[n.first : n.first+n.n]
	t.members = append(t.members, old[:i]...)
	t.members = append(t.members, member{key: t.sideString(key, plainFlag(key)), val: val})
	t.members = append(t.members, old[i:]...)
	t.nodes[obj].first, t.nodes[obj].n = first, n.n+1
}

// del removes key from obj.
func (t *tree) del(obj int32, key string) {
	i, ok := t.find(obj, key)
	if !ok {
		return
	}
	ms := t.elems(obj)
	copy(ms[i:], ms[i+1:])
	t.nodes[obj].n--
}

// clone returns a shallow copy of an object, as copying a map does.
func (t *tree) clone(obj int32) int32 {
	first := len(t.members)
	t.members = append(t.members, t.elems(obj)...)
	return t.add(node{kind: kindObject, first: int32(first), n: t.nodes[obj].n})
}

// newArray returns an array node holding vals.
func (t *tree) newArray(vals []int32) int32 {
	first := len(t.members)
	for _, v := range vals {
		t.members = append(t.members, member{val: v})
	}
	return t.add(node{kind: kindArray, first: int32(first), n: int32(len(vals))})
}

func (t *tree) newNumber(text string) int32 {
	return t.add(node{kind: kindNumber, str: t.sideString(text, flagPlain)})
}

func (t *tree) newString(s string) int32 {
	return t.add(node{kind: kindString, str: t.sideString(s, plainFlag(s))})
}

func plainFlag(s string) uint8 {
	if plainString(s) {
		return flagPlain
	}
	return 0
}

// plainString reports whether s encodes as itself between quotes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// appendJSON appends v as encoding/json writes the decoded value (with
// HTML escaping off): objects with sorted keys, numbers as sent, noNode as
// null.
func (t *tree) appendJSON(dst []byte, v int32) []byte {
	if v == noNode {
		return append(dst, "null"...)
	}
	n := t.nodes[v]
	switch n.kind {
	case kindNull:
		return append(dst, "null"...)
	case kindFalse:
		return append(dst, "false"...)
	case kindTrue:
		return append(dst, "true"...)
	case kindNumber:
		return append(dst, t.s(n.str)...)
	case kindString:
		return appendJSONString(dst, t.s(n.str), n.str.flags&flagPlain != 0)
	case kindArray:
		dst = append(dst, '[')
		for i, m := range t.members[n.first : n.first+n.n] {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = t.appendJSON(dst, m.val)
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i, m := range t.members[n.first : n.first+n.n] {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, t.s(m.key), m.key.flags&flagPlain != 0)
			dst = append(dst, ':')
			dst = t.appendJSON(dst, m.val)
		}
		return append(dst, '}')
	}
}

// appendJSONString quotes s; plain says it needs no escaping.
func appendJSONString(dst []byte, s string, plain bool) []byte {
	if plain {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	return appendEscaped(dst, s)
}

const hexDigits = "0123456789abcdef"

// appendEscaped is encoding/json's appendString with escapeHTML false.
func appendEscaped(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are escaped for JSONP's sake, as encoding/json does.
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// compactJSON reports whether b is one valid JSON value without
// insignificant whitespace: what json.Compact (without HTML escaping)
// copies unchanged.
func compactJSON(b []byte) bool {
	i, ok := skipCompact(b, 0, 0)
	return ok && i == len(b)
}

// skipCompact returns the end of the compact JSON value at b[i:].
func skipCompact(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	switch c := b[i]; {
	case c == '{' || c == '[':
		if depth+1 > maxDepth {
			return i, false
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		i++
		if i < len(b) && b[i] == end {
			return i + 1, true
		}
		for {
			var ok bool
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return i, false
				}
				if i, ok = skipString(b, i+1); !ok || i >= len(b) || b[i] != ':' {
					return i, false
				}
				i++
			}
			if i, ok = skipCompact(b, i, depth+1); !ok || i >= len(b) {
				return i, false
			}
			switch b[i] {
			case end:
				return i + 1, true
			case ',':
				i++
			default:
				return i, false
			}
		}
	case c == '"':
		return skipString(b, i+1)
	case c == '-' || c >= '0' && c <= '9':
		return scanNumber(b, i)
	case c == 't':
		return i + 4, bytes.HasPrefix(b[i:], []byte("true"))
	case c == 'f':
		return i + 5, bytes.HasPrefix(b[i:], []byte("false"))
	case c == 'n':
		return i + 4, bytes.HasPrefix(b[i:], []byte("null"))
	}
	return i, false
}

// skipString returns the index after the closing quote of the string
// whose contents start at b[i:], validating it as encoding/json does.
func skipString(b []byte, i int) (int, bool) {
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < ' ':
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+4 >= len(b) || hex4(b[i+1:i+5]) < 0 {
					return i, false
				}
				i += 5
			default:
				return i, false
			}
		default:
			i++
		}
	}
	return i, false
}
