package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPercentileIsNearestRank(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := Percentile(d, tc.p); got != tc.want {
			t.Errorf("Percentile(1..100 ms, %g) = %s, want %s", tc.p, got, tc.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile(nil) = %s, want 0", got)
	}
}

func TestMaxInWindowCountsHalfOpenWindows(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(0, 0)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, t0.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		times []time.Time
		want  int
	}{
		{"calls exactly a window apart are in different windows", at(0, 1000, 2000), 1},
		{"a burst", at(0, 10, 20, 999, 1500), 4},
		{"none", nil, 0},
	} {
		if got := MaxInWindow(tc.times, time.Second); got != tc.want {
			t.Errorf("%s: MaxInWindow = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSteadyRateLeavesOutTheEnds(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(0, 0)
	var times []time.Time
	// 101 completions 10 ms apart (100/s), then a straggler 5 s later.
	for i := range 101 {
		times = append(times, t0.Add(time.Duration(i)*10*time.Millisecond))
	}
	times = append(times, t0.Add(6*time.Second))
	if got := SteadyRate(times, 0.1, 0.9); got < 99 || got > 101 {
		t.Errorf("SteadyRate = %.1f/s, want 100/s (the straggler left out)", got)
	}
}

func TestBins(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(0, 0)
	times := []time.Time{t0, t0.Add(50 * time.Millisecond), t0.Add(250 * time.Millisecond)}
	got := Bins(times, t0, 100*time.Millisecond)
	if want := []int{2, 0, 1}; len(got) != len(want) || got[0] != 2 || got[1] != 0 || got[2] != 1 {
		t.Errorf("Bins = %v, want %v", got, want)
	}
}

func TestReportPutsEveryFigureAtTheTopLevel(t *testing.T) {
	t.Parallel()
	r := NewReport(t.Context(), "smoke")
	r.Add(Figure{Key: "scaling_2_workers", Value: 1.93456, Goal: &Goal{">=", 1.8}, How: "x", Command: "c"})
	r.Add(Figure{Key: "ratelimit_max_window_ratio", Value: 1.02, Goal: &Goal{"<=", 1.0}, How: "y", Command: "c"})
	r.Detail("scaling", map[string]any{"points": 2})
	path := filepath.Join(t.TempDir(), "report.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("report.json is not JSON: %v\n%s", err, b)
	}
	if got := doc["scaling_2_workers"]; got != 1.935 {
		t.Errorf("scaling_2_workers = %v, want 1.935 (rounded)", got)
	}
	if _, ok := doc["details"].(map[string]any)["scaling"]; !ok {
		t.Errorf("details.scaling missing: %s", b)
	}
	md := r.Markdown()
	for _, want := range []string{"| `scaling_2_workers` | 1.935 | >= 1.8 | ✅ |", "| `ratelimit_max_window_ratio` | 1.02 | <= 1 | ❌ |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
