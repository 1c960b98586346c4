package telemetry

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Protocols accepted in OTEL_EXPORTER_OTLP_[signal_]PROTOCOL.
const (
	protocolGRPC = "grpc"
	protocolHTTP = "http/protobuf"
)

// otlpTarget is what the OTEL_* variables say about exporting one signal
// (traces or metrics) over OTLP.
type otlpTarget struct {
	enabled  bool
	protocol string
	endpoint string // full URL; "" leaves the exporter's default (localhost:4317 / :4318)
	headers  map[string]string
}

// otlpFromEnv reads the exporter selection for one signal, following the
// OpenTelemetry environment specification: the signal's own variable wins
// over the generic one. With OTEL_<SIGNAL>_EXPORTER unset, OTLP is on only
// when an endpoint is set, so a laptop with no collector exports nothing.
// Header values are never put in an error: they usually hold API keys.
func otlpFromEnv(getenv func(string) string, signal string) (otlpTarget, error) {
	var t otlpTarget
	exporterVar := "OTEL_" + signal + "_EXPORTER"
	specific := "OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT"
	generic := "OTEL_EXPORTER_OTLP_ENDPOINT"

	names := splitList(getenv(exporterVar))
	if len(names) == 0 {
		t.enabled = getenv(specific) != "" || getenv(generic) != ""
	}
	for _, n := range names {
		switch {
		case n == "otlp":
			t.enabled = true
		case n == "none":
		case n == "prometheus" && signal == "METRICS":
			// Always on: MetricsHandler serves it.
		default:
			return t, fmt.Errorf("%s=%q is not supported (use otlp or none)", exporterVar, n)
		}
	}
	if !t.enabled {
		return t, nil
	}

	protoVar := "OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"
	t.protocol = strings.TrimSpace(getenv(protoVar))
	if t.protocol == "" {
		protoVar = "OTEL_EXPORTER_OTLP_PROTOCOL"
		t.protocol = strings.TrimSpace(getenv(protoVar))
	}
	switch t.protocol {
	case "":
		t.protocol = protocolHTTP // the specification's default
	case protocolGRPC, protocolHTTP:
	default:
		return t, fmt.Errorf("%s=%q is not supported (use grpc or http/protobuf)", protoVar, t.protocol)
	}

	if v := strings.TrimSpace(getenv(specific)); v != "" {
		if err := checkEndpoint(specific, v); err != nil {
			return t, err
		}
		t.endpoint = v // used as-is, path included
	} else if v := strings.TrimSpace(getenv(generic)); v != "" {
		if err := checkEndpoint(generic, v); err != nil {
			return t, err
		}
		t.endpoint = v
		if t.protocol == protocolHTTP {
			// The generic endpoint is a base URL: each signal appends its path.
			t.endpoint = strings.TrimRight(v, "/") + "/v1/" + strings.ToLower(signal)
		}
	}

	hdrVar := "OTEL_EXPORTER_OTLP_" + signal + "_HEADERS"
	raw := getenv(hdrVar)
	if raw == "" {
		hdrVar = "OTEL_EXPORTER_OTLP_HEADERS"
		raw = getenv(hdrVar)
	}
	kvs, err := parseKeyValues(raw)
	if err != nil {
		return t, fmt.Errorf("%s: %w", hdrVar, err)
	}
	if len(kvs) > 0 {
		t.headers = make(map[string]string, len(kvs))
		for _, kv := range kvs {
			t.headers[kv[0]] = kv[1]
		}
	}
	return t, nil
}

func checkEndpoint(name, v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s must be an http:// or https:// URL with a host", name)
	}
	return nil
}

// samplerFromEnv maps OTEL_TRACES_SAMPLER (+ _ARG) to a sampler. Unset means
// parentbased_always_on, the specification's default: a caller's sampling
// decision is honoured, and new traces are all recorded.
func samplerFromEnv(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	ratio := func() (float64, error) {
		arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG=%q must be a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER=%q is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)
	}
}

// resourceAttrsFromEnv returns the attributes of OTEL_RESOURCE_ATTRIBUTES
// followed by OTEL_SERVICE_NAME, in the order that gives the specification's
// precedence when later entries win.
func resourceAttrsFromEnv(getenv func(string) string) ([]attribute.KeyValue, error) {
	kvs, err := parseKeyValues(getenv("OTEL_RESOURCE_ATTRIBUTES"))
	if err != nil {
		return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	attrs := make([]attribute.KeyValue, 0, len(kvs)+1)
	for _, kv := range kvs {
		attrs = append(attrs, attribute.String(kv[0], kv[1]))
	}
	if v := strings.TrimSpace(getenv("OTEL_SERVICE_NAME")); v != "" {
		attrs = append(attrs, attribute.String("service.name", v))
	}
	return attrs, nil
}

// parseKeyValues parses the "k1=v1,k2=v2" lists of OTEL_RESOURCE_ATTRIBUTES
// and OTEL_EXPORTER_OTLP_HEADERS: whitespace around entries is ignored and
// values are percent-decoded. Errors name the entry's position, never its
// value, which may be a credential.
func parseKeyValues(s string) ([][2]string, error) {
	var out [][2]string
	for i, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("entry %d is not key=value", i+1)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s) has a badly percent-encoded value", i+1, k)
		}
		out = append(out, [2]string{k, dv})
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// boolFromEnv reads a boolean variable; unset is false.
func boolFromEnv(getenv func(string) string, name string) (bool, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(strings.ToLower(v))
	if err != nil {
		return false, fmt.Errorf("%s=%q must be true or false", name, v)
	}
	return b, nil
}

// millisFromEnv reads a duration given in milliseconds, as the metric
// export variables are; unset is 0.
func millisFromEnv(getenv func(string) string, name string) (time.Duration, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.Atoi(v)
	if err != nil || ms <= 0 {
		return 0, fmt.Errorf("%s=%q must be a positive number of milliseconds", name, v)
	}
	return time.Duration(ms) * time.Millisecond, nil
}
