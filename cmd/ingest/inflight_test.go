package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/natsembed"
)

// Issue #3: SIGTERM lets the requests in flight finish. A command whose
// body is still on its way when the ingest has stopped taking connections
// is published and answered 202; the ingest stops once it has.
func TestSIGTERMLetsARequestInFlightFinish(t *testing.T) {
	t.Parallel()
	ns := natsembed.RunTest(t)
	base, cancel, done := startIngest(t, map[string]string{"NATS_URL": ns.ClientURL()})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	body := `{"id":"in-flight-1","type":"delete_group","phone_number_id":"106540352242922","group_id":"Y2FwaV9ncm91cDoxZD"}`
	// Expect: 100-continue: the server says "continue" when the handler
	// first reads the body, so the request is known to be in the handler.
	if _, err := fmt.Fprintf(conn, "POST /v1/commands HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer t1\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("first answer %q (%v), want 100 Continue", line, err)
	}
	if _, err := r.ReadString('\n'); err != nil { // the blank line after it
		t.Fatal(err)
	}

	cancel() // SIGTERM
	// The body goes once the ingest is stopping: its listener is closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			break
		}
		_ = c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the ingest still takes connections 10 s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := fmt.Fprint(conn, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no answer to the request in flight: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("request in flight answered %s, want 202", resp.Status)
	}
	awaitStopped(t, done, base)

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), "GROUPS_COMMANDS")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetLastMsgForSubject(context.Background(), "groups.cmd.>"); err != nil || m.Header.Get(jetstream.MsgIDHeader) != "in-flight-1" {
		t.Fatalf("command stream's last command: %v, %v; want in-flight-1", m, err)
	}
}
