package docs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// binariesWithConfig are the commands whose environment variables the
// README documents, each between <!-- config:NAME --> markers.
var binariesWithConfig = []string{"ingest", "worker", "groupctl"}

type envVar struct {
	Name    string `json:"name"`
	Default string `json:"default"`
	Secret  bool   `json:"secret"`
	Usage   string `json:"usage"`
}

// printConfig builds cmd/name and returns what its --print-config says.
func printConfig(t *testing.T, name string) []envVar {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "../cmd/"+name)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	out, err := exec.Command(bin, "--print-config").Output()
	if err != nil {
		t.Fatalf("%s --print-config: %v", name, err)
	}
	var vars []envVar
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var v envVar
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s --print-config line %q: %v", name, sc.Text(), err)
		}
		vars = append(vars, v)
	}
	if len(vars) == 0 {
		t.Fatalf("%s --print-config printed no variables", name)
	}
	return vars
}

func table(vars []envVar) string {
	var b strings.Builder
	b.WriteString("| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range vars {
		def := "—"
		if v.Default != "" {
			def = "`" + v.Default + "`"
		}
		if v.Secret {
			def = "secret"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, def, strings.ReplaceAll(v.Usage, "|", "\\|"))
	}
	return b.String()
}

// TestREADMEConfigurationMatchesTheBinaries keeps the README's tables
// identical to what each binary reads. UPDATE_README=1 rewrites them.
func TestREADMEConfigurationMatchesTheBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	for _, name := range binariesWithConfig {
		want := table(printConfig(t, name))
		re := regexp.MustCompile(`(?s)(<!-- config:` + name + ` -->\n)(.*?)(<!-- /config:` + name + ` -->)`)
		m := re.FindStringSubmatch(readme)
		if m == nil {
			t.Errorf("README.md has no <!-- config:%s --> … <!-- /config:%s --> section", name, name)
			continue
		}
		if m[2] != want {
			if os.Getenv("UPDATE_README") != "" {
				readme = re.ReplaceAllLiteralString(readme, m[1]+want+m[3])
				continue
			}
			t.Errorf("README's %s configuration differs from `%s --print-config`; run UPDATE_README=1 go test ./docs/ or paste:\n%s", name, name, want)
		}
	}
	if os.Getenv("UPDATE_README") != "" {
		if err := os.WriteFile("../README.md", []byte(readme), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
