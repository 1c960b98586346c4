package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ChaosResult is what every chaos scenario reports: its counters and
// whether the invariants held.
type ChaosResult interface{ Passed() bool }

// ChaosSections are the scenarios of `make chaos`, in order.
func ChaosSections() []Section {
	return []Section{
		{"cluster", runClusterChaos},
		{"kill", runKillChaos},
		{"faults", runFaultChaos},
		{"outage", runOutageChaos},
		{"badinput", runBadInputChaos},
	}
}

// WriteChaosReport writes chaos.json. The run fails when a scenario broke
// an invariant or could not run.
func WriteChaosReport(r *Report, out string) (bool, error) {
	failed := len(r.Errors) > 0
	doc := map[string]any{"meta": r.Meta}
	for k, v := range r.Details {
		doc[k] = v
		if c, ok := v.(ChaosResult); ok && !c.Passed() {
			failed = true
		}
	}
	if len(r.Errors) > 0 {
		doc["errors"] = r.Errors
	}
	doc["passed"] = !failed
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return true, err
	}
	fmt.Println(string(b))
	return failed, os.WriteFile(filepath.Join(out, "chaos.json"), append(b, '\n'), 0o644)
}
