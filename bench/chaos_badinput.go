package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/webhook"
)

// BadInputResult is the hostile-input scenario's outcome.
type BadInputResult struct {
	CorpusFiles int `json:"corpus_files"`
	// Requests by phase; Answers by phase and HTTP status.
	Requests map[string]int            `json:"requests"`
	Answers  map[string]map[string]int `json:"answers"`
	// UnverifiedPublished counts webhook stream messages added while only
	// unsigned or forged webhooks were sent: must be 0.
	UnverifiedPublished int `json:"unverified_published"`
	// UnexpectedAnswers are answers outside what the phase allows (e.g. a
	// 200 to a forged signature, or any 5xx); listed in Examples.
	UnexpectedAnswers int      `json:"unexpected_answers"`
	Examples          []string `json:"unexpected_examples,omitempty"`
	// Stored messages that are not what the ingest may publish: webhook
	// items that do not decode, commands that fail validation.
	BadWebhookItems  int  `json:"bad_webhook_items_stored"`
	InvalidCommands  int  `json:"invalid_commands_stored"`
	WebhookItems     int  `json:"webhook_items_stored"`
	CommandsStored   int  `json:"commands_stored"`
	CommandsAccepted int  `json:"commands_accepted"`
	IngestSurvived   bool `json:"ingest_survived"`
	// Crashes name the inputs the ingest died on (it is restarted after
	// each, under a 4 GiB address-space cap).
	Crashes           []string `json:"crashes,omitempty"`
	IngestPeakRSSMB   float64  `json:"ingest_peak_rss_mb"`
	HealthyAfterwards bool     `json:"healthy_afterwards"`
	Seconds           float64  `json:"seconds"`
	Pass              bool     `json:"pass"`
}

// Passed reports whether nothing crashed and nothing unverified or invalid
// was published.
func (r *BadInputResult) Passed() bool { return r.Pass }

