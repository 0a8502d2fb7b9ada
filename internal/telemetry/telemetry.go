package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is the process's tracer provider. A nil *Tracing, or one built
// from a Config that is not Enabled, traces nothing and costs nothing: its
// wrappers return what they are given.
type Tracing struct {
	sdk *sdktrace.TracerProvider
}

// New returns the tracing of cfg: spans batched and posted over OTLP/HTTP
// (protobuf) to cfg.Endpoint, or, when cfg is not Enabled, none at all (no
// exporter is created). Failed exports are logged to log, at most one line
// per batch, and the spans dropped.
func New(cfg Config, version string, log *slog.Logger) (*Tracing, error) {
	if !cfg.Enabled() {
		return &Tracing{}, nil
	}
	// Every option is explicit: the exporter's own reading of the
	// environment is overridden.
	exp, err := otlptracehttp.New(context.Background(),
		otlptracehttp.WithEndpointURL(cfg.Endpoint),
		otlptracehttp.WithHeaders(cfg.Headers),
	)
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	return newTracing(cfg, version, sdktrace.WithBatcher(scrubber{SpanExporter: exp, log: log})), nil
}

// NewWithExporter returns tracing that hands each span to exp as it ends
// (tests pass an in-memory exporter), scrubbed as New's are.
func NewWithExporter(cfg Config, version string, exp sdktrace.SpanExporter) *Tracing {
	return newTracing(cfg, version, sdktrace.WithSyncer(scrubber{SpanExporter: exp}))
}

func newTracing(cfg Config, version string, processor sdktrace.TracerProviderOption) *Tracing {
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", version),
	)
	return &Tracing{sdk: sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler(cfg)),
		processor,
	)}
}

func sampler(cfg Config) sdktrace.Sampler {
	switch cfg.Sampler {
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(cfg.SamplerArg)
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SamplerArg))
	default:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	}
}

// on reports whether spans are recorded.
func (t *Tracing) on() bool { return t != nil && t.sdk != nil }

// Provider is the tracer provider: a no-op one when tracing is off.
func (t *Tracing) Provider() trace.TracerProvider {
	if !t.on() {
		return noop.NewTracerProvider()
	}
	return t.sdk
}

// Tracer is the tracer of registrar's own spans.
func (t *Tracing) Tracer() trace.Tracer {
	return t.Provider().Tracer("github.com/registrar/registrar")
}

// Propagator carries trace context in W3C traceparent and tracestate.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Handler wraps the public HTTP handler in a server span per request,
// named after the matched route ("POST /api/registrations"), never the raw
// path. An incoming traceparent is continued.
func (t *Tracing) Handler(next http.Handler) http.Handler {
	if !t.on() {
		return next
	}
	return otelhttp.NewHandler(next, "http",
		otelhttp.WithTracerProvider(t.sdk),
		otelhttp.WithPropagators(Propagator()),
		otelhttp.WithSpanNameFormatter(routeName),
	)
}

// routeName is a server span's name: the mux's pattern, prefixed by the
// method when the pattern has none; the method alone until the request is
// routed or when no route matched.
func routeName(_ string, r *http.Request) string {
	switch {
	case r.Pattern == "":
		return r.Method
	case strings.Contains(r.Pattern, " "):
		return r.Pattern
	default:
		return r.Method + " " + r.Pattern
	}
}

// Transport wraps a provider client's transport in a client span per call,
// named "provider METHOD". No trace context is sent to the provider.
func (t *Tracing) Transport(provider string, rt http.RoundTripper) http.RoundTripper {
	if !t.on() {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt,
		otelhttp.WithTracerProvider(t.sdk),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return provider + " " + r.Method }),
		otelhttp.WithSpanOptions(trace.WithAttributes(attribute.String("registrar.provider", provider))),
	)
}

// Shutdown exports the spans still buffered, within ctx's time, and stops
// the exporter. It does nothing when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.on() {
		return nil
	}
	if err := t.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}
