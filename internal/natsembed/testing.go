package natsembed

import "testing"

// RunTest starts a single JetStream server on a free port with its store in
// t.TempDir and stops it when the test ends.
func RunTest(t testing.TB) *Server {
	t.Helper()
	return RunTestWith(t, Options{})
}

// RunTestWith is RunTest with opts (a realistic MaxPayload, say); an empty
// Dir is a t.TempDir.
func RunTestWith(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// RunTestCluster starts an n-server JetStream cluster with stores in
// t.TempDir, waits for a leader with all peers, and stops it when the test ends.
func RunTestCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartCluster(t.TempDir(), n)
	if err != nil {
		t.Fatalf("start embedded NATS cluster: %v", err)
	}
	t.Cleanup(c.Shutdown)
	return c
}