// runBadInputChaos sends the fuzz corpora and a batch of hostile payloads
// to a cmd/ingest process: unsigned and forged webhooks (nothing may be
// published), signed garbage (refused or stored as valid items), and
// commands with and without a token (only valid ones published).
func runBadInputChaos(ctx context.Context, e *Env, r *Report) error {
	t0 := time.Now()
	s, err := e.NewStack(ctx, "badinput", StackConfig{NoWebhookHandler: true, Sim: quietSim()})
	if err != nil {
		return err
	}
	defer s.Close()
	ing, err := s.StartIngest(ctx, e.Bins.Ingest, "ingest")
	if err != nil {
		return err
	}
	defer func() { ing.Stop(10 * time.Second) }()
	corpus, files, err := loadCorpora()
	if err != nil {
		return err
	}
	res := &BadInputResult{CorpusFiles: files, Requests: map[string]int{}, Answers: map[string]map[string]int{}}
	inputs := append(corpus, hostilePayloads()...)
	client := &http.Client{Timeout: 60 * time.Second}
	secret := []byte(sim.DefaultAppSecret)
	peak := 0.0

	// send posts body and checks the answer is one the phase allows. An
	// ingest that died is recorded as a crash and started again, so one
	// fatal input does not hide the rest.
	send := func(phase, path string, in input, header map[string]string, allowed ...int) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+ing.Addr+path, bytes.NewReader(in.body))
		for k, v := range header {
			req.Header.Set(k, v)
		}
		status := "transport_error"
		code := 0
		resp, err := client.Do(req)
		if err == nil {
			code = resp.StatusCode
			status = strconv.Itoa(code)
			_ = resp.Body.Close() // only the status matters
		}
		ing.SamplePeakRSS()
		peak = max(peak, ing.PeakRSSMB())
		res.Requests[phase]++
		if res.Answers[phase] == nil {
			res.Answers[phase] = map[string]int{}
		}
		res.Answers[phase][status]++
		ok := false
		for _, a := range allowed {
			ok = ok || a == code
		}
		if !ok {
			res.UnexpectedAnswers++
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("%s: %s for %s (%d bytes)", phase, status, in.name, len(in.body)))
			}
		}
		if err != nil {
			select {
			case <-ing.Done():
			case <-time.After(2 * time.Second):
			}
		}
		if ing.Exited() {
			res.Crashes = append(res.Crashes, fmt.Sprintf("%s: %s (%d bytes): %v", phase, in.name, len(in.body), ing.Err()))
			e.Log.Warn("the ingest died", "phase", phase, "input", in.name, "exit", ing.Err())
			if ing, err = s.StartIngest(ctx, e.Bins.Ingest, fmt.Sprint("ingest-", len(res.Crashes)+1)); err != nil {
				return err
			}
		}
		return nil
	}
	streamCount := func(name string) (uint64, error) {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			return 0, err
		}
		return st.CachedInfo().State.Msgs, nil
	}

	// 1. Unverified webhooks: nothing may reach the stream.
	before, err := streamCount(s.Names.WebhookStream())
	if err != nil {
		return err
	}
	const sig = webhook.SignatureHeader
	malformed := []string{"sha256=", "sha1=" + strings.Repeat("0", 40), "sha256=zz", "sha256=" + strings.Repeat("0", 64), strings.Repeat("A", 10000)}
	for i, in := range inputs {
		other := inputs[(i+1)%len(inputs)].body
		for _, step := range []struct {
			phase   string
			header  map[string]string
			allowed []int
		}{
			{"webhook_unsigned", nil, []int{401, 413}},
			{"webhook_wrong_secret", map[string]string{sig: webhook.Sign([]byte("not-the-app-secret"), in.body)}, []int{403, 413}},
			{"webhook_signature_of_other_body", map[string]string{sig: webhook.Sign(secret, append(other, ' '))}, []int{403, 413}},
			{"webhook_malformed_signature", map[string]string{sig: malformed[i%len(malformed)]}, []int{401, 403, 413}},
		} {
			if err := send(step.phase, "/webhook", in, step.header, step.allowed...); err != nil {
				return err
			}
		}
	}
	after, err := streamCount(s.Names.WebhookStream())
	if err != nil {
		return err
	}
	res.UnverifiedPublished = int(after - before) //nolint:gosec // G115: a few hundred messages at most

	// 2. Signed garbage: refused as malformed or too large, or stored as
	// valid items; never a server error.
	for _, in := range inputs {
		if err := send("webhook_signed", "/webhook", in, map[string]string{sig: webhook.Sign(secret, in.body)}, 200, 400, 413); err != nil {
			return err
		}
	}
	// 3. Commands with the token: accepted only when valid; without: 401.
	auth := map[string]string{"Authorization": "Bearer " + IngestToken, "Content-Type": "application/json"}
	for _, in := range append(inputs, hostileCommands()...) {
		if err := send("command_with_token", "/v1/commands", in, auth, 200, 202, 400, 413); err != nil {
			return err
		}
		if err := send("command_without_token", "/v1/commands", in, map[string]string{"Authorization": "Bearer wrong"}, 401); err != nil {
			return err
		}
	}
	res.CommandsAccepted = res.Answers["command_with_token"]["202"]

	// What was stored must be what the ingest may publish.
	if err := s.ScanStream(ctx, s.Names.WebhookStream(), "", func(m StreamMsg) {
		res.WebhookItems++
		// A signed item is Meta's word and may be stored whatever it
		// says; it must still be a well-formed item, on a subject of
		// exactly its phone (made a safe token) and field.
		var it webhook.Item
		err := json.Unmarshal(m.Data, &it)
		tokens := strings.Split(m.Subject, ".")
		if err != nil || it.MsgID == "" || it.MsgID != m.MsgID || len(tokens) != 4 ||
			m.Subject != s.Names.Webhook(tokens[2], it.Field) || !events.ValidToken(tokens[2]) || !events.ValidToken(it.Field) {
			res.BadWebhookItems++
			if len(res.Examples) < 20 {
				res.Examples = append(res.Examples, fmt.Sprintf("stored item on %s (Nats-Msg-Id %q): %.200s", m.Subject, m.MsgID, m.Data))
			}
		}
	}); err != nil {
		return err
	}
	if err := s.ScanStream(ctx, s.Names.CommandStream(), "", func(m StreamMsg) {
		res.CommandsStored++
		if _, err := events.DecodeCommand(m.Subject, m.Data); err != nil {
			res.InvalidCommands++
		}
	}); err != nil {
		return err
	}
	res.IngestSurvived = len(res.Crashes) == 0 && !ing.Exited()
	res.IngestPeakRSSMB = peak
	res.HealthyAfterwards = !ing.Exited() && ing.WaitHealthy(ctx, "/healthz") == nil
	res.Seconds = time.Since(t0).Seconds()
	res.Pass = res.UnverifiedPublished == 0 && res.UnexpectedAnswers == 0 && res.BadWebhookItems == 0 &&
		res.InvalidCommands == 0 && res.CommandsStored == res.CommandsAccepted && res.IngestSurvived && res.HealthyAfterwards
	r.Detail("bad_input", res)
	return nil
}

