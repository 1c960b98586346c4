package config_test

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/config"
)

// programVars reads a program's settings through getenv.
func programVars(getenv func(string) string) (addr string, conc int, embedded bool, secret string, e *config.Env) {
	e = config.NewEnv(getenv)
	addr = e.String("APP_ADDR", ":8080", "listen address")
	conc = e.Int("APP_CONCURRENCY", 16, 1, "work at once")
	embedded = e.Bool("APP_EMBEDDED", false, "run in process")
	secret = e.Secret("APP_SECRET", "the secret")
	_ = e.Duration("APP_GRACE", time.Second, "grace")
	return addr, conc, embedded, secret, e
}

func TestFlagsMirrorTheEnvironmentAndWin(t *testing.T) {
	env := map[string]string{"APP_ADDR": ":9000", "APP_CONCURRENCY": "4"}
	getenv := func(k string) string { return env[k] }
	_, _, _, _, known := programVars(getenv)
	var out strings.Builder
	fl := config.NewFlags("app", known.Vars(), &out, nil)
	if err := fl.Parse([]string{"--app-concurrency", "32", "-app-embedded", "--app-secret-file=/run/secrets/app"}); err != nil {
		t.Fatal(err)
	}
	addr, conc, embedded, _, e := programVars(fl.Getenv(getenv))
	if addr != ":9000" || conc != 32 || !embedded {
		t.Fatalf("addr %q concurrency %d embedded %v, want the environment's :9000, the flag's 32, the bare flag's true", addr, conc, embedded)
	}
	// The secret's file flag is its _FILE variable: read (and here
	// missing), never the secret itself on the command line.
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "APP_SECRET_FILE: cannot read /run/secrets/app") {
		t.Fatalf("err = %v, want the file flag read as APP_SECRET_FILE", err)
	}
	if fl.PrintConfig {
		t.Fatal("--print-config set without being given")
	}
}

func TestFlagsRefuseWhatTheyDoNotKnow(t *testing.T) {
	_, _, _, _, known := programVars(func(string) string { return "" })
	for _, args := range [][]string{
		{"--app-secret", "sekr1t"}, // no flag carries a secret itself
		{"--bogus"},
		{"stray"},
		{"--app-embedded=maybe"},
	} {
		fl := config.NewFlags("app", known.Vars(), new(strings.Builder), nil)
		err := fl.Parse(args)
		if err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "sekr1t") {
			t.Errorf("%q: err = %v, want one secret-free line", args, err)
		}
	}
}

func TestFlagsHelpListsEveryVariable(t *testing.T) {
	_, _, _, _, known := programVars(func(string) string { return "" })
	var out strings.Builder
	fl := config.NewFlags("app", known.Vars(), &out, nil)
	if err := fl.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-app-addr", "(env APP_ADDR) (default :8080)", "-app-secret-file", "(env APP_SECRET_FILE)", "-app-grace", "-print-config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
}
