package graph_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/telemetry"
)

// The client names each call's span after its endpoint, so a trace reads
// "POST create_group" rather than a URL full of ids, and the token never
// reaches a span.
func TestTracedCallsAreNamedByEndpoint(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{
		Getenv: func(string) string { return "" }, SpanExporter: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	b := setup(t, sim.Config{}, func(c *graph.Config) {
		c.HTTPClient = &http.Client{Transport: tel.HTTPTransport(c.HTTPClient.Transport)}
	})
	ctx := context.Background()
	res, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "Traced"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = b.client.InviteLink(ctx, "no-such-group") // a failed call is a span too
	if err := tel.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, sp := range exp.GetSpans() {
		if sp.SpanKind != trace.SpanKindClient {
			t.Errorf("span %q is %v, want client", sp.Name, sp.SpanKind)
		}
		names[sp.Name] = true
		for _, a := range sp.Attributes {
			if strings.Contains(a.Value.String(), testToken) {
				t.Errorf("span %q attribute %s holds the access token", sp.Name, a.Key)
			}
		}
		if ep := attr(sp, string(telemetry.AttrEndpoint)); ep == "" {
			t.Errorf("span %q has no %s attribute", sp.Name, telemetry.AttrEndpoint)
		}
	}
	for _, want := range []string{"POST " + graph.EndpointCreateGroup, "GET " + graph.EndpointGetInviteLink} {
		if !names[want] {
			t.Errorf("no span named %q among %v (create answered request %q)", want, names, res.RequestID)
		}
	}
}

func attr(sp tracetest.SpanStub, key string) string {
	for _, a := range sp.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}
