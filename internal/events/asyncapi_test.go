package events

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const asyncAPIPath = "../../docs/asyncapi.yaml"

// asyncAPI is the parsed document, plus helpers to follow its references.
type asyncAPI struct {
	root map[string]any
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	raw, err := os.ReadFile(asyncAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatalf("docs/asyncapi.yaml does not parse: %v", err)
	}
	return asyncAPI{root}
}

// resolve follows a local reference ("#/components/messages/x").
func (d asyncAPI) resolve(ref string) (map[string]any, error) {
	ptr, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("%q is not a local reference", ref)
	}
	var node any = d.root
	for _, tok := range strings.Split(ptr, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := node.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q: %q is not inside an object", ref, tok)
		}
		if node, ok = m[tok]; !ok {
			return nil, fmt.Errorf("%q: no %q", ref, tok)
		}
	}
	m, ok := node.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%q does not point to an object", ref)
	}
	if next, ok := m["$ref"].(string); ok && strings.HasPrefix(next, "#/") {
		return d.resolve(next)
	}
	return m, nil
}

func (d asyncAPI) section(t *testing.T, name string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	m, _ := d.root[name].(map[string]any)
	for k, v := range m {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s.%s is not an object", name, k)
		}
		out[k] = obj
	}
	return out
}

// refs lists every $ref string under node.
func refs(node any) []string {
	var out []string
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" {
				out = append(out, s)
			} else {
				out = append(out, refs(v)...)
			}
		}
	case []any:
		for _, v := range n {
			out = append(out, refs(v)...)
		}
	}
	return out
}

func TestAsyncAPIDocument(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	if v := doc.root["asyncapi"]; v != "3.0.0" {
		t.Fatalf("asyncapi = %v, want 3.0.0", v)
	}
	for _, key := range []string{"info", "channels", "operations", "components"} {
		if _, ok := doc.root[key].(map[string]any); !ok {
			t.Errorf("no %s section", key)
		}
	}
	// Every local reference resolves.
	for _, ref := range refs(doc.root) {
		if strings.HasPrefix(ref, "#/") {
			if _, err := doc.resolve(ref); err != nil {
				t.Errorf("broken reference: %v", err)
			}
		}
	}
}

// messagePayload returns the schema file a message's payload points to.
func messagePayload(t *testing.T, msg map[string]any) string {
	t.Helper()
	payload, _ := msg["payload"].(map[string]any)
	if f := payload["schemaFormat"]; f != "application/schema+json;version=draft-2020-12" {
		t.Errorf("message %v: schemaFormat = %v, want draft 2020-12", msg["name"], f)
	}
	schema, _ := payload["schema"].(map[string]any)
	ref, _ := schema["$ref"].(string)
	file, ok := strings.CutPrefix(ref, "../internal/events/schemas/")
	if !ok {
		t.Errorf("message %v: payload $ref %q is not a file in internal/events/schemas", msg["name"], ref)
	}
	return file
}

func headerNames(t *testing.T, doc asyncAPI, msg map[string]any) []string {
	t.Helper()
	h, _ := msg["headers"].(map[string]any)
	if ref, ok := h["$ref"].(string); ok {
		var err error
		if h, err = doc.resolve(ref); err != nil {
			t.Fatal(err)
		}
	}
	props, _ := h["properties"].(map[string]any)
	var out []string
	for k := range props {
		out = append(out, k)
	}
	return out
}

var paramRE = regexp.MustCompile(`\{([a-z_]+)\}`)

