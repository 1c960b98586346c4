package telemetry

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// receiver is a minimal OTLP collector: it decodes what it is sent and keeps it.
type receiver struct {
	mu      sync.Mutex
	traces  []*coltracepb.ExportTraceServiceRequest
	metrics []*colmetricpb.ExportMetricsServiceRequest
	headers []http.Header
	errs    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := io.Reader(r.Body)
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	data, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.headers = append(rc.headers, r.Header.Clone())
	var msg proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		req := &coltracepb.ExportTraceServiceRequest{}
		rc.traces = append(rc.traces, req)
		msg = req
	case "/v1/metrics":
		req := &colmetricpb.ExportMetricsServiceRequest{}
		rc.metrics = append(rc.metrics, req)
		msg = req
	default:
		rc.errs = append(rc.errs, "unexpected path "+r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if err := proto.Unmarshal(data, msg); err != nil {
		rc.errs = append(rc.errs, "decode "+r.URL.Path+": "+err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// exportedSpan is one span as a collector received it.
type exportedSpan struct {
	name     string
	resource map[string]string
}

func spansIn(reqs []*coltracepb.ExportTraceServiceRequest) []exportedSpan {
	var out []exportedSpan
	for _, req := range reqs {
		for _, rs := range req.GetResourceSpans() {
			res := resourceMap(rs.GetResource())
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, exportedSpan{name: s.GetName(), resource: res})
				}
			}
		}
	}
	return out
}

func resourceMap(r *resourcepb.Resource) map[string]string {
	m := map[string]string{}
	for _, kv := range r.GetAttributes() {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string { return v.GetStringValue() }

func TestOTLPHTTPExport(t *testing.T) {
	t.Parallel()
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	tel, err := Setup(context.Background(), Config{
		ServiceName:    "groupflow-worker",
		ServiceVersion: "1.2.3",
		Getenv: env(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL,
			"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
			"OTEL_EXPORTER_OTLP_HEADERS":  "x-api-key=k%3D1",
			"OTEL_RESOURCE_ATTRIBUTES":    "deployment.environment.name=test,team=groups%20ops",
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.TracingEnabled() {
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	ctx, span := tel.Tracer("test").Start(context.Background(), "process groups.cmd.*.create_group")
	_, child := tel.Tracer("test").Start(ctx, "POST /v23.0/{phone_number_id}/groups")
	child.End()
	span.End()
	tel.Metrics().CommandDone(ctx, "create_group", "succeeded", 0)
	if err := tel.Shutdown(context.Background()); err != nil { // flushes both signals
		t.Fatalf("Shutdown: %v", err)
	}

	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.errs) > 0 {
		t.Fatalf("receiver errors: %v", rc.errs)
	}
	spans := spansIn(rc.traces)
	var names []string
	for _, s := range spans {
		names = append(names, s.name)
	}
	slices.Sort(names)
	if got, want := strings.Join(names, ","), "POST /v23.0/{phone_number_id}/groups,process groups.cmd.*.create_group"; got != want {
		t.Fatalf("exported spans = %q, want %q", got, want)
	}
	for k, want := range map[string]string{
		"service.name":                "groupflow-worker",
		"service.version":             "1.2.3",
		"deployment.environment.name": "test",
		"team":                        "groups ops",
		"telemetry.sdk.language":      "go",
	} {
		if got := spans[0].resource[k]; got != want {
			t.Errorf("resource %s = %q, want %q", k, got, want)
		}
	}
	for _, h := range rc.headers {
		if got := h.Get("X-Api-Key"); got != "k=1" {
			t.Errorf("export request header x-api-key = %q, want k=1 (from OTEL_EXPORTER_OTLP_HEADERS)", got)
		}
	}

	var metricNames []string
	for _, req := range rc.metrics {
		for _, rm := range req.GetResourceMetrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					metricNames = append(metricNames, m.GetName())
					if m.GetName() == MetricCommands {
						pts := m.GetSum().GetDataPoints()
						if len(pts) != 1 || pts[0].GetAsInt() != 1 {
							t.Errorf("%s data points = %v, want one of 1", MetricCommands, pts)
						}
					}
				}
			}
		}
	}
	if !slices.Contains(metricNames, MetricCommands) {
		t.Errorf("OTLP metrics = %v, want %s among them", metricNames, MetricCommands)
	}
}

// traceCollector is an OTLP/gRPC trace service.
type traceCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
	md   []metadata.MD
}

func (c *traceCollector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.mu.Lock()
	c.reqs = append(c.reqs, req)
	c.md = append(c.md, md)
	c.mu.Unlock()
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestOTLPGRPCExport(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	col := &traceCollector{}
	coltracepb.RegisterTraceServiceServer(gs, col)
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	defer func() { gs.Stop(); <-done }()

	tel, err := Setup(context.Background(), Config{
		ServiceName: "groupflow-ingest",
		Getenv: env(map[string]string{
			"OTEL_TRACES_EXPORTER":               "otlp",
			"OTEL_METRICS_EXPORTER":              "prometheus",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + lis.Addr().String(),
			"OTEL_EXPORTER_OTLP_TRACES_HEADERS":  "authorization=Bearer%20collector",
			"OTEL_SERVICE_NAME":                  "ingest-eu",
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tel.Tracer("test").Start(context.Background(), "POST /v1/commands")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	col.mu.Lock()
	defer col.mu.Unlock()
	spans := spansIn(col.reqs)
	if len(spans) != 1 || spans[0].name != "POST /v1/commands" {
		t.Fatalf("collector got spans %v, want one POST /v1/commands", spans)
	}
	if got := spans[0].resource["service.name"]; got != "ingest-eu" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME's ingest-eu over the configured name", got)
	}
	if got := col.md[0].Get("authorization"); len(got) != 1 || got[0] != "Bearer collector" {
		t.Errorf("gRPC metadata authorization = %q, want the configured header", got)
	}
}

func TestSetupFromEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		tracing bool
		errHas  string // "" for no error
	}{
		{name: "Nothing configured is off", vars: nil},
		{name: "An endpoint turns tracing on", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, tracing: true},
		{name: "A traces endpoint turns tracing on", vars: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector:4318/v1/traces"}, tracing: true},
		{name: "Exporter otlp alone is on", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, tracing: true},
		{name: "Exporter none wins over an endpoint", vars: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "SDK disabled is off", vars: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}},
		{name: "Unsupported exporter", vars: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, errHas: `OTEL_TRACES_EXPORTER="zipkin" is not supported`},
		{name: "Unsupported protocol", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, errHas: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "Endpoint without scheme", vars: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, errHas: "OTEL_EXPORTER_OTLP_ENDPOINT must be"},
		{name: "Bad sampler", vars: map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, errHas: "OTEL_TRACES_SAMPLER"},
		{name: "Bad sampler ratio", vars: map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, errHas: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "Bad resource attributes", vars: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "team"}, errHas: "OTEL_RESOURCE_ATTRIBUTES: entry 1"},
		{name: "Bad SDK disabled flag", vars: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, errHas: "OTEL_SDK_DISABLED"},
		{name: "Bad headers do not echo the value", vars: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": "api-key=%zzSECRET"}, errHas: "entry 1 (api-key)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tel, err := Setup(context.Background(), Config{Getenv: env(tc.vars)})
			if tc.errHas != "" {
				if err == nil {
					_ = tel.Shutdown(context.Background()) // the test fails on the line below either way
					t.Fatalf("Setup succeeded, want an error containing %q", tc.errHas)
				}
				if !strings.Contains(err.Error(), tc.errHas) || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("Setup error = %q, want one line containing %q and no header value", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			// Only how Setup reads the environment is under test: the
			// endpoints are unreachable, so the final metrics export may fail.
			defer func() { _ = tel.Shutdown(context.Background()) }()
			if got := tel.TracingEnabled(); got != tc.tracing {
				t.Errorf("TracingEnabled = %v, want %v", got, tc.tracing)
			}
		})
	}
}

func TestSamplerFromEnvironment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, arg, want string }{
		{"", "", "ParentBased{root:AlwaysOnSampler,"},
		{"always_on", "", "AlwaysOnSampler"},
		{"always_off", "", "AlwaysOffSampler"},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}"},
		{"parentbased_traceidratio", "0.5", "ParentBased{root:TraceIDRatioBased{0.5},"},
		{"parentbased_always_off", "", "ParentBased{root:AlwaysOffSampler,"},
	} {
		s, err := samplerFromEnv(env(map[string]string{"OTEL_TRACES_SAMPLER": tc.name, "OTEL_TRACES_SAMPLER_ARG": tc.arg}))
		if err != nil {
			t.Errorf("sampler %q: %v", tc.name, err)
			continue
		}
		if got := s.Description(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("sampler %q arg %q = %s, want %s…", tc.name, tc.arg, got, tc.want)
		}
	}
}
