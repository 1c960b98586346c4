package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/config"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestEnvReadsValuesAndDefaults(t *testing.T) {
	t.Parallel()
	e := config.NewEnv(envOf(map[string]string{"A": " x ", "N": "7", "D": "3s", "B": "true", "L": "a, ,b", "F": "2.5"}))
	if got := e.String("A", "def", ""); got != "x" {
		t.Errorf("String = %q, want %q", got, "x")
	}
	if got := e.String("UNSET", "def", ""); got != "def" {
		t.Errorf("String unset = %q, want def", got)
	}
	if got := e.Int("N", 1, 1, ""); got != 7 {
		t.Errorf("Int = %d, want 7", got)
	}
	if got := e.Duration("D", time.Second, ""); got != 3*time.Second {
		t.Errorf("Duration = %s, want 3s", got)
	}
	if got := e.Bool("B", false, ""); !got {
		t.Error("Bool = false, want true")
	}
	if got := e.Float("F", 1, 1, ""); got != 2.5 {
		t.Errorf("Float = %v, want 2.5", got)
	}
	if got := strings.Join(e.List("L", ""), "|"); got != "a|b" {
		t.Errorf("List = %q, want a|b", got)
	}
	if err := e.Err(); err != nil {
		t.Fatalf("Err = %v, want nil", err)
	}
	if got := len(e.Vars()); got != 7 {
		t.Errorf("Vars recorded %d variables, want 7", got)
	}
}

// A setting off by default (a duration of 0) can be set off explicitly, as
// its documented default reads; one on by default cannot be set to 0.
func TestEnvTakesZeroForADurationOffByDefault(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"0", "0s", "0ms"} {
		e := config.NewEnv(envOf(map[string]string{"OFF": v}))
		if got := e.Duration("OFF", 0, ""); got != 0 || e.Err() != nil {
			t.Errorf("Duration(OFF=%q, default 0) = %v, error %v; want 0 and no error", v, got, e.Err())
		}
	}
	for _, tc := range []struct {
		v   string
		def time.Duration
	}{{"-1s", 0}, {"0", time.Second}, {"0s", time.Second}} {
		e := config.NewEnv(envOf(map[string]string{"D": tc.v}))
		e.Duration("D", tc.def, "")
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), "D: want a") {
			t.Errorf("Duration(D=%q, default %v): error %v, want one naming D", tc.v, tc.def, err)
		}
	}
}

func TestEnvReportsEveryProblemOnOneLine(t *testing.T) {
	t.Parallel()
	e := config.NewEnv(envOf(map[string]string{"N": "zero", "D": "-1s", "B": "maybe"}))
	e.Int("N", 1, 1, "")
	e.Duration("D", time.Second, "")
	e.Bool("B", false, "")
	e.Require("R", "", "needed for the test")
	err := e.Err()
	if err == nil {
		t.Fatal("Err = nil, want four problems")
	}
	msg := err.Error()
	for _, want := range []string{"N:", "D:", "B:", "R: required"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans several lines: %q", msg)
	}
}

func TestSecretFromFileNeverInErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("s3cr3t-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := config.NewEnv(envOf(map[string]string{"TOKEN_FILE": file}))
	if got := e.Secret("TOKEN", ""); got != "s3cr3t-value" {
		t.Errorf("Secret from file = %q, want s3cr3t-value", got)
	}

	both := config.NewEnv(envOf(map[string]string{"TOKEN": "inline-s3cr3t", "TOKEN_FILE": file}))
	both.Secret("TOKEN", "")
	missing := config.NewEnv(envOf(map[string]string{"TOKEN_FILE": filepath.Join(dir, "nope")}))
	missing.Secret("TOKEN", "")
	for _, e := range []*config.Env{both, missing} {
		err := e.Err()
		if err == nil {
			t.Fatal("Err = nil, want a secret problem")
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error leaks the secret: %v", err)
		}
	}
}

// Secret files as editors and tools on Windows write them: CRLF line ends
// and a UTF-8 byte order mark are not part of the secret (Graph would
// refuse a token with an invisible U+FEFF in front); a UTF-16 file is
// refused by name, never taken as a secret full of NULs.
func TestSecretFilesWrittenOnWindows(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	crlf := write("crlf", []byte("s3cr3t-value\r\n"))
	bom := write("bom", []byte("\ufeffs3cr3t-value\r\n"))
	list := write("list", []byte("\ufefftok-a\r\ntok-b\r\n\r\n"))
	utf16 := write("utf16", []byte("\xff\xfes\x003\x00c\x00r\x003\x00t\x00"))

	e := config.NewEnv(envOf(map[string]string{"CRLF_FILE": crlf, "BOM_FILE": bom, "LIST_FILE": list}))
	for _, name := range []string{"CRLF", "BOM"} {
		if got := e.Secret(name, ""); got != "s3cr3t-value" {
			t.Errorf("%s_FILE: secret %q, want s3cr3t-value", name, got)
		}
	}
	if got := e.SecretList("LIST", ""); len(got) != 2 || got[0] != "tok-a" || got[1] != "tok-b" {
		t.Errorf("LIST_FILE: secrets %q, want tok-a and tok-b", got)
	}
	if err := e.Err(); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}

	e = config.NewEnv(envOf(map[string]string{"WIDE_FILE": utf16}))
	if got := e.Secret("WIDE", ""); got != "" {
		t.Errorf("WIDE_FILE (UTF-16): secret of %d bytes, want none", len(got))
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "WIDE_FILE: "+utf16+" is not UTF-8 text") {
		t.Errorf("WIDE_FILE (UTF-16): error %v, want one naming WIDE_FILE", err)
	}
}

func TestRedactURLHidesCredentials(t *testing.T) {
	t.Parallel()
	// The last two without a scheme, as nats.go takes them (url.Parse
	// alone would read "bob" as a scheme and see no password).
	got := config.RedactURL("nats://alice:pa55@h1:4222,nats://tok3n@h2:4222,nats://h3:4222,bob:s3cret@h4:4222,t0ken@h5")
	if strings.Contains(got, "pa55") || strings.Contains(got, "tok3n") || strings.Contains(got, "s3cret") || strings.Contains(got, "t0ken") {
		t.Fatalf("RedactURL left a secret: %s", got)
	}
	if !strings.Contains(got, "alice") || !strings.Contains(got, "h3:4222") {
		t.Errorf("RedactURL lost non-secret parts: %s", got)
	}
}

func TestAnUnreadableSecretFileIsNotAlsoMissing(t *testing.T) {
	t.Parallel()
	e := config.NewEnv(envOf(map[string]string{"TOKEN_FILE": filepath.Join(t.TempDir(), "nope")}))
	e.Require("TOKEN", e.Secret("TOKEN", ""), "needed for the test")
	e.Check(false, "TOKEN", "a consequence of the empty token")
	e.Require("OTHER", "", "needed too")
	err := e.Err()
	if err == nil {
		t.Fatal("Err = nil, want the file's problem")
	}
	msg := err.Error()
	if !strings.Contains(msg, "TOKEN_FILE: cannot read") || !strings.Contains(msg, "OTHER: required") {
		t.Errorf("error %q, want the file's problem and OTHER's", msg)
	}
	if strings.Contains(msg, "TOKEN: ") {
		t.Errorf("error %q also reports TOKEN, whose file is the problem", msg)
	}
}