func TestAsyncAPIChannels(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	byAddress := map[string]map[string]any{}
	replyChannels := map[string]bool{}
	for name, op := range doc.section(t, "operations") {
		if reply, ok := op["reply"].(map[string]any); ok {
			ch, _ := reply["channel"].(map[string]any)
			ref, _ := ch["$ref"].(string)
			replyChannels[strings.TrimPrefix(ref, "#/channels/")] = true
		}
		// An operation's messages must be its channel's.
		ch, _ := op["channel"].(map[string]any)
		chRef, _ := ch["$ref"].(string)
		msgs, _ := op["messages"].([]any)
		if len(msgs) == 0 {
			t.Errorf("operation %s has no messages", name)
		}
		for _, m := range msgs {
			ref, _ := m.(map[string]any)["$ref"].(string)
			if !strings.HasPrefix(ref, chRef+"/messages/") {
				t.Errorf("operation %s: message %s is not a message of its channel %s", name, ref, chRef)
			}
		}
		if a := op["action"]; a != "send" && a != "receive" {
			t.Errorf("operation %s: action %v", name, a)
		}
	}
	for name, ch := range doc.section(t, "channels") {
		addr, _ := ch["address"].(string)
		if addr == "" {
			if !replyChannels[name] {
				t.Errorf("channel %s has no address and is no operation's reply", name)
			}
			continue
		}
		if _, dup := byAddress[addr]; dup {
			t.Errorf("two channels with address %s", addr)
		}
		byAddress[addr] = ch
		// The address's parameters and the declared ones are the same.
		var inAddr, declared []string
		for _, m := range paramRE.FindAllStringSubmatch(addr, -1) {
			inAddr = append(inAddr, m[1])
		}
		params, _ := ch["parameters"].(map[string]any)
		for k := range params {
			declared = append(declared, k)
		}
		if !slices.Equal(sorted(inAddr), sorted(declared)) {
			t.Errorf("channel %s: address parameters %v, declared %v", name, inAddr, declared)
		}
		if !strings.HasPrefix(addr, DefaultPrefix+".") {
			t.Errorf("channel %s: address %s does not start with the default prefix", name, addr)
		}
	}

	channelMessage := func(addr string) (map[string]any, bool) {
		ch, ok := byAddress[addr]
		if !ok {
			return nil, false
		}
		msgs, _ := ch["messages"].(map[string]any)
		for _, m := range msgs {
			ref, _ := m.(map[string]any)["$ref"].(string)
			msg, err := doc.resolve(ref)
			if err != nil {
				t.Fatal(err)
			}
			return msg, true
		}
		return nil, false
	}
	n := Names{}
	for _, ct := range CommandTypes() {
		addr := n.Command("{phone_number_id}", ct)
		msg, ok := channelMessage(addr)
		if !ok {
			t.Errorf("command type %s: no channel %s", ct, addr)
			continue
		}
		if got := messagePayload(t, msg); got != CommandSchema(ct) {
			t.Errorf("channel %s: payload %s, want %s", addr, got, CommandSchema(ct))
		}
		if h := headerNames(t, doc, msg); !containsAll(h, "Nats-Msg-Id", "traceparent", "tracestate") {
			t.Errorf("channel %s: headers %v", addr, h)
		}
	}
	for _, et := range EventTypes() {
		addr := n.Event("{phone_number_id}", et)
		msg, ok := channelMessage(addr)
		if !ok {
			t.Errorf("event type %s: no channel %s", et, addr)
			continue
		}
		if got := messagePayload(t, msg); got != EventSchema(et) {
			t.Errorf("channel %s: payload %s, want %s", addr, got, EventSchema(et))
		}
		if h := headerNames(t, doc, msg); !containsAll(h, "Nats-Msg-Id", "traceparent", "tracestate") {
			t.Errorf("channel %s: headers %v", addr, h)
		}
	}
	for addr, schema := range map[string]string{
		n.Webhook("{phone_number_id}", "{field}"):    "webhook.item.json",
		n.DLQ("{phone_number_id}", "{command_type}"): "dlq.dead_letter.json",
	} {
		msg, ok := channelMessage(addr)
		if !ok {
			t.Errorf("no channel %s", addr)
			continue
		}
		if got := messagePayload(t, msg); got != schema {
			t.Errorf("channel %s: payload %s, want %s", addr, got, schema)
		}
	}
	// The DLQ's command_type parameter lists exactly the command types.
	cmdTypeParam, err := doc.resolve("#/components/parameters/command_type")
	if err != nil {
		t.Fatal(err)
	}
	var enum []string
	for _, v := range cmdTypeParam["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	if !slices.Equal(enum, CommandTypes()) {
		t.Errorf("command_type parameter enum = %v, want %v", enum, CommandTypes())
	}
	// Queries are request-reply, with micro's error headers on the error reply.
	ops := doc.section(t, "operations")
	for _, q := range QueryNames() {
		addr := n.Query("{phone_number_id}", q)
		msg, ok := channelMessage(addr)
		if !ok {
			t.Errorf("query %s: no channel %s", q, addr)
			continue
		}
		if got, want := messagePayload(t, msg), "query."+q+".request.json"; got != want {
			t.Errorf("query %s: request payload %s, want %s", q, got, want)
		}
		checkQueryOperation(t, doc, ops, q)
	}
}

