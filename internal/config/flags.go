package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Flags is a program's command line, mirroring the environment variables
// it reads: NAME is also --name (lower case, dashes for underscores), and a
// flag given wins over the variable. A secret has only --name-file, naming
// the file to read it from, so that no secret shows in a process list.
// --print-config is there too, and --help lists them all.
type Flags struct {
	// PrintConfig is set by --print-config.
	PrintConfig bool

	fs    *flag.FlagSet
	given map[string]string // variable name → flag value
}

// FlagName is the flag that mirrors the variable name.
func FlagName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// NewFlags defines a flag for each of vars (as Env.Vars lists them), plus
// what extra adds. Usage goes to out.
func NewFlags(program string, vars []Var, out io.Writer, extra func(*flag.FlagSet)) *Flags {
	f := &Flags{fs: flag.NewFlagSet(program, flag.ContinueOnError), given: map[string]string{}}
	f.fs.SetOutput(out)
	f.fs.BoolVar(&f.PrintConfig, "print-config", false, "print the environment variables "+program+" reads, as JSON lines, and exit")
	for _, v := range vars {
		name, usage := v.Name, v.Usage
		if v.Secret {
			usage = "file holding the " + strings.TrimSuffix(usage, " (or "+name+"_FILE)")
			name += "_FILE"
		}
		usage += " (env " + name + ")"
		val := &varFlag{name: name, given: f.given, bool: v.Bool}
		f.fs.Var(val, FlagName(name), usage)
		if v.Default != "" && !v.Secret {
			f.fs.Lookup(FlagName(name)).DefValue = v.Default
		}
	}
	if extra != nil {
		extra(f.fs)
	}
	f.fs.Usage = func() {
		_, _ = fmt.Fprintf(f.fs.Output(), "Usage: %s [flags]\n\nEvery setting is an environment variable; each flag mirrors one and wins over it.\n\n", program)
		f.fs.PrintDefaults()
	}
	return f
}

// Parse reads args. --help prints the usage and returns flag.ErrHelp;
// anything else wrong, including an argument that is not a flag, is one
// error line.
func (f *Flags) Parse(args []string) error {
	out := f.fs.Output()
	f.fs.SetOutput(io.Discard) // errors are returned, as one line
	err := f.fs.Parse(args)
	f.fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		f.fs.Usage()
		return err
	case err != nil:
		return fmt.Errorf("invalid arguments: %w (see --help)", err)
	case f.fs.NArg() > 0:
		return fmt.Errorf("invalid arguments: unexpected %q (see --help)", f.fs.Arg(0))
	}
	return nil
}

// Getenv is getenv with the flags given in place of their variables.
func (f *Flags) Getenv(getenv func(string) string) func(string) string {
	return func(name string) string {
		if v, ok := f.given[name]; ok {
			return v
		}
		return getenv(name)
	}
}

// varFlag records the value of the flag mirroring the variable name.
type varFlag struct {
	name  string
	given map[string]string
	bool  bool
}

func (v *varFlag) String() string { return "" }

func (v *varFlag) Set(s string) error {
	if v.bool {
		if _, err := strconv.ParseBool(s); err != nil {
			return errors.New("want true or false")
		}
	}
	v.given[v.name] = s
	return nil
}

// IsBoolFlag lets a boolean variable's flag stand alone (--name for true).
func (v *varFlag) IsBoolFlag() bool { return v.bool }
