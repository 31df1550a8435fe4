// Package telemetry sets up the process's observability once: OpenTelemetry
// tracing with the W3C propagators, slog JSON logs that carry trace ids, and
// a Prometheus registry served on /metrics.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Config configures tracing.
type Config struct {
	// ServiceName is the default service.name resource attribute. The
	// standard variables win, as the SDK orders them: OTEL_SERVICE_NAME, then
	// service.name in OTEL_RESOURCE_ATTRIBUTES, then ServiceName; so each
	// container of a deployment can name itself (e.g. OTEL_SERVICE_NAME=lesson).
	ServiceName string
	// OTLPEndpoint is the OTLP/gRPC collector, e.g. "otel-collector:4317"
	// (plaintext) or "https://collector:4317". Empty means spans are created
	// (so trace ids reach logs and Kafka headers) but not exported.
	OTLPEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"OTLP/gRPC trace collector (empty: no export)"`
	// Logger receives exporter errors; nil discards them.
	Logger *slog.Logger
}

// Setup installs a global TracerProvider for cfg.ServiceName and the W3C
// TraceContext + Baggage propagator, exporting over OTLP/gRPC in batches when
// cfg.OTLPEndpoint is set. Call it once, early in main, before creating gRPC
// servers and clients (their stats handlers read the globals).
//
// shutdown flushes pending spans and stops the provider; call it last during
// shutdown ("flush traces"). It honours ctx's deadline.
func Setup(ctx context.Context, cfg Config) (shutdown func(context.Context) error, err error) {
	if cfg.ServiceName == "" {
		return nil, errors.New("telemetry: ServiceName is required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Later detectors override earlier ones: the code's default name, then the
	// OTEL_* environment (OTEL_SERVICE_NAME over OTEL_RESOURCE_ATTRIBUTES), then
	// the SDK's own telemetry.sdk.* attributes, as in resource.Default.
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	switch {
	case errors.Is(err, resource.ErrPartialResource):
		// A malformed OTEL_RESOURCE_ATTRIBUTES: keep what parsed.
		logger.Warn("telemetry: resource attributes from the environment", "err", err)
	case err != nil:
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	if cfg.OTLPEndpoint != "" {
		exp, err := otlptracegrpc.New(ctx, endpointOptions(cfg.OTLPEndpoint)...)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		logger.Info("exporting traces", "endpoint", cfg.OTLPEndpoint)
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry error", "err", err)
	}))
	return tp.Shutdown, nil
}

// endpointOptions accepts both a URL ("http://host:4317", TLS only for
// https) and a bare "host:port" (plaintext, the usual in-cluster collector).
func endpointOptions(endpoint string) []otlptracegrpc.Option {
	if strings.Contains(endpoint, "://") {
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(endpoint)}
	}
	return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure()}
}
