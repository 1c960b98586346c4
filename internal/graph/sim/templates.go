package sim

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// TopicGroupInviteLink is the library topic of the group invite templates.
// Library items spell enum values in upper case, as Meta does; filters
// match case-insensitively.
const TopicGroupInviteLink = "GROUP_INVITE_LINK"

type libraryButton struct {
	Type string `json:"type"`
	Text string `json:"text"`
	URL  string `json:"url,omitempty"`
}

// libraryTemplate is one item of GET /message_template_library.
type libraryTemplate struct {
	Name           string          `json:"name"`
	Language       string          `json:"language"`
	Category       string          `json:"category"`
	Topic          string          `json:"topic"`
	Usecase        string          `json:"usecase"`
	Industry       []string        `json:"industry"`
	Header         string          `json:"header,omitempty"`
	Body           string          `json:"body"`
	BodyParams     []string        `json:"body_params,omitempty"`
	BodyParamTypes []string        `json:"body_param_types,omitempty"`
	Buttons        []libraryButton `json:"buttons,omitempty"`
	ID             string          `json:"id"`
}

// needsButtonInputs: URL buttons with a variable need
// library_template_button_inputs when the template is added to a WABA.
func (t libraryTemplate) needsButtonInputs() bool {
	for _, b := range t.Buttons {
		if b.Type == "URL" && strings.Contains(b.URL, "{{") {
			return true
		}
	}
	return false
}

var library = func() []libraryTemplate {
	// Meta puts the live invite link in place of the group_id parameter at
	// delivery time.
	invite := map[string]string{
		"en":    "You asked to join our WhatsApp group. Tap the link below to join: {{1}}",
		"en_US": "You asked to join our WhatsApp group. Tap the link below to join: {{1}}",
		"es":    "Pediste unirte a nuestro grupo de WhatsApp. Toca el enlace para unirte: {{1}}",
		"pt_BR": "Você pediu para entrar no nosso grupo do WhatsApp. Toque no link para entrar: {{1}}",
	}
	out := make([]libraryTemplate, 0, 7)
	for _, lang := range []string{"en", "en_US", "es", "pt_BR"} {
		out = append(out, libraryTemplate{
			Name: "group_invite_upon_request", Language: lang, Category: "UTILITY", Topic: TopicGroupInviteLink,
			Usecase: "GROUP_INVITE_UPON_REQUEST", Industry: []string{"E_COMMERCE", "FINANCIAL_SERVICES", "OTHER"},
			Body: invite[lang], BodyParams: []string{"https://chat.whatsapp.com/BjCg8D2zYrE7kS1uFp0xQa"},
			BodyParamTypes: []string{"GROUP_ID"},
		})
	}
	out = append(out,
		libraryTemplate{
			Name: "order_confirmation_1", Language: "en_US", Category: "UTILITY", Topic: "ORDER_MANAGEMENT",
			Usecase: "ORDER_CONFIRMATION", Industry: []string{"E_COMMERCE"}, Header: "Your order is confirmed",
			Body:       "Hi {{1}}, thank you for your order! Your order number is {{2}}.",
			BodyParams: []string{"Jim", "#12345"}, BodyParamTypes: []string{"TEXT", "TEXT"},
			Buttons: []libraryButton{{Type: "URL", Text: "View order", URL: "https://www.example.com/orders/{{1}}"}},
		},
		libraryTemplate{
			Name: "delivery_update_1", Language: "en_US", Category: "UTILITY", Topic: "ORDER_MANAGEMENT",
			Usecase: "DELIVERY_UPDATE", Industry: []string{"E_COMMERCE"},
			Body:       "Good news {{1}}! Your order {{2}} is on its way.",
			BodyParams: []string{"Jim", "#12345"}, BodyParamTypes: []string{"TEXT", "TEXT"},
		},
		libraryTemplate{
			Name: "low_balance_warning_1", Language: "en_US", Category: "UTILITY", Topic: "PAYMENTS",
			Usecase: "LOW_BALANCE_WARNING", Industry: []string{"FINANCIAL_SERVICES"}, Header: "Your account balance is low",
			Body:       "Hi {{1}}, your balance in account ending {{2}} is below {{3}}.",
			BodyParams: []string{"Jim", "1234", "$100"}, BodyParamTypes: []string{"TEXT", "TEXT", "TEXT"},
		},
	)
	for i := range out {
		h := fnv.New64a()
		_, _ = h.Write([]byte(out[i].Name + "/" + out[i].Language)) // a hash.Hash never returns a write error
		out[i].ID = fmt.Sprintf("1%015d", h.Sum64()%1e15)
	}
	return out
}()

