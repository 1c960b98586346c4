package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/config"
)

// builtBinaries is every main package under cmd/, built once per test run
// into a temporary directory (removed in TestMain).
var built struct {
	once sync.Once
	dir  string
	bins map[string]string // name → path
	err  error
}

func removeBinaries() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// commands lists the binaries under cmd/: the names images and manifests
// may run.
func commands(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if gos, _ := filepath.Glob(filepath.Join(repoRoot(t), "cmd", e.Name(), "*.go")); len(gos) > 0 {
			names = append(names, e.Name())
		}
	}
	return names
}

// binary returns the path of cmd/<name> built as the Dockerfile builds it
// (go build ./cmd/...).
func binary(t testing.TB, name string) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "groupflow-deploytest-")
		if built.err != nil {
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		cmd := exec.Command(goTool, "build", "-o", built.dir+string(filepath.Separator), "./cmd/...")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = errors.New("go build ./cmd/...: " + err.Error() + "\n" + string(out))
			return
		}
		built.bins = map[string]string{}
		for _, n := range commands(t) {
			built.bins[n] = filepath.Join(built.dir, n)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	p, ok := built.bins[name]
	if !ok {
		t.Fatalf("no binary cmd/%s (binaries: %v)", name, commands(t))
	}
	return p
}

// binaryVars is every environment variable a binary reads, from
// `<binary> --print-config`. graphsim, which mirrors its flags as
// GRAPHSIM_<FLAG>, may answer with its flags (-h) instead. ok is false
// when the binary supports neither.
func binaryVars(t testing.TB, name string) (vars map[string]config.Var, ok bool) {
	t.Helper()
	bin := binary(t, name)
	out, err := exec.Command(bin, "--print-config").Output()
	if err == nil {
		vars = map[string]config.Var{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var v config.Var
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				t.Fatalf("%s --print-config printed %q, not a JSON variable: %v", name, sc.Text(), err)
			}
			vars[v.Name] = v
		}
		if len(vars) == 0 {
			t.Fatalf("%s --print-config printed no variables", name)
		}
		return vars, true
	}
	if name != "graphsim" {
		return nil, false
	}
	// Flags, as `graphsim -h` lists them ("  -name type").
	help, _ := exec.Command(bin, "-h").CombinedOutput()
	vars = map[string]config.Var{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1) {
		env := "GRAPHSIM_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
		vars[env] = config.Var{Name: env}
	}
	if len(vars) == 0 {
		t.Fatalf("graphsim -h lists no flags:\n%s", help)
	}
	return vars, true
}

// usesTelemetry reports whether cmd/<name> imports internal/telemetry, and
// so also reads the standard OTEL_* variables (not in --print-config).
func usesTelemetry(t testing.TB, name string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot(t), "cmd", name, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			if strings.Trim(imp.Path.Value, `"`) == "github.com/groupflow/groupflow/internal/telemetry" {
				return true
			}
		}
	}
	return false
}

// otelVars are the standard OpenTelemetry variables internal/telemetry
// reads (doc.go there lists them); manifests may set only these.
var otelVars = []string{
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
	"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_METRIC_EXPORT_INTERVAL",
}

// goRuntimeVars are read by the Go runtime of every binary.
var goRuntimeVars = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC", "GODEBUG"}

// reads reports whether binary name reads environment variable env:
// declared by --print-config, the _FILE form of a declared secret, a
// standard OTEL_* variable for binaries with telemetry, or a Go runtime
// variable.
func reads(t testing.TB, name string, vars map[string]config.Var, env string) bool {
	t.Helper()
	if _, ok := vars[env]; ok {
		return true
	}
	if base, ok := strings.CutSuffix(env, "_FILE"); ok && vars[base].Secret {
		return true
	}
	if slices.Contains(goRuntimeVars, env) {
		return true
	}
	return slices.Contains(otelVars, env) && usesTelemetry(t, name)
}

// addrVars name the variable holding each server binary's listen address.
var addrVars = map[string]string{
	"ingest":   "INGEST_ADDR",
	"worker":   "WORKER_ADDR",
	"graphsim": "GRAPHSIM_ADDR",
}

// metricsAddrVars name the variable that moves a server binary's /metrics
// (with its probes) to a listener of its own; unset, /metrics is on the
// address of addrVars.
var metricsAddrVars = map[string]string{
	"ingest": "INGEST_METRICS_ADDR",
}

// portOf returns the port of a listen address such as ":8080".
func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return n
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	// The binary under test must be able to take the address.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// serve runs a built binary with env until the test ends and returns the
// base URL of its HTTP server once it answers.
func serve(t *testing.T, name string, env map[string]string) string {
	t.Helper()
	addr := freeAddr(t)
	env[addrVars[name]] = addr
	cmd := exec.Command(binary(t, name))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			err = <-exited
		}
		// The test is over: how the binary stopped is for the log only.
		t.Logf("%s stopped: %v", name, err)
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("%s exited before serving: %v\n%s", name, err, stderr.String())
		default:
		}
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve on %s within 30s\n%s", name, addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get answers the status of GET url.
func get(ctx context.Context, t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
