package scripts_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/groupflow/groupflow/internal/testutil"
)

// buildStack builds the binaries run-stack.sh starts into a temporary BIN.
func buildStack(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator), "./cmd/graphsim", "./cmd/worker", "./cmd/ingest")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddrs returns n loopback addresses nothing listens on now.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var addrs []string
	// Held until all are picked, so that no two are the same.
	var held []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		held = append(held, l)
	}
	for _, l := range held {
		_ = l.Close()
	}
	return addrs
}

// stack is one run of run-stack.sh in a process group of its own.
type stack struct {
	cmd  *exec.Cmd
	out  testutil.SyncBuffer // what it printed
	done chan error
}

// startStack runs run-stack.sh on its own ports and data directory data,
// and returns once it says the stack is running (running true) or it has
// exited (running false).
func startStack(t *testing.T, bin, data string) (s *stack, running bool) {
	t.Helper()
	a := freeAddrs(t, 4)
	_, natsPort, _ := net.SplitHostPort(a[0])
	cmd := exec.Command("bash", "./run-stack.sh")
	cmd.Env = append(os.Environ(), "BIN="+bin, "DATA="+data, "NATS_PORT="+natsPort,
		"WORKER_ADDR="+a[1], "INGEST_ADDR="+a[2], "SIM_ADDR="+a[3], "WHATSAPP_ACCESS_TOKEN=")
	// Its own group, as a terminal's Ctrl-C would reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s = &stack{cmd: cmd, done: make(chan error, 1)}
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Error(err)
		}
	})
	go func() { s.done <- cmd.Wait(); _ = pw.Close() }()
	started := make(chan bool, 1)
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		said := false
		for sc.Scan() {
			_, _ = fmt.Fprintln(&s.out, sc.Text())
			if !said && strings.Contains(sc.Text(), "groupflow is running") {
				said = true
				started <- true
			}
		}
		if !said {
			started <- false
		}
	}()
	guard := time.NewTimer(2 * time.Minute) // a hung start, not a speed limit
	defer guard.Stop()
	select {
	case running = <-started:
	case <-guard.C:
		t.Fatalf("run-stack.sh neither started nor exited:\n%s", s.out.String())
	}
	if !running {
		<-lines
	}
	return s, running
}

// wait returns how the script ended, once it has.
func (s *stack) wait() error {
	err := <-s.done
	s.done <- err
	return err
}

// stop sends the group SIGTERM (what Ctrl-C does, for a shell that may
// have been started with SIGINT ignored) and waits for the script; it
// fails only if the script did not stop. wait says how it ended.
func (s *stack) stop(t *testing.T) error {
	t.Helper()
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return nil
	case <-time.After(time.Minute):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		return errors.New("run-stack.sh did not stop within a minute of SIGTERM; killed")
	}
}

// TestMakeRunRefusesADataDirectoryAnotherStackUses: moving every port
// (the README's advice when another stack runs) must not start a second
// embedded NATS server on the first one's JetStream store, nor write over
// its logs.
func TestMakeRunRefusesADataDirectoryAnotherStackUses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stack")
	}
	bin := buildStack(t)
	data := t.TempDir()
	first, running := startStack(t, bin, data)
	if !running {
		t.Fatalf("the first stack did not start:\n%s", first.out.String())
	}
	second, running := startStack(t, bin, data)
	if running {
		t.Fatalf("a second stack started on the first one's data directory %s", data)
	}
	err := second.wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second stack ended with %v, want exit status 1:\n%s", err, second.out.String())
	}
	if got := second.out.String(); !strings.Contains(got, data) || !strings.Contains(got, "DATA") {
		t.Fatalf("second stack said:\n%s\nwant it to name the data directory %s and DATA", got, data)
	}
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := first.wait(); err != nil {
		t.Fatalf("first stack stopped with %v, want exit 0:\n%s", err, first.out.String())
	}
	if !strings.Contains(first.out.String(), "stack stopped") {
		t.Fatalf("first stack did not say it stopped:\n%s", first.out.String())
	}
	if _, err := os.Stat(filepath.Join(data, "stack.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the stopped stack left its hold on %s (stack.pid: %v)", data, err)
	}
}
