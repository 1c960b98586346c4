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

// The client names each call's span as the HTTP conventions ask,
// "{method} {url.template}": "POST /v23.0/{phone_number_id}/groups" rather
// than a URL full of ids, with url.template and the endpoint's stable name
// (groupflow.endpoint, the label of the Graph metrics) as attributes, and
// the token never reaches a span.
func TestTracedCallsAreNamedByURLTemplate(t *testing.T) {
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
	if _, err := b.client.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: "Traced"}); err != nil {
		t.Fatal(err)
	}
	_, _ = b.client.InviteLink(ctx, "no-such-group") // a failed call is a span too
	if err := tel.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ template, endpoint string }{
		"POST /v23.0/{phone_number_id}/groups": {"/v23.0/{phone_number_id}/groups", graph.EndpointCreateGroup},
		"GET /v23.0/{group_id}/invite_link":    {"/v23.0/{group_id}/invite_link", graph.EndpointGetInviteLink},
	}
	var names []string
	for _, sp := range exp.GetSpans() {
		names = append(names, sp.Name)
		if sp.SpanKind != trace.SpanKindClient {
			t.Errorf("span %q is %v, want client", sp.Name, sp.SpanKind)
		}
		for _, a := range sp.Attributes {
			if strings.Contains(a.Value.String(), testToken) {
				t.Errorf("span %q attribute %s holds the access token", sp.Name, a.Key)
			}
		}
		w, ok := want[sp.Name]
		if !ok {
			continue
		}
		delete(want, sp.Name)
		if got := attr(sp, "url.template"); got != w.template {
			t.Errorf("span %q: url.template = %q, want %q", sp.Name, got, w.template)
		}
		if got := attr(sp, string(telemetry.AttrEndpoint)); got != w.endpoint {
			t.Errorf("span %q: %s = %q, want %q", sp.Name, telemetry.AttrEndpoint, got, w.endpoint)
		}
	}
	for name := range want {
		t.Errorf("no span named %q among %q", name, names)
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