// loadCorpora reads the inputs the fuzz targets start from: every
// testdata/fuzz corpus file of the module (Go's "go test fuzz v1" format),
// the Meta webhook examples FuzzParse seeds with and the valid and invalid
// commands FuzzDecodeCommand seeds with.
func loadCorpora() ([]input, int, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, 0, err
	}
	var out []input
	files := 0
	err = filepath.WalkDir(filepath.Join(root, "internal"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		slash := filepath.ToSlash(rel)
		switch {
		case strings.Contains(slash, "/testdata/fuzz/"):
			vals, err := readFuzzFile(path)
			if err != nil {
				return err
			}
			files++
			for i, v := range vals {
				out = append(out, input{fmt.Sprintf("%s#%d", slash, i), v})
			}
		case strings.HasPrefix(slash, "internal/webhook/testdata/meta-examples/") && strings.HasSuffix(slash, ".json"),
			strings.HasPrefix(slash, "internal/events/testdata/valid/"),
			strings.HasPrefix(slash, "internal/events/testdata/invalid/"):
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			out = append(out, input{slash, b})
		}
		return nil
	})
	return out, files, err
}

// readFuzzFile returns the []byte and string values of a corpus file.
func readFuzzFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() //nolint:errcheck // read-only: Close cannot lose data
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, prefix := range []string{"[]byte(", "string("} {
			if v, ok := strings.CutPrefix(line, prefix); ok {
				if s, err := strconv.Unquote(strings.TrimSuffix(v, ")")); err == nil {
					out = append(out, []byte(s))
				}
			}
		}
	}
	return out, sc.Err()
}

