package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Var describes one environment variable a program reads.
type Var struct {
	Name    string `json:"name"`
	Default string `json:"default,omitempty"`
	Secret  bool   `json:"secret,omitempty"`
	Usage   string `json:"usage"`
	// Bool marks a boolean variable, whose flag may stand alone.
	Bool bool `json:"-"`
}

// Env reads variables through a getenv function and records every problem.
// Read everything, then check Err once.
type Env struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	vars     []Var
	errs     []string
	failed   map[string]bool // variables with a problem recorded
}

// NewEnv returns an Env reading from getenv (os.Getenv in a main).
func NewEnv(getenv func(string) string) *Env {
	return &Env{getenv: getenv, readFile: os.ReadFile}
}

// Vars lists every variable read so far, in order, for help texts and for
// the test that keeps the README's configuration table true.
func (e *Env) Vars() []Var { return e.vars }

func (e *Env) record(v Var) string {
	e.vars = append(e.vars, v)
	return strings.TrimSpace(e.getenv(v.Name))
}

// fail records a problem with name. A variable gets its first problem
// only: a later one is its consequence (a secret file that cannot be read
// leaves the secret empty, and "required" would only repeat it), so
// NAME_FILE's problem stands for NAME too.
func (e *Env) fail(name, format string, args ...any) {
	base := strings.TrimSuffix(name, "_FILE")
	if e.failed[base] {
		return
	}
	if e.failed == nil {
		e.failed = map[string]bool{}
	}
	e.failed[base] = true
	e.errs = append(e.errs, name+": "+fmt.Sprintf(format, args...))
}

// String returns the variable's value or def when unset.
func (e *Env) String(name, def, usage string) string {
	if v := e.record(Var{Name: name, Default: def, Usage: usage}); v != "" {
		return v
	}
	return def
}

// Secret returns the variable's value, or the trimmed contents of the file
// named by <name>_FILE (UTF-8, a byte order mark dropped). Setting both is
// an error. The value never appears in an error message.
func (e *Env) Secret(name, usage string) string {
	v := e.record(Var{Name: name, Secret: true, Usage: usage + " (or " + name + "_FILE)"})
	file := strings.TrimSpace(e.getenv(name + "_FILE"))
	switch {
	case v != "" && file != "":
		e.fail(name, "set either %s or %s_FILE, not both", name, name)
		return ""
	case file != "":
		b, err := e.readFile(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			e.fail(name+"_FILE", "cannot read %s: %v", file, err)
			return ""
		}
		// A byte order mark (Windows tools write one) is no part of the
		// secret; a UTF-16 file would be one full of NULs.
		text := strings.TrimPrefix(string(b), "\ufeff")
		if !utf8.ValidString(text) || strings.ContainsRune(text, 0) {
			e.fail(name+"_FILE", "%s is not UTF-8 text (saved as UTF-16?)", file)
			return ""
		}
		return strings.TrimSpace(text)
	}
	return v
}

// Int returns the variable as an integer ≥ lowest, or def when unset.
func (e *Env) Int(name string, def, lowest int, usage string) int {
	v := e.record(Var{Name: name, Default: strconv.Itoa(def), Usage: usage})
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lowest {
		e.fail(name, "want an integer ≥ %d, got %q", lowest, v)
		return def
	}
	return n
}

// Float returns the variable as a finite number ≥ lowest, or def when
// unset. ParseFloat's NaN and Inf are refused: no comparison holds them back.
func (e *Env) Float(name string, def, lowest float64, usage string) float64 {
	v := e.record(Var{Name: name, Default: strconv.FormatFloat(def, 'f', -1, 64), Usage: usage})
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lowest {
		e.fail(name, "want a number ≥ %v, got %q", lowest, v)
		return def
	}
	return f
}

// Duration returns the variable as a positive Go duration ("30s"), or def.
// A setting whose default is 0 (off) takes 0 too ("0", "0s"), as its
// documented default reads.
func (e *Env) Duration(name string, def time.Duration, usage string) time.Duration {
	v := e.record(Var{Name: name, Default: def.String(), Usage: usage})
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case def == 0 && (err != nil || d < 0):
		e.fail(name, "want a duration such as 5s, or 0 (off), got %q", v)
		return def
	case def != 0 && (err != nil || d <= 0):
		e.fail(name, "want a positive duration such as 30s, got %q", v)
		return def
	}
	return d
}

// Bool returns the variable as a boolean, or def when unset.
func (e *Env) Bool(name string, def bool, usage string) bool {
	v := e.record(Var{Name: name, Default: strconv.FormatBool(def), Usage: usage, Bool: true})
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.fail(name, "want true or false, got %q", v)
		return def
	}
	return b
}

// List returns the comma-separated values of the variable, trimmed and
// without empty entries.
func (e *Env) List(name, usage string) []string {
	return splitList(e.String(name, "", usage))
}

// SecretList is List for secrets (also from <name>_FILE, one per line or
// comma separated).
func (e *Env) SecretList(name, usage string) []string {
	return splitList(strings.ReplaceAll(e.Secret(name, usage), "\n", ","))
}

// Require records an error when value is empty, unless name (or
// name_FILE) already has one.
func (e *Env) Require(name, value, why string) {
	if value == "" {
		e.fail(name, "required: %s", why)
	}
}

// Check records an error for name when ok is false, unless name (or
// name_FILE) already has one.
func (e *Env) Check(ok bool, name, format string, args ...any) {
	if !ok {
		e.fail(name, format, args...)
	}
}

// Err returns every problem found so far as one line, or nil.
func (e *Env) Err() error {
	if len(e.errs) == 0 {
		return nil
	}
	return errors.New("invalid configuration: " + strings.Join(e.errs, "; "))
}

// PrintVars writes vars as JSON, one object per line, for `--print-config`:
// the deploy manifests and the README's configuration table are checked
// against it.
func PrintVars(w io.Writer, vars []Var) error {
	enc := json.NewEncoder(w)
	for _, v := range vars {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}
