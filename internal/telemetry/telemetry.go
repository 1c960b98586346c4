package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of groupflow's own tracers and
// meters when a package does not name its own.
const ScopeName = "github.com/groupflow/groupflow"

// Config says how to set up telemetry. Everything else comes from the
// standard OTEL_* variables read through Getenv.
type Config struct {
	// ServiceName is the service.name resource attribute ("groupflow-worker").
	// A service.name in OTEL_RESOURCE_ATTRIBUTES overrides it, and
	// OTEL_SERVICE_NAME overrides both. Defaults to "groupflow".
	ServiceName string

	// ServiceVersion is the service.version resource attribute (the build's
	// version). Omitted when empty.
	ServiceVersion string

	// Getenv reads the OTEL_* variables. Defaults to os.Getenv.
	Getenv func(string) string

	// SpanExporter, when set, turns tracing on and receives every span
	// through a batch span processor, exactly as an OTLP exporter would;
	// OTEL_TRACES_EXPORTER and the OTLP endpoints are then ignored for
	// traces. For tests (tracetest.InMemoryExporter: call ForceFlush before
	// reading) and benchmarks. Defaults to none.
	SpanExporter sdktrace.SpanExporter

	// Sampler overrides OTEL_TRACES_SAMPLER. Defaults to the variable, else
	// parentbased_always_on.
	Sampler sdktrace.Sampler

	// MetricReader is an extra reader attached to the meter provider
	// alongside the Prometheus exporter, e.g. sdkmetric.NewManualReader in
	// tests. Defaults to none.
	MetricReader sdkmetric.Reader

	// Component is the kind of process, which picks the counter series
	// that alerts watch and that are exported at 0 from start-up: only
	// those of work the component does (the ingest's webhook signature
	// failures, the worker's app and account throttles), so one's /metrics
	// does not suggest it does the other's. Defaults to none: no series at
	// 0 (groupctl).
	Component Component
}

// Component is a kind of groupflow process, for Config.Component.
type Component string

const (
	// ComponentIngest receives Meta's webhooks and the command API's
	// requests (cmd/ingest).
	ComponentIngest Component = "ingest"
	// ComponentWorker executes commands against the Graph API (cmd/worker).
	ComponentWorker Component = "worker"
)

// Telemetry holds the tracer and meter providers of one process, the
// Prometheus registry behind /metrics, and the metric instruments.
// Build it with Setup and call Shutdown before exit.
type Telemetry struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	sdkTracer      *sdktrace.TracerProvider // nil when tracing is off
	sdkMeter       *sdkmetric.MeterProvider // nil when OTEL_SDK_DISABLED
	registry       *prometheus.Registry
	metricsHandler http.Handler
	metrics        *Metrics
}

// Setup builds the process's telemetry from cfg and the OTEL_* variables:
//
//   - OTEL_SDK_DISABLED=true: everything is a no-op (and /metrics is empty).
//   - Traces are exported when OTEL_TRACES_EXPORTER=otlp, or when it is unset
//     and OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT is
//     set; OTEL_TRACES_EXPORTER=none or nothing set means a no-op tracer.
//   - OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL picks grpc or
//     http/protobuf (the default); _HEADERS add request headers.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG pick the sampler.
//   - Metrics always go to the Prometheus registry behind MetricsHandler, and
//     over OTLP on the same rules as traces (OTEL_METRICS_EXPORTER,
//     OTEL_EXPORTER_OTLP_METRICS_ENDPOINT), every OTEL_METRIC_EXPORT_INTERVAL.
//   - OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME add to and override the
//     resource.
//
// An invalid variable is an error naming it, in one line.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t, err := build(ctx, cfg, getenv)
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	return t, nil
}

