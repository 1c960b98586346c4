package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Writer writes a finished report into out and says whether the run
// failed.
type Writer func(r *Report, out string) (failed bool, err error)

// Main runs the named sections (all by default) and writes the report:
// the body of cmd/benchreport and cmd/chaos. It returns the exit code.
func Main(ctx context.Context, name string, args []string, sections []Section, write Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	size := fs.String("size", "full", "full (the report) or smoke (seconds, for CI)")
	out := fs.String("out", "bench", "directory for the JSON report and charts")
	only := fs.String("only", "", "comma-separated sections to run (default all): "+sectionNames(sections))
	bin := fs.String("bin", "", "directory holding the worker and ingest binaries (default: build them)")
	work := fs.String("work", "", "scratch directory for data and process logs (default: a temporary one, removed unless a section fails)")
	var sets []string
	fs.Func("set", "override one size field, e.g. -set CampaignInvites=20000 -set ScalingLatency=50ms (repeatable; fields of bench.Size)", func(v string) error {
		sets = append(sets, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, *size, sets, *out, *only, *bin, *work, sections, write); err != nil {
		log.Error(name+" failed", "error", err)
		return 1
	}
	return 0
}

func sectionNames(ss []Section) string {
	names := make([]string, 0, len(ss))
	for _, s := range ss {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}

func run(ctx context.Context, log *slog.Logger, sizeName string, sets []string, out, only, bin, work string, sections []Section, write Writer) error {
	size, err := SizeByName(sizeName)
	if err != nil {
		return err
	}
	for _, kv := range sets {
		if err := size.Set(kv); err != nil {
			return err
		}
	}
	if only != "" {
		want := strings.Split(only, ",")
		var picked []Section
		for _, s := range sections {
			if slices.Contains(want, s.Name) {
				picked = append(picked, s)
			}
		}
		if len(picked) != len(want) {
			return fmt.Errorf("-only %q: sections are %s", only, sectionNames(sections))
		}
		sections = picked
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	keep := work != ""
	if work == "" {
		if work, err = os.MkdirTemp("", "groupflow-bench-"); err != nil {
			return err
		}
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}
	env := &Env{Work: work, Out: out, Size: size, Log: log}
	if bin == "" {
		log.Info("building cmd/worker, cmd/ingest and bench/cmd/floorworker")
		if env.Bins, err = Build(ctx, filepath.Join(work, "bin")); err != nil {
			return err
		}
	} else {
		b, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		env.Bins = Binaries{Worker: filepath.Join(b, "worker"), Ingest: filepath.Join(b, "ingest"), Floor: filepath.Join(b, "floorworker")}
	}

	r := NewReport(ctx, size.Name)
	start := time.Now()
	for _, s := range sections {
		if ctx.Err() != nil {
			r.Fail(s.Name, ctx.Err())
			continue
		}
		t0 := time.Now()
		log.Info("section", "name", s.Name, "size", size.Name)
		if err := s.Run(ctx, env, r); err != nil {
			log.Error("section failed", "name", s.Name, "error", err)
			r.Fail(s.Name, err)
			keep = true
		} else {
			log.Info("section done", "name", s.Name, "seconds", time.Since(t0).Seconds())
		}
	}
	r.Meta.Seconds = time.Since(start).Seconds()
	failed, err := write(r, out)
	if err != nil {
		return err
	}
	if keep {
		log.Info("scratch kept (process logs, data)", "dir", work)
	} else {
		_ = os.RemoveAll(work)
	}
	if failed {
		bad := slices.Collect(maps.Keys(r.Errors))
		for name, d := range r.Details {
			if c, ok := d.(ChaosResult); ok && !c.Passed() {
				bad = append(bad, name)
			}
		}
		slices.Sort(bad)
		return fmt.Errorf("failed: %s (see the report in %s)", strings.Join(bad, ", "), out)
	}
	return nil
}

// WriteBenchReport writes report.json and report.md. The run fails when a
// section could not be measured; a missed goal is reported, not failed.
func WriteBenchReport(r *Report, out string) (bool, error) {
	if err := r.WriteJSON(filepath.Join(out, "report.json")); err != nil {
		return true, err
	}
	if err := os.WriteFile(filepath.Join(out, "report.md"), []byte(r.Markdown()), 0o644); err != nil {
		return true, err
	}
	fmt.Print(r.Markdown())
	return len(r.Errors) > 0, nil
}
