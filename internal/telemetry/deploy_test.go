package telemetry

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The dashboard and alert rules are written against the scrape names of
// /metrics; these tests keep them from drifting from what Metrics registers.

const (
	dashboardPath = "../../deploy/grafana/groupflow-dashboard.json"
	alertsPath    = "../../deploy/prometheus/alerts.yaml"
)

var (
	promStringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	promMatcherRE  = regexp.MustCompile(`\{[^{}]*\}`)
	promRangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupingRE = regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	labelValuesRE  = regexp.MustCompile(`label_values\(\s*([^,()]*(?:\{[^}]*\})?)\s*,[^)]*\)`)
	promIdentRE    = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promKeywords   = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
	}
)

// promMetricNames returns the metric names a PromQL expression selects:
// identifiers left once strings, label matchers, ranges and grouping
// clauses are removed, that are not a function call or a keyword.
func promMetricNames(expr string) []string {
	expr = labelValuesRE.ReplaceAllString(expr, "$1")
	expr = promStringRE.ReplaceAllString(expr, `""`)
	expr = promMatcherRE.ReplaceAllString(expr, "")
	expr = promRangeRE.ReplaceAllString(expr, "")
	expr = promGroupingRE.ReplaceAllString(expr, "")
	var names []string
	for _, loc := range promIdentRE.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] || strings.HasPrefix(name, "$") {
			continue
		}
		if loc[0] > 0 && expr[loc[0]-1] == '$' { // a Grafana variable
			continue
		}
		names = append(names, name)
	}
	return names
}

func balanced(expr string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range promStringRE.ReplaceAllString(expr, `""`) {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

func TestPromMetricNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ expr, want string }{
		{`sum by (outcome) (rate(groupflow_commands_total{job=~"$job",outcome!="x"}[$__rate_interval]))`, "groupflow_commands_total"},
		{`histogram_quantile(0.95, sum by (le, endpoint) (rate(groupflow_graph_call_duration_seconds_bucket[5m])))`, "groupflow_graph_call_duration_seconds_bucket"},
		{`a_total / clamp_min(sum(rate(b_total[5m])), 1e-9) > 0.05 and on () c == 0`, "a_total,b_total,c"},
		{`label_values(target_info{service_name=~"groupflow.*"}, job)`, "target_info"},
		{`max by (stream) (delta(groupflow_dlq_messages[15m])) > 0`, "groupflow_dlq_messages"},
	} {
		if got := strings.Join(promMetricNames(tc.expr), ","); got != tc.want {
			t.Errorf("promMetricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// exportedNames is every series name a query can use after a run that
// touched every instrument.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	b := setup(t)
	exercise(t, b.tel)
	return seriesNames(scrape(t, b.tel))
}

func checkExprs(t *testing.T, file string, exprs map[string]string, exported map[string]bool) {
	t.Helper()
	if len(exprs) == 0 {
		t.Fatalf("%s: no queries found", file)
	}
	used := map[string]bool{}
	for where, expr := range exprs {
		if !balanced(expr) {
			t.Errorf("%s: %s: unbalanced brackets in %q", file, where, expr)
		}
		names := promMetricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %s: no metric in %q", file, where, expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %s uses %s, which /metrics does not export", file, where, n)
			}
		}
	}
	var list []string
	for n := range used {
		list = append(list, n)
	}
	sort.Strings(list)
	t.Logf("%s uses %v", filepath.Base(file), list)
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" || dash.Title == "" {
		t.Errorf("dashboard uid %q title %q, want both set", dash.UID, dash.Title)
	}

	exprs := map[string]string{}
	ids := map[int]string{}
	for _, p := range dash.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.RefID == "" || tg.Expr == "" {
				t.Errorf("panel %q has a target without refId or expr", p.Title)
			}
			exprs["panel "+p.Title+" "+tg.RefID] = tg.Expr
		}
	}
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if err := json.Unmarshal(v.Query, &s); err != nil {
				t.Fatalf("variable %s: query is neither object nor string", v.Name)
			}
			q.Query = s
		}
		exprs["variable "+v.Name] = q.Query
	}
	checkExprs(t, dashboardPath, exprs, exportedNames(t))
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true) // a misspelt key would be ignored by Prometheus' loader too late
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	exprs := map[string]string{}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.For == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("rule %q: want alert, for, labels.severity, annotations.summary and .description", r.Alert)
			}
			if alerts[r.Alert] {
				t.Errorf("alert %q defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	checkExprs(t, alertsPath, exprs, exportedNames(t))

	// The four conditions, by the metric each must watch.
	for metric, what := range map[string]string{
		"groupflow_dlq_messages":                     "DLQ growing",
		"groupflow_throttles_total":                  "sustained throttling",
		"groupflow_consumer_lag":                     "consumer lag",
		"groupflow_webhook_signature_failures_total": "webhook signature failures",
	} {
		found := false
		for _, e := range exprs {
			found = found || strings.Contains(e, metric)
		}
		if !found {
			t.Errorf("no alert on %s (%s)", what, metric)
		}
	}
}

// TestAlertRulesPassPromtool runs Prometheus' own checker where it is
// installed (apt-get install prometheus); the parse above covers the rest.
func TestAlertRulesPassPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	out, err := exec.Command(promtool, "check", "rules", alertsPath).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}
