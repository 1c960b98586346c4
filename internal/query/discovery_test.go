package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/query"
)

func TestDiscoveryListsServiceAndEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	subj, err := micro.ControlSubject(micro.InfoVerb, query.ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := b.nc.Request(subj, nil, 10*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != query.ServiceName || info.Version != query.Version || info.Type != micro.InfoResponseType {
		t.Errorf("info: name %q version %q type %q", info.Name, info.Version, info.Type)
	}
	var names []string
	for _, ep := range info.Endpoints {
		names = append(names, ep.Name)
		if want := b.names.Query("*", ep.Name); ep.Subject != want || ep.QueueGroup != query.QueueGroup {
			t.Errorf("endpoint %s: subject %q queue %q, want %q %q", ep.Name, ep.Subject, ep.QueueGroup, want, query.QueueGroup)
		}
		if ep.Metadata["request_schema"] != "query."+ep.Name+".request.json" {
			t.Errorf("endpoint %s: metadata %v", ep.Name, ep.Metadata)
		}
	}
	if want := events.QueryNames(); !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(want))) {
		t.Errorf("endpoints %v, want %v", names, want)
	}

	t.Run("Stats carry the real counts", func(t *testing.T) {
		_ = b.askErr(t, events.QueryGroupInfo, phone, `{}`, query.CodeBadRequest) // only to count an error
		subj, _ := micro.ControlSubject(micro.StatsVerb, query.ServiceName, "")
		msg, err := b.nc.Request(subj, nil, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var stats micro.Stats
		if err := json.Unmarshal(msg.Data, &stats); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(stats.Endpoints, func(e *micro.EndpointStats) bool { return e.Name == events.QueryGroupInfo })
		if i < 0 {
			t.Fatalf("no group_info in stats %s", msg.Data)
		}
		var data query.EndpointStats
		if err := json.Unmarshal(stats.Endpoints[i].Data, &data); err != nil {
			t.Fatalf("stats data %s: %v", stats.Endpoints[i].Data, err)
		}
		if data.Requests != 1 || data.Errors != 1 || data.LastError == "" {
			t.Errorf("group_info stats %+v, want 1 request, 1 error and its message", data)
		}
	})
}

func TestTraceparentContinues(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := setup(t, func(o *options) { o.cfg = func(c *query.Config) { c.Tracer = tp.Tracer("query-test") } })

	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	msg := nats.NewMsg(b.names.Query(phone, events.QueryCommandStatus))
	msg.Header.Set("traceparent", "00-"+traceID+"-"+parentID+"-01")
	msg.Data = []byte(`{"command_id":"traced-1"}`)
	if _, err := b.nc.RequestMsg(msg, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var span sdktrace.ReadOnlySpan
	eventually(t, func() bool {
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindConsumer {
				span = s
				return true
			}
		}
		return false
	}, "no consumer span recorded")
	if got := span.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("span trace id %s, want the caller's %s", got, traceID)
	}
	if got := span.Parent().SpanID().String(); got != parentID {
		t.Errorf("span parent %s, want the caller's span %s", got, parentID)
	}
}

func TestStoppedServiceTakesNoRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *options) { o.noSvc = true })
	svc := b.start(t, nil)
	b.askOK(t, events.QueryListGroups, nil, nil)
	if err := svc.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	_, err := b.nc.Request(b.names.Query(phone, events.QueryListGroups), nil, 10*time.Second)
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after Stop: %v, want no responders", err)
	}
	if err := svc.InvalidateNumber(context.Background(), phone); err != nil {
		// The cache outlives the endpoints: invalidation still works.
		t.Errorf("InvalidateNumber after Stop: %v", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	if _, err := query.New(query.Config{}); err == nil {
		t.Error("New with an empty config succeeded, want an error naming the missing fields")
	}
}
