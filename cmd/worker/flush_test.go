package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/natsembed"
)

// spanNames is an OTLP/HTTP trace receiver that keeps the names of the
// spans it is sent.
type spanNames struct {
	mu    sync.Mutex
	names []string
}

func (s *spanNames) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	req := &coltracepb.ExportTraceServiceRequest{}
	if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.names = append(s.names, sp.GetName())
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

func (s *spanNames) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// DESIGN §5: on SIGTERM the worker flushes traces before it exits. The
// batch span processor sends every 5 s; a worker stopped sooner after a
// command must send that command's spans as it stops, not lose them.
func TestStoppingFlushesTheTraces(t *testing.T) {
	t.Parallel()
	ns := natsembed.RunTest(t)
	s := sim.New(sim.Config{})
	simSrv := httptest.NewServer(s)
	t.Cleanup(func() { simSrv.Close(); s.Close() })
	spans := &spanNames{}
	collector := httptest.NewServer(spans)
	t.Cleanup(collector.Close)
	httpPort := freePort(t)
	env := map[string]string{
		"NATS_URL":                    ns.ClientURL(),
		"WHATSAPP_ACCESS_TOKEN":       sim.DefaultAccessToken,
		"GRAPH_API_BASE_URL":          simSrv.URL,
		"WORKER_ADDR":                 fmt.Sprintf("127.0.0.1:%d", httpPort),
		"WORKER_SHUTDOWN_GRACE":       "1s",
		"LOG_LEVEL":                   "error",
		"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_METRICS_EXPORTER":       "none",
	}
	stop := startMain(t, nil, env)
	ctx := context.Background()
	awaitReadyz(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort), http.StatusOK)

	gc, err := graph.New(graph.Config{BaseURL: simSrv.URL, AccessToken: sim.DefaultAccessToken})
	if err != nil {
		t.Fatal(err)
	}
	const phone = "106540352242922"
	if _, err := gc.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "Traced"}); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if r := getInviteLink(t, js, phone, s.State().Numbers[0].Groups[0].ID, "traced-1"); r.Outcome != events.OutcomeSucceeded {
		t.Fatalf("result %+v", r)
	}

	if err := stop(15 * time.Second); err != nil { // SIGTERM
		t.Fatal(err)
	}
	got := spans.get()
	var process, call bool
	for _, n := range got {
		process = process || strings.HasPrefix(n, "process ") && strings.HasSuffix(n, ".get_invite_link")
		call = call || strings.Contains(n, "/invite_link")
	}
	if !process || !call {
		t.Fatalf("spans received by the time the worker stopped: %q; want the command's process span and its Graph call", got)
	}
}