// hostilePayloads are bodies no fuzzer would find quickly: too large,
// nested deeper than any parser should follow, wrong types at every level,
// and broken encodings.
func hostilePayloads() []input {
	env := func(value string) []byte {
		return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"group_lifecycle_update","value":` + value + `}]}]}`)
	}
	deep := func(open, closing string, n int) []byte {
		return []byte(strings.Repeat(open, n) + strings.Repeat(closing, n))
	}
	var many strings.Builder
	many.WriteString(`{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1","phone_number_id":"106540352242922"},"statuses":[`)
	for i := range 2000 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"id":"wamid.%d","status":"delivered","timestamp":"1750000000","recipient_id":"15550001%03d"}`, i, i%1000)
	}
	many.WriteString(`]}`)
	return []input{
		{"6 MiB of bytes (above the body limit)", bytes.Repeat([]byte("A"), 6<<20)},
		{"3 MiB string value", env(`"` + strings.Repeat("x", 3<<20) + `"`)},
		{"arrays nested 200,000 deep", deep("[", "]", 200000)},
		{"objects nested 100,000 deep", deep(`{"a":`, "}", 100000)},
		{"groups nested 50,000 deep in an envelope", env(string(deep(`{"groups":`, "}", 50000)))},
		{"entry nested 100,000 deep", []byte(`{"object":"whatsapp_business_account","entry":` + string(deep("[", "]", 100000)) + `}`)},
		{"wrong types: object and entry", []byte(`{"object":1,"entry":"x"}`)},
		{"wrong types: entry an object", []byte(`{"object":"whatsapp_business_account","entry":{"changes":[]}}`)},
		{"wrong types: entry items", []byte(`{"object":"whatsapp_business_account","entry":[1,"x",null,true,[]]}`)},
		{"wrong types: changes", []byte(`{"object":"whatsapp_business_account","entry":[{"changes":[1,{"field":7,"value":"v"},{"field":"statuses","value":[]}]}]}`)},
		{"wrong types: group fields", env(`{"metadata":{"phone_number_id":{"$gt":""}},"groups":[{"group_id":123,"type":["group_create"],"timestamp":{"t":1}}]}`)},
		{"subject wildcard as phone number id", env(`{"metadata":{"phone_number_id":"*"},"groups":[{"group_id":"g","type":"group_create","timestamp":"1"}]}`)},
		{"subject tokens in phone number id", env(`{"metadata":{"phone_number_id":"1.2.>"},"statuses":[{"id":"wamid.1","status":"sent","timestamp":"1","recipient_id":"1"}]}`)},
		{"wrong types: status fields", env(`{"statuses":[{"id":5,"status":null,"errors":"no","pricing":7}]}`)},
		{"wrong types: message fields", env(`{"messages":[{"from":{"a":1},"id":[],"text":{"body":12}}]}`)},
		{"escaped NULs and a huge exponent", env(`{"groups":[{"timestamp":"1e400","group_id":"` + strings.Repeat("\\u0000", 1000) + `"}]}`)},
		{"2,000 statuses in one change", env(many.String())},
		{"byte order mark", []byte("\xef\xbb\xbf" + `{"object":"whatsapp_business_account","entry":[]}`)},
		{"trailing garbage", []byte(`{"object":"whatsapp_business_account","entry":[]} trailing`)},
		{"duplicate keys", []byte(`{"object":"whatsapp_business_account","object":"page","entry":[]}`)},
		{"invalid UTF-8", []byte("{\"object\":\"\xff\xfe\xfd\",\"entry\":[]}")},
		{"NUL bytes", []byte("\x00\x00\x00\x00")},
		{"empty body", []byte("")},
		{"null", []byte("null")},
		{"a JSON string", []byte(`"just a string"`)},
		{"1,000 envelopes back to back", []byte(strings.Repeat(`{"object":"whatsapp_business_account","entry":[]}`, 1000))},
	}
}

// input is one hostile body and what it is.
type input struct {
	name string
	body []byte
}

// hostileCommands aim at the command API: subject injection through the
// phone number or type, oversize params, wrong types.
func hostileCommands() []input {
	cmd := func(id, typ, phone, group, params string) []byte {
		return fmt.Appendf(nil, `{"id":%q,"type":%q,"phone_number_id":%q,"group_id":%q,"params":%s}`, id, typ, phone, group, params)
	}
	return []input{
		{"phone number id *", cmd("inj-1", "get_invite_link", "*", "g", `{}`)},
		{"phone number id with a dot", cmd("inj-2", "get_invite_link", "1.2", "g", `{}`)},
		{"phone number id >", cmd("inj-3", "get_invite_link", ">", "g", `{}`)},
		{"type with subject tokens", cmd("inj-4", "get_invite_link.>", "106540352242922", "g", `{}`)},
		{"type a path", cmd("inj-5", "../../etc/passwd", "106540352242922", "g", `{}`)},
		{"id with spaces", cmd("bad id with spaces", "get_invite_link", "106540352242922", "g", `{}`)},
		{"id of 200 characters", cmd(strings.Repeat("x", 200), "get_invite_link", "106540352242922", "g", `{}`)},
		{"150,000 participants (above the command limit)", cmd("big-1", "remove_participants", "106540352242922", "g", `{"participants":[`+strings.TrimSuffix(strings.Repeat(`"15550001111",`, 150000), ",")+`]}`)},
		{"subject a number", cmd("types-1", "create_group", "106540352242922", "", `{"subject":12}`)},
		{"join_request_ids a string", cmd("types-2", "approve_join_requests", "106540352242922", "g", `{"join_request_ids":"all"}`)},
		{"invite params of wrong types", cmd("types-3", "send_group_invite", "106540352242922", "", `{"to":["1"],"group_id":{},"template":"x"}`)},
		{"envelope of numbers", []byte(`{"id":1,"type":2,"phone_number_id":3}`)},
		{"params null", []byte(`{"id":"n-1","type":"get_invite_link","phone_number_id":"106540352242922","group_id":"g","params":null}`)},
		{"duplicate type", []byte(`{"id":"d-1","type":"get_invite_link","type":"delete_group","phone_number_id":"106540352242922","group_id":"g"}`)},
		{"deadline not a time", []byte(`{"id":"dl-1","type":"get_invite_link","phone_number_id":"106540352242922","group_id":"g","deadline":"tomorrow"}`)},
		{"unknown field", []byte(`{"id":"x-1","type":"get_invite_link","phone_number_id":"106540352242922","group_id":"g","extra":{"__proto__":1}}`)},
	}
}