func build(ctx context.Context, cfg Config, getenv func(string) string) (*Telemetry, error) {
	switch cfg.Component {
	case "", ComponentIngest, ComponentWorker:
	default:
		return nil, fmt.Errorf("unknown Component %q (want %q or %q)", cfg.Component, ComponentIngest, ComponentWorker)
	}
	disabled, err := boolFromEnv(getenv, "OTEL_SDK_DISABLED")
	if err != nil {
		return nil, err
	}
	if disabled {
		mp := metricnoop.NewMeterProvider()
		m, err := NewMetrics(mp.Meter(ScopeName))
		if err != nil {
			return nil, err
		}
		m.zeroAlerted(cfg.Component)
		reg := prometheus.NewRegistry()
		return &Telemetry{
			tracerProvider: tracenoop.NewTracerProvider(),
			meterProvider:  mp,
			registry:       reg,
			metricsHandler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
			metrics:        m,
		}, nil
	}

	res, err := newResource(ctx, cfg, getenv)
	if err != nil {
		return nil, err
	}
	traces, err := otlpFromEnv(getenv, "TRACES")
	if err != nil {
		return nil, err
	}
	metrics, err := otlpFromEnv(getenv, "METRICS")
	if err != nil {
		return nil, err
	}
	sampler := cfg.Sampler
	if sampler == nil {
		if sampler, err = samplerFromEnv(getenv); err != nil {
			return nil, err
		}
	}
	interval, err := millisFromEnv(getenv, "OTEL_METRIC_EXPORT_INTERVAL")
	if err != nil {
		return nil, err
	}

	t := &Telemetry{registry: prometheus.NewRegistry()}
	ok := false
	defer func() {
		if !ok { // release exporters already built
			_ = t.Shutdown(context.WithoutCancel(ctx))
		}
	}()

	// Metrics: Prometheus always, into a registry of our own so nothing
	// else in the process (or a second Setup in a test) shares its series.
	t.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	promExporter, err := otelprom.New(
		otelprom.WithRegisterer(t.registry),
		otelprom.WithoutScopeInfo(), // one scope label per series is noise on dashboards
	)
	if err != nil {
		return nil, fmt.Errorf("create prometheus exporter: %w", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter)}
	if cfg.MetricReader != nil {
		mopts = append(mopts, sdkmetric.WithReader(cfg.MetricReader))
	}
	if metrics.enabled {
		exp, err := newMetricExporter(ctx, metrics)
		if err != nil {
			return nil, err
		}
		var ropts []sdkmetric.PeriodicReaderOption
		if interval > 0 {
			ropts = append(ropts, sdkmetric.WithInterval(interval))
		}
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, ropts...)))
	}
	mopts = append(mopts, sdkmetric.WithView(HTTPServerView))
	t.sdkMeter = sdkmetric.NewMeterProvider(mopts...)
	t.meterProvider = t.sdkMeter
	t.metricsHandler = promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})

	// Traces: a no-op provider unless something will receive the spans, so
	// an unconfigured process pays nothing for its instrumentation.
	exporter := cfg.SpanExporter
	if exporter == nil && traces.enabled {
		if exporter, err = newSpanExporter(ctx, traces); err != nil {
			return nil, err
		}
	}
	if exporter != nil {
		t.sdkTracer = sdktrace.NewTracerProvider(
			sdktrace.WithResource(res),
			sdktrace.WithSampler(sampler),
			sdktrace.WithBatcher(exporter),
		)
		t.tracerProvider = t.sdkTracer
	} else {
		t.tracerProvider = tracenoop.NewTracerProvider()
	}

	if t.metrics, err = NewMetrics(t.meterProvider.Meter(ScopeName)); err != nil {
		return nil, err
	}
	t.metrics.zeroAlerted(cfg.Component)
	ok = true
	return t, nil
}

func newResource(ctx context.Context, cfg Config, getenv func(string) string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{semconv.ServiceName(cmp.Or(cfg.ServiceName, "groupflow"))}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	fromEnv, err := resourceAttrsFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	attrs = append(attrs, fromEnv...) // later entries win
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(attrs...),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("build resource: %w", err)
	}
	return res, nil
}

