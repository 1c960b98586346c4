package testutil

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// PostWithoutBody sends the head of a POST to path on the HTTP server at
// baseURL ("http://host:port"), announcing a body of length bytes that
// never comes, with header (zero or more "Name: value\r\n" lines) added.
// It returns the status line of the answer, read with a generous bound:
// a server that waits for the body fails the test.
func PostWithoutBody(t testing.TB, baseURL, path, header string, length int) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://")) //nolint:noctx // a test's raw connection
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n", path, length, header); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer to a POST %s whose body never came: %v (the server waits for it)", path, err)
	}
	return strings.TrimSpace(line)
}
