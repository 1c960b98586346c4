package graph

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Meta's samples and live answers disagree on JSON types: numbers come quoted
// ("created_at": "1755548877"), booleans come quoted ("suspended": "false",
// "success": "true"), error codes come as strings. The types in this file
// accept every spelling seen so that one inconsistent field never fails a
// whole answer. They are unexported: callers see plain Go types.

// flexInt is an integer sent as a JSON number or a quoted number. null, ""
// and absent all mean 0.
type flexInt int64

func (n *flexInt) UnmarshalJSON(b []byte) error {
	s, ok := unquote(b)
	if !ok {
		return &json.UnmarshalTypeError{Value: string(b), Type: typeOfFlexInt}
	}
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = flexInt(i)
		return nil
	}
	// Some encoders write 1.755548877e+09 or 12.0; accept integral floats.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.IsInf(f, 0) || f > math.MaxInt64 || f < math.MinInt64 {
		return &json.UnmarshalTypeError{Value: "number " + s, Type: typeOfFlexInt}
	}
	*n = flexInt(f)
	return nil
}

// flexFloat is a number sent bare or quoted (usage percentages).
type flexFloat float64

func (f *flexFloat) UnmarshalJSON(b []byte) error {
	s, ok := unquote(b)
	if !ok {
		return &json.UnmarshalTypeError{Value: string(b), Type: typeOfFlexFloat}
	}
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return &json.UnmarshalTypeError{Value: "number " + s, Type: typeOfFlexFloat}
	}
	*f = flexFloat(v)
	return nil
}

// flexBool is a boolean sent as true/false, "true"/"false" or 1/0 (quoted or
// not). null, "" and absent mean false.
type flexBool bool

func (v *flexBool) UnmarshalJSON(b []byte) error {
	s, ok := unquote(b)
	if !ok {
		return &json.UnmarshalTypeError{Value: string(b), Type: typeOfFlexBool}
	}
	switch strings.ToLower(s) {
	case "true", "1":
		*v = true
	case "false", "0", "", "null":
		*v = false
	default:
		return &json.UnmarshalTypeError{Value: s, Type: typeOfFlexBool}
	}
	return nil
}

// flexTime is a Unix time in seconds sent as a number or a quoted number.
// 0, null, "" and absent give the zero time.
type flexTime time.Time

func (t *flexTime) UnmarshalJSON(b []byte) error {
	var n flexInt
	if err := n.UnmarshalJSON(b); err != nil {
		return err
	}
	if n == 0 {
		*t = flexTime{}
		return nil
	}
	*t = flexTime(time.Unix(int64(n), 0).UTC())
	return nil
}

// Time returns t as a time.Time.
func (t flexTime) Time() time.Time { return time.Time(t) }

// flexString is an identifier sent as a string or as a bare number (ids such
// as a template's are numeric and some encoders do not quote them).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	case string(b) == "null":
		*s = ""
	case len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9')):
		var num json.Number
		if err := json.Unmarshal(b, &num); err != nil {
			return err
		}
		*s = flexString(num.String())
	default:
		return &json.UnmarshalTypeError{Value: string(b), Type: typeOfFlexString}
	}
	return nil
}

// flexList is a list sent either bare ([...]) or as a Graph edge
// ({"data": [...]}): Graph returns nested edges in the second form, Meta's
// group docs show the first.
type flexList[T any] []T

func (l *flexList[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var edge struct {
			Data []T `json:"data"`
		}
		if err := json.Unmarshal(b, &edge); err != nil {
			return err
		}
		*l = edge.Data
		return nil
	}
	var items []T
	if err := json.Unmarshal(b, &items); err != nil {
		return err
	}
	*l = items
	return nil
}

// unquote returns the text of a JSON scalar with one level of string quotes
// removed, trimmed. ok is false for objects, arrays and broken strings.
func unquote(b []byte) (string, bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "", true
	}
	switch b[0] {
	case '{', '[':
		return "", false
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", false
		}
		return strings.TrimSpace(s), true
	}
	return string(b), true
}

var (
	typeOfFlexInt    = reflect.TypeFor[int64]()
	typeOfFlexFloat  = reflect.TypeFor[float64]()
	typeOfFlexBool   = reflect.TypeFor[bool]()
	typeOfFlexString = reflect.TypeFor[string]()
)