func checkQueryOperation(t *testing.T, doc asyncAPI, ops map[string]map[string]any, q string) {
	t.Helper()
	for _, op := range ops {
		ch, _ := op["channel"].(map[string]any)
		chRef, _ := ch["$ref"].(string)
		target, err := doc.resolve(chRef)
		if err != nil || target["address"] != (Names{}).Query("{phone_number_id}", q) {
			continue
		}
		reply, _ := op["reply"].(map[string]any)
		msgs, _ := reply["messages"].([]any)
		var payloads []string
		errHeaders := false
		for _, m := range msgs {
			msg, err := doc.resolve(m.(map[string]any)["$ref"].(string))
			if err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, messagePayload(t, msg))
			if containsAll(headerNames(t, doc, msg), "Nats-Service-Error", "Nats-Service-Error-Code") {
				errHeaders = true
			}
		}
		if !slices.Contains(payloads, "query."+q+".reply.json") || !slices.Contains(payloads, "query.error.json") || !errHeaders {
			t.Errorf("query %s: reply payloads %v (want its reply and query.error.json), micro error headers: %v", q, payloads, errHeaders)
		}
		return
	}
	t.Errorf("query %s: no operation on its channel", q)
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// TestAsyncAPISchemaFiles compiles, from disk, every schema file the
// document references, and checks that every shipped schema is reachable
// from it (directly or through another schema's $ref).
func TestAsyncAPISchemaFiles(t *testing.T) {
	t.Parallel()
	doc := loadAsyncAPI(t)
	docDir := filepath.Dir(asyncAPIPath)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	reached := map[string]bool{}
	var reach func(file string)
	reach = func(file string) {
		if reached[file] {
			return
		}
		reached[file] = true
		raw, err := fs.ReadFile(Schemas(), file)
		if err != nil {
			t.Errorf("schema %s: %v", file, err)
			return
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Errorf("schema %s: %v", file, err)
			return
		}
		for _, ref := range refs(v) {
			if f, _, _ := strings.Cut(ref, "#"); f != "" {
				reach(path.Clean(f))
			}
		}
	}
	for _, ref := range refs(doc.root) {
		if strings.HasPrefix(ref, "#") {
			continue
		}
		file := filepath.Join(docDir, filepath.FromSlash(ref))
		if _, err := os.Stat(file); err != nil {
			t.Errorf("reference %s: %v", ref, err)
			continue
		}
		abs, _ := filepath.Abs(file)
		if _, err := c.Compile(abs); err != nil {
			t.Errorf("schema %s does not compile: %v", ref, err)
		}
		if name, ok := strings.CutPrefix(ref, "../internal/events/schemas/"); ok {
			reach(name)
		}
	}
	all, _ := fs.Glob(Schemas(), "*.json")
	for _, f := range all {
		if !reached[f] {
			t.Errorf("schema %s is shipped but docs/asyncapi.yaml never reaches it", f)
		}
	}
}
