package testutil

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/groupflow/groupflow/internal/events"
)

// schemaBase is where the embedded schemas pretend to be served, so their
// relative $refs resolve.
const schemaBase = "https://schemas.groupflow.test/"

type embeddedSchemas struct{}

func (embeddedSchemas) Load(url string) (any, error) {
	name, ok := strings.CutPrefix(url, schemaBase)
	if !ok {
		return nil, fmt.Errorf("schema %s is outside %s", url, schemaBase)
	}
	f, err := events.Schemas().Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only embedded file: Close cannot lose data
	return jsonschema.UnmarshalJSON(f)
}

var (
	schemaMu sync.Mutex
	schemas  = map[string]*jsonschema.Schema{}
)

// ValidateSchema validates data against name, one of the events package's
// JSON Schemas (compiled once per process, formats asserted), and returns
// why it does not match, or nil. A schema that does not compile, or data
// that is not JSON, fails the test.
func ValidateSchema(tb testing.TB, name string, data []byte) error {
	tb.Helper()
	schemaMu.Lock()
	s, ok := schemas[name]
	if !ok {
		c := jsonschema.NewCompiler()
		c.UseLoader(embeddedSchemas{})
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		var err error
		if s, err = c.Compile(schemaBase + name); err != nil {
			schemaMu.Unlock()
			tb.Fatalf("compile schema %s: %v", name, err)
		}
		schemas[name] = s
	}
	schemaMu.Unlock()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		tb.Fatalf("%s: not JSON: %s", name, data)
	}
	return s.Validate(inst)
}
