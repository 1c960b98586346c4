package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reference is what Parse did before the tree: encoding/json decoding into
// interface values (numbers kept as text) and encoding them back without
// HTML escaping.
func reference(body []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), true
}

func treeSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/meta-examples/*.json")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, ` `, `null`, `-0`, `01`, `1.`, `1e`, `1E+7`, `-`, `tru`, `true `, `[1,]`, `{"a":1,}`, `{"a" 1}`, `{} {}`, `[] x`,
		`"\u2028\ud800x\u00e9\"\\\/\b\f\n\r\t\u0001<>&"`, `"\ud83d\ude00\udc00"`, `"\x"`, "\"\xff\xfe\"", "\"a\tb\"",
		`{"b":1,"a":2,"b":3,"\u0061":4}`, `[[[[{"errors":[{"code":"7"}]}]]]]`, ` { "a" : [ 1 , 2 ] } `,
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		f.Add([]byte(s))
	}
}

// FuzzTree checks that the tree accepts exactly what encoding/json accepts
// and writes values back byte for byte as encoding/json did, and that
// compactJSON agrees with json.Compact.
func FuzzTree(f *testing.F) {
	treeSeeds(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		want, valid := reference(body)
		if valid != json.Valid(body) {
			t.Fatalf("reference and json.Valid disagree on %q", body)
		}
		tr := getTree()
		defer putTree(tr)
		root, ok := tr.parse(string(body))
		if ok != valid {
			t.Fatalf("tree accepts %q: %v, encoding/json: %v", body, ok, valid)
		}
		if ok {
			if got := tr.appendJSON(nil, root); !bytes.Equal(got, want) {
				t.Fatalf("tree writes\n%s\nencoding/json\n%s", got, want)
			}
		}
		var compacted bytes.Buffer
		wantCompact := json.Compact(&compacted, body) == nil && bytes.Equal(compacted.Bytes(), body)
		if got := compactJSON(body); got != wantCompact {
			t.Fatalf("compactJSON(%q) = %v, want %v", body, got, wantCompact)
		}
	})
}

func TestTreeSetAndDelete(t *testing.T) {
	tr := getTree()
	defer putTree(tr)
	root, ok := tr.parse(`{"m":1,"c":{"x":true},"a":[1]}`)
	if !ok {
		t.Fatal("parse failed")
	}
	alias := tr.get(root, "c")
	tr.set(alias, "b", tr.newString("new"))
	tr.set(root, "z", tr.newNumber("9"))
	tr.set(root, "a", tr.newString("\n"))
	tr.del(root, "m")
	tr.del(root, "missing")
	want := `{"a":"\n","c":{"b":"new","x":true},"z":9}`
	if got := string(tr.appendJSON(nil, root)); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	c := tr.clone(root)
	tr.del(c, "z")
	if string(tr.appendJSON(nil, root)) != want {
		t.Fatal("deleting from a clone changed the original")
	}
}

// FuzzAppendItem checks the publisher's item encoding against encoding/json.
func FuzzAppendItem(f *testing.F) {
	f.Add("0123abcd", "102290129340398", "106540352242922", "", "messages", "status", "read", "G1", []byte(`{"a":1}`), false)
	f.Add("id", "w\u2028<>&", "p\x00", "d\"\\", "f", "k", "", "", []byte(` { "a" : [ 1 ] } `), false)
	f.Add("", "", "", "", "", "", "", "", []byte(`{"a":`), false)
	f.Add("", "", "", "", "", "", "", "", []byte{}, false)
	f.Add("", "", "", "", "", "", "", "", []byte(nil), true)
	f.Add("\xff", "", "", "", "", "", "", "", []byte("\"\xff<\""), false)
	f.Fuzz(func(t *testing.T, id, waba, phone, display, field, kind, typ, group string, data []byte, nilData bool) {
		if nilData {
			data = nil
		}
		it := Item{MsgID: id, WABAID: waba, PhoneNumberID: phone, DisplayPhoneNumber: display, Field: field, Kind: kind, Type: typ, GroupID: group, Data: data}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		wantErr := enc.Encode(&it)
		got, err := appendItem(nil, &it)
		if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
			t.Fatalf("appendItem error %v, encoding/json %v", err, wantErr)
		}
		if err == nil && !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte{'\n'})) {
			t.Fatalf("appendItem\n%s\nencoding/json\n%s", got, want.Bytes())
		}
		if err == nil && len(got) > encodedSize(&it) && plainString(id+waba+phone+display+field+kind+typ+group) && compactJSON(data) {
			t.Fatalf("encodedSize %d < %d for an item needing no escaping", encodedSize(&it), len(got))
		}
	})
}
