package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Goal is a figure's target: Value compared with Op (">=" or "<=").
type Goal struct {
	Op    string  `json:"op"`
	Value float64 `json:"value"`
}

// Met reports whether v meets the goal.
func (g Goal) Met(v float64) bool {
	switch g.Op {
	case ">=":
		return v >= g.Value
	case "<=":
		return v <= g.Value
	}
	return false
}

func (g Goal) String() string { return g.Op + " " + trimFloat(g.Value) }

// Figure is one measured number of the report.
type Figure struct {
	Key   string  `json:"key"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
	Goal  *Goal   `json:"goal,omitempty"`
	Met   *bool   `json:"met,omitempty"`
	// Baseline names what the figure was measured against, in the same run.
	Baseline string `json:"baseline,omitempty"`
	// How says briefly how it was measured.
	How string `json:"how"`
	// Command reproduces the figure alone.
	Command string `json:"command"`
}

// Meta describes the run.
type Meta struct {
	Size      string    `json:"size"`
	StartedAt time.Time `json:"started_at"`
	Seconds   float64   `json:"seconds"`
	GoVersion string    `json:"go_version"`
	CPUs      int       `json:"cpus"`
	Commit    string    `json:"commit,omitempty"`
	Processes string    `json:"processes"`
}

// Report collects figures, the details behind them and errors.
type Report struct {
	Meta    Meta
	Figures []Figure
	Details map[string]any
	Errors  map[string]string
}

// NewReport starts a report for a run of the given size.
func NewReport(ctx context.Context, size string) *Report {
	return &Report{
		Meta: Meta{Size: size, StartedAt: time.Now().UTC(), GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Commit: gitCommit(ctx),
			Processes: "NATS (embedded) and the Graph simulator run in the harness process; workers and the ingest are the cmd/worker and cmd/ingest binaries in their own processes unless a figure says otherwise"},
		Details: map[string]any{},
		Errors:  map[string]string{},
	}
}

func gitCommit(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// Add records a figure; a goal is checked at once.
func (r *Report) Add(f Figure) {
	if f.Goal != nil {
		met := f.Goal.Met(f.Value)
		f.Met = &met
	}
	f.Value = round(f.Value)
	r.Figures = append(r.Figures, f)
}

// Detail records what is behind a section's figures.
func (r *Report) Detail(section string, v any) { r.Details[section] = v }

// Fail records a section that could not be measured.
func (r *Report) Fail(section string, err error) { r.Errors[section] = err.Error() }

// MarshalJSON writes every figure's value under its key at the top level
// (what scripts read), then the figures with goals and methods, the
// details and the run's metadata.
func (r *Report) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("{\n")
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "  %q: %s,\n", f.Key, jsonNumber(f.Value))
	}
	rest := struct {
		Figures []Figure          `json:"figures"`
		Details map[string]any    `json:"details"`
		Errors  map[string]string `json:"errors,omitempty"`
		Meta    Meta              `json:"meta"`
	}{r.Figures, r.Details, r.Errors, r.Meta}
	tail, err := json.MarshalIndent(rest, "  ", "  ")
	if err != nil {
		return nil, err
	}
	b.Write(bytes.TrimSpace(tail[1:])) // drop the opening brace: this object continues
	b.WriteString("\n")
	return b.Bytes(), nil
}

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// Markdown renders the figures as a table.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# groupflow benchmark report\n\n")
	fmt.Fprintf(&b, "Run %s (size %s, %.0f s) on %d CPUs, %s, commit %s. %s.\n\n",
		r.Meta.StartedAt.Format(time.RFC3339), r.Meta.Size, r.Meta.Seconds, r.Meta.CPUs, r.Meta.GoVersion, r.Meta.Commit, r.Meta.Processes)
	b.WriteString("| figure | value | goal | met | measured against (same run) | how |\n")
	b.WriteString("|---|---:|---|:---:|---|---|\n")
	for _, f := range r.Figures {
		goal, met := "", ""
		if f.Goal != nil {
			goal = f.Goal.String()
			met = "✅"
			if !*f.Met {
				met = "❌"
			}
		}
		v := trimFloat(f.Value)
		if f.Unit != "" {
			v += " " + f.Unit
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", f.Key, v, goal, met, mdCell(f.Baseline), mdCell(f.How))
	}
	if len(r.Errors) > 0 {
		b.WriteString("\n## Sections that failed\n\n")
		for k, v := range r.Errors {
			fmt.Fprintf(&b, "- **%s**: %s\n", k, mdCell(v))
		}
	}
	b.WriteString("\n## Reproduce one figure\n\n| figure | command |\n|---|---|\n")
	for _, f := range r.Figures {
		fmt.Fprintf(&b, "| `%s` | `%s` |\n", f.Key, f.Command)
	}
	b.WriteString("\nCharts: `ratelimit.png` (Graph calls per 100 ms per number against its limit), `latency.png` (publish → terminal event), `scaling.png` (throughput against worker processes).\n")
	return b.String()
}

func mdCell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", "\\|"), "\n", " ") }

func round(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	switch a := math.Abs(v); {
	case a >= 100:
		return math.Round(v*10) / 10
	case a >= 1:
		return math.Round(v*1000) / 1000
	default:
		return math.Round(v*10000) / 10000
	}
}

func trimFloat(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%g", round(v)), ".0") }

func jsonNumber(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
