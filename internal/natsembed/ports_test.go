package natsembed

import (
	"errors"
	"net"
	"strconv"
	"testing"
	"time"
)

// takePort holds a local port until the test ends, as another process
// would.
func takePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a test's local listener
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func TestAServerOnATakenPortFailsAtOnce(t *testing.T) {
	port := takePort(t)
	start := time.Now()
	s, err := Start(Options{Dir: t.TempDir(), Port: port})
	if err == nil {
		s.Shutdown()
		t.Fatalf("server started on port %d, which another listener holds", port)
	}
	if !errors.Is(err, errStart) {
		t.Fatalf("error = %v, want the server's own start failure", err)
	}
	// Not a speed check: without the fatal error the wait is the whole
	// DefaultReadyTimeout; this only tells the two paths apart.
	if waited := time.Since(start); waited >= DefaultReadyTimeout {
		t.Fatalf("Start waited %s, the whole ready timeout, for a server that had failed", waited)
	}
	t.Log(err)
}

func TestAClusterStartsWhenARoutePortIsTakenFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	taken := takePort(t)
	picked := 0
	pickPort = func(host string) (int, error) {
		picked++
		if picked == 2 { // the first attempt's second route port is lost
			return taken, nil
		}
		return freePort(host)
	}
	t.Cleanup(func() { pickPort = freePort })

	c, err := StartCluster(t.TempDir(), 3)
	if err != nil {
		t.Fatalf("cluster did not start after losing a route port: %v", err)
	}
	t.Cleanup(c.Shutdown)
	if picked != 6 {
		t.Fatalf("%d route ports picked, want 6: one attempt lost a port, one more started", picked)
	}
	for _, s := range c.Servers {
		if s.opts.cluster.port == taken {
			t.Fatalf("server %s routes on port %s, which another listener holds", s.opts.ServerName, strconv.Itoa(taken))
		}
	}
	if got := len(c.Leader().JetStreamClusterPeers()); got != 3 {
		t.Fatalf("leader sees %d peers, want 3", got)
	}
}