func newSpanExporter(ctx context.Context, t otlpTarget) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch t.protocol {
	case protocolGRPC:
		var opts []otlptracegrpc.Option
		if t.endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(t.endpoint))
		}
		if t.headers != nil {
			opts = append(opts, otlptracegrpc.WithHeaders(t.headers))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	default:
		var opts []otlptracehttp.Option
		if t.endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(t.endpoint))
		}
		if t.headers != nil {
			opts = append(opts, otlptracehttp.WithHeaders(t.headers))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP trace exporter: %w", err)
	}
	return exp, nil
}

func newMetricExporter(ctx context.Context, t otlpTarget) (sdkmetric.Exporter, error) {
	var (
		exp sdkmetric.Exporter
		err error
	)
	switch t.protocol {
	case protocolGRPC:
		var opts []otlpmetricgrpc.Option
		if t.endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(t.endpoint))
		}
		if t.headers != nil {
			opts = append(opts, otlpmetricgrpc.WithHeaders(t.headers))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	default:
		var opts []otlpmetrichttp.Option
		if t.endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(t.endpoint))
		}
		if t.headers != nil {
			opts = append(opts, otlpmetrichttp.WithHeaders(t.headers))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("create OTLP metric exporter: %w", err)
	}
	return exp, nil
}

// TracingEnabled reports whether spans are recorded and exported. When it
// is false, tracers are no-ops that still pass an incoming trace context on.
func (t *Telemetry) TracingEnabled() bool { return t.sdkTracer != nil }

// TracerProvider returns the process's tracer provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider { return t.tracerProvider }

// Tracer returns a tracer for an instrumentation scope, by convention the
// importing package's path ("github.com/groupflow/groupflow/internal/jobs").
func (t *Telemetry) Tracer(scope string) trace.Tracer {
	return t.tracerProvider.Tracer(scope)
}

// MeterProvider returns the process's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider { return t.meterProvider }

// Metrics returns groupflow's metric instruments, recorded into this
// process's meter provider.
func (t *Telemetry) Metrics() *Metrics { return t.metrics }

// MetricsHandler serves the Prometheus text exposition of every metric
// (groupflow's, the HTTP instrumentation's, Go runtime and process) for
// GET /metrics.
func (t *Telemetry) MetricsHandler() http.Handler { return t.metricsHandler }

// Propagator returns the propagator groupflow uses everywhere: W3C trace
// context and baggage.
func (t *Telemetry) Propagator() propagation.TextMapPropagator { return propagator }

// InstallGlobal makes these providers and the propagator the otel globals,
// for libraries that only use otel.GetTracerProvider(), and sends the SDK's
// internal errors (a failed export) to report. Only a main should call it;
// everything in groupflow is handed its providers explicitly.
func (t *Telemetry) InstallGlobal(report func(error)) {
	otel.SetTracerProvider(t.tracerProvider)
	otel.SetMeterProvider(t.meterProvider)
	otel.SetTextMapPropagator(propagator)
	if report != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(report))
	}
}

// ForceFlush exports every ended span and the current metrics now.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	var errs []error
	if t.sdkTracer != nil {
		errs = append(errs, t.sdkTracer.ForceFlush(ctx))
	}
	if t.sdkMeter != nil {
		errs = append(errs, t.sdkMeter.ForceFlush(ctx))
	}
	return errors.Join(errs...)
}

// Shutdown flushes and stops the exporters; spans ended before it are
// exported (within ctx's deadline), later ones are dropped. Call it once,
// last, with a bounded context.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	if t.sdkTracer != nil {
		errs = append(errs, t.sdkTracer.Shutdown(ctx))
	}
	if t.sdkMeter != nil {
		errs = append(errs, t.sdkMeter.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry: shut down: %w", err)
	}
	return nil
}