func findLibrary(name, lang string) (libraryTemplate, bool) {
	for _, t := range library {
		if t.Name == name && t.Language == lang {
			return t, true
		}
	}
	return libraryTemplate{}, false
}

// GET /message_template_library
func (s *Server) templateLibrary(rq *request) response {
	if rq.query("after") != "" {
		// Everything fits on the first page.
		return s.ok(map[string]any{"data": []libraryTemplate{}})
	}
	eq := func(param, v string) bool { q := rq.query(param); return q == "" || strings.EqualFold(q, v) }
	search := strings.ToLower(rq.query("search"))
	industry := rq.query("industry")
	data := []libraryTemplate{}
	for _, t := range library {
		if !eq("category", t.Category) || !eq("topic", t.Topic) || !eq("usecase", t.Usecase) ||
			!eq("language", t.Language) || !eq("name", t.Name) {
			continue
		}
		if industry != "" && !slices.ContainsFunc(t.Industry, func(i string) bool { return strings.EqualFold(i, industry) }) {
			continue
		}
		if search != "" && !strings.Contains(strings.ToLower(t.Name), search) && !strings.Contains(strings.ToLower(t.Body), search) {
			continue
		}
		data = append(data, t)
	}
	out := map[string]any{"data": data}
	if len(data) > 0 {
		out["paging"] = pagingJSON{Cursors: cursorsJSON{Before: encodeCursor(0, "library"), After: encodeCursor(uint64(len(data)), "library")}}
	}
	return s.ok(out)
}

// accountTemplate is a template of the WABA.
type accountTemplate struct {
	ID         string
	Name       string
	Language   string
	Category   string
	Status     string
	Library    string // library_template_name, if copied from the library
	Topic      string
	Body       string
	ParamCount int
	Components json.RawMessage
}

type templateStore struct {
	mu   sync.RWMutex
	list []*accountTemplate
}

func (ts *templateStore) find(name, lang string) *accountTemplate {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	for _, t := range ts.list {
		if t.Name == name && t.Language == lang {
			return t
		}
	}
	return nil
}

func (s *Server) templateStates() []TemplateState {
	s.templates.mu.RLock()
	defer s.templates.mu.RUnlock()
	out := make([]TemplateState, 0, len(s.templates.list))
	for _, t := range s.templates.list {
		out = append(out, TemplateState{ID: t.ID, Name: t.Name, Language: t.Language, Category: t.Category,
			Status: t.Status, LibraryTemplateName: t.Library})
	}
	return out
}

var (
	templateName = regexp.MustCompile(`^[a-z0-9_]{1,512}$`)
	placeholder  = regexp.MustCompile(`\{\{(\d+)\}\}`)
)

func countParams(body string) int {
	seen := map[string]bool{}
	for _, m := range placeholder.FindAllStringSubmatch(body, -1) {
		seen[m[1]] = true
	}
	return len(seen)
}

type templateJSON struct {
	Name                string          `json:"name"`
	Components          json.RawMessage `json:"components"`
	Language            string          `json:"language"`
	Status              string          `json:"status"`
	Category            string          `json:"category"`
	LibraryTemplateName string          `json:"library_template_name,omitempty"`
	ID                  string          `json:"id"`
}

func (s *Server) checkWABA(rq *request) *graphError {
	if rq.id != s.cfg.WABAID {
		return errUnsupported(rq.method, rq.id)
	}
	return nil
}

