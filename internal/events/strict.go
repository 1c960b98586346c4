package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// Commands come from services written in any language, so they are read
// strictly: a typo in a field name must be an error the caller sees, not a
// setting silently ignored. encoding/json is lenient (unknown fields,
// case-insensitive names, duplicate keys, null for anything, invalid UTF-8),
// so the body is checked first by checkSyntax and checkShape, which report
// every problem with its path, and only then unmarshalled.

// checkSyntax rejects what encoding/json would tolerate or mangle: invalid
// UTF-8, duplicate object keys and data after the first value.
func checkSyntax(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := walkValue(dec, "", 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("body holds more than one JSON value")
	}
	return nil
}

// MaxNesting is the deepest nesting of objects and arrays a command may
// have. The deepest real command (a campaign's inline invites) has four
// levels; hostile bodies nested hundreds of thousands deep are refused
// before they cost memory or stack.
const MaxNesting = 32

func walkValue(dec *json.Decoder, path string, depth int) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') && depth >= MaxNesting {
		return fmt.Errorf("%s nests objects and arrays deeper than %d levels", describe(path), MaxNesting)
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return syntaxError(err)
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q in %s", key, describe(path))
			}
			seen[key] = true
			if err := walkValue(dec, join(path, key), depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, index(path, i), depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
	}
	return syntaxError(err)
}

func describe(path string) string {
	if path == "" {
		return "the body"
	}
	return path
}

func syntaxError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("body is not JSON: unexpected end of input")
	}
	return fmt.Errorf("body is not JSON: %w", err)
}

// jsonKind names the kind of a syntactically valid JSON value.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// objectFields returns the members of a JSON object in document order.
func objectFields(raw []byte) ([]string, []json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("not an object")
	}
	var keys []string
	var vals []json.RawMessage
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys = append(keys, k.(string))
		vals = append(vals, v)
	}
	return keys, vals, nil
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// checkShape compares a syntactically valid JSON value with the Go type it
// will be decoded into and reports, with full paths, every unknown field
// (names match json tags exactly), every null and every value of the wrong
// JSON kind. It returns the value with those parts removed (array items
// replaced by zero values, so indexes keep their meaning), or nil when the
// value itself is of the wrong kind; json.Unmarshal of what it returns into t
// succeeds, so the rules can still be checked on everything that was right.
func checkShape(path string, raw []byte, t reflect.Type, errs *errorList) []byte {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	kind := jsonKind(raw)
	want := ""
	switch {
	case t == rawMessageType:
		if kind == "null" {
			errs.add(path, "must not be null; leave the field out instead")
			return nil
		}
		return raw
	case t.Kind() == reflect.String:
		want = "a string"
	case t.Kind() == reflect.Bool:
		want = "a boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "a number"
	case t.Kind() == reflect.Slice:
		want = "an array"
	case t.Kind() == reflect.Struct:
		want = "an object"
	default:
		panic("events: checkShape cannot handle " + t.String())
	}
	if kind != want {
		if kind == "null" {
			errs.add(path, "must be %s, not null; leave the field out instead", want)
		} else {
			errs.add(path, "must be %s, not %s", want, kind)
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if json.Unmarshal(raw, reflect.New(t).Interface()) != nil {
			errs.add(path, "must be an integer in range")
			return nil
		}
	case reflect.Slice:
		var items []json.RawMessage
		_ = json.Unmarshal(raw, &items) // kind checked above
		before := len(*errs)
		for i, item := range items {
			if clean := checkShape(index(path, i), item, t.Elem(), errs); clean != nil {
				items[i] = clean
			} else {
				items[i] = zeroJSON(t.Elem())
			}
		}
		if len(*errs) > before {
			raw, _ = json.Marshal(items)
		}
	case reflect.Struct:
		keys, vals, _ := objectFields(raw) // kind checked above
		before := len(*errs)
		var clean bytes.Buffer
		clean.WriteByte('{')
		for i, k := range keys {
			f, ok := fieldByJSONName(t, k)
			if !ok {
				errs.add(join(path, k), "unknown field")
				continue
			}
			v := vals[i]
			if isOptionalString(f) && string(v) == `""` {
				// An optional field is either absent or meaningful, so
				// the schema and the Go types agree on what "" means.
				errs.add(join(path, k), "must not be empty; leave the field out instead")
				continue
			}
			if v = checkShape(join(path, k), v, f.Type, errs); v == nil {
				continue
			}
			if clean.Len() > 1 {
				clean.WriteByte(',')
			}
			name, _ := json.Marshal(k)
			clean.Write(name)
			clean.WriteByte(':')
			clean.Write(v)
		}
		clean.WriteByte('}')
		if len(*errs) > before {
			return clean.Bytes()
		}
	}
	return raw
}

// zeroJSON is the JSON of t's zero value, standing in for a bad array item.
func zeroJSON(t reflect.Type) []byte {
	if t.Kind() == reflect.Slice {
		return []byte("[]")
	}
	b, _ := json.Marshal(reflect.Zero(t).Interface())
	return b
}

// isOptionalString reports whether f is a plain string tagged omitempty.
// Pointers to strings are excluded: there "" is a value (e.g. a description
// cleared by update_group_settings).
func isOptionalString(f reflect.StructField) bool {
	_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
	return f.Type.Kind() == reflect.String && slices.Contains(strings.Split(opts, ","), "omitempty")
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// decodeStrict checks raw against v's type and unmarshals what fits into v.
// It reports whether v was filled; it may be filled and still have errors.
func decodeStrict(path string, raw []byte, v any, errs *errorList) bool {
	clean := checkShape(path, raw, reflect.TypeOf(v), errs)
	if clean == nil {
		return false
	}
	if err := json.Unmarshal(clean, v); err != nil {
		errs.add(path, "%v", err)
		return false
	}
	return true
}

// compact removes insignificant space from a valid JSON value, so stored and
// re-published params are canonical.
func compact(raw []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return json.RawMessage(raw)
	}
	return b.Bytes()
}
