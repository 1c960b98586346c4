package deploytest

import (
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The command stream's source of the parked stream: the server
		// waits for its consumer's answer in a goroutine that a shutdown
		// does not end, for up to 30 s.
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*stream).trySetupSourceConsumer.func3"),
		// Same exceptions as the other packages that run nats-server and
		// HTTP clients in process: their pollers stop with the process.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine.func1"),
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.Cleanup(func(int) { removeBinaries() }),
	)
}

// repoRoot is the module root: deploy/ and cmd/ are found from it (go test
// runs in the package's directory).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// deployPath is a path under deploy/.
func deployPath(t testing.TB, parts ...string) string {
	t.Helper()
	return filepath.Join(append([]string{repoRoot(t), "deploy"}, parts...)...)
}