// GET /{WABA_ID}/message_templates?name=&language=&status=&category=
func (s *Server) listTemplates(rq *request) response {
	if e := s.checkWABA(rq); e != nil {
		return s.fail(e)
	}
	s.templates.mu.RLock()
	list := slices.Clone(s.templates.list)
	s.templates.mu.RUnlock()
	data := []templateJSON{}
	for _, t := range list {
		if n := rq.query("name"); n != "" && n != t.Name {
			continue
		}
		if l := rq.query("language"); l != "" && l != t.Language {
			continue
		}
		if st := rq.query("status"); st != "" && !strings.EqualFold(st, t.Status) {
			continue
		}
		if c := rq.query("category"); c != "" && !strings.EqualFold(c, t.Category) {
			continue
		}
		data = append(data, templateJSON{Name: t.Name, Components: t.Components, Language: t.Language,
			Status: t.Status, Category: t.Category, LibraryTemplateName: t.Library, ID: t.ID})
	}
	out := map[string]any{"data": data}
	if len(data) > 0 {
		out["paging"] = pagingJSON{Cursors: cursorsJSON{Before: encodeCursor(0, "templates"), After: encodeCursor(uint64(len(data)), "templates")}}
	}
	return s.ok(out)
}

// POST /{WABA_ID}/message_templates: from the library
// (library_template_name) or from components. Templates are approved at once.
func (s *Server) createTemplate(rq *request) response {
	if e := s.checkWABA(rq); e != nil {
		return s.fail(e)
	}
	p, e := parseParams(rq)
	if e != nil {
		return s.fail(e)
	}
	name, ok, e := p.str("name")
	if e != nil {
		return s.fail(e)
	}
	if !ok {
		return s.fail(errParam("The parameter name is required."))
	}
	if !templateName.MatchString(name) {
		return s.fail(errParam("Template name may only hold lowercase letters, digits and underscores (got %q).", name))
	}
	lang, ok, e := p.str("language")
	if e != nil {
		return s.fail(e)
	}
	if !ok || lang == "" {
		return s.fail(errParam("The parameter language is required."))
	}
	category, ok, e := p.str("category")
	if e != nil {
		return s.fail(e)
	}
	category = strings.ToUpper(category)
	if !ok || !slices.Contains([]string{"UTILITY", "MARKETING", "AUTHENTICATION"}, category) {
		return s.fail(errParam("Param category must be one of {UTILITY, MARKETING, AUTHENTICATION}."))
	}
	t := &accountTemplate{ID: s.ids.numericID(), Name: name, Language: lang, Category: category, Status: "APPROVED"}
	libName, fromLib, e := p.str("library_template_name")
	if e != nil {
		return s.fail(e)
	}
	if fromLib {
		lt, ok := findLibrary(libName, lang)
		if !ok {
			return s.fail(errParam("Library template %q does not exist in language %s.", libName, lang))
		}
		if _, has := p["library_template_button_inputs"]; lt.needsButtonInputs() && !has {
			return s.fail(errParam("library_template_button_inputs is required for library template %q.", libName))
		}
		// Templates copied unchanged keep the library category (utility pricing).
		t.Category, t.Library, t.Topic, t.Body = lt.Category, lt.Name, lt.Topic, lt.Body
		t.ParamCount = len(lt.BodyParams)
		comps := []map[string]any{{"type": "BODY", "text": lt.Body}}
		if len(lt.Buttons) > 0 {
			comps = append(comps, map[string]any{"type": "BUTTONS", "buttons": lt.Buttons})
		}
		t.Components, _ = json.Marshal(comps)
	} else {
		raw, ok := p["components"]
		var comps []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if !ok || json.Unmarshal(raw, &comps) != nil || len(comps) == 0 {
			return s.fail(errParam("The parameter components is required (an array of components)."))
		}
		for _, c := range comps {
			if strings.EqualFold(c.Type, "BODY") {
				t.Body = c.Text
			}
		}
		if t.Body == "" {
			return s.fail(errParam("A BODY component with text is required."))
		}
		t.ParamCount = countParams(t.Body)
		t.Components = raw
	}
	s.templates.mu.Lock()
	for _, x := range s.templates.list {
		if x.Name == name && x.Language == lang {
			s.templates.mu.Unlock()
			e := errParam("Content in this language already exists.")
			e.Subcode = 2388024
			e.UserTitle, e.UserMsg = "Content in This Language Already Exists", "There is already "+lang+" content for this template."
			return s.fail(e)
		}
	}
	s.templates.list = append(s.templates.list, t)
	slices.SortStableFunc(s.templates.list, func(a, b *accountTemplate) int { return cmp.Compare(a.Name, b.Name) })
	s.templates.mu.Unlock()
	return s.ok(map[string]string{"id": t.ID, "status": t.Status, "category": t.Category})
}
