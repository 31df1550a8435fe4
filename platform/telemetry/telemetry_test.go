package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/telemetry"
)

// TestSetup is not parallel: it installs process-wide OpenTelemetry globals.
func TestSetup(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
	}{
		{"no exporter", ""},
		// The exporter connects lazily, so an unreachable collector does not
		// fail Setup; shutdown is bounded by its context.
		{"plaintext endpoint", "127.0.0.1:1"},
		{"url endpoint", "http://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "test", OTLPEndpoint: tt.endpoint})
			if err != nil {
				t.Fatalf("Setup() = %v", err)
			}
			ctx, span := otel.Tracer("test").Start(context.Background(), "op")
			if !span.SpanContext().IsValid() {
				t.Error("span has no valid trace id")
			}
			carrier := propagation.MapCarrier{}
			otel.GetTextMapPropagator().Inject(ctx, carrier)
			if !strings.HasPrefix(carrier.Get("traceparent"), "00-"+span.SpanContext().TraceID().String()) {
				t.Errorf("traceparent = %q", carrier.Get("traceparent"))
			}
			span.End()
			sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_ = shutdown(sctx) // an unreachable collector may report an export error
		})
	}
	if _, err := telemetry.Setup(context.Background(), telemetry.Config{}); err == nil {
		t.Error("Setup without ServiceName succeeded")
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	spanCtx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	tests := []struct {
		name        string
		ctx         context.Context
		level       slog.Level
		logLevel    slog.Level
		attrs       []any
		wantLogged  bool
		wantTraceID string
	}{
		{"with span", spanCtx, slog.LevelInfo, slog.LevelInfo, nil, true, traceID.String()},
		{"without span", context.Background(), slog.LevelInfo, slog.LevelInfo, nil, true, ""},
		{"explicit trace id kept", spanCtx, slog.LevelInfo, slog.LevelInfo, []any{"trace_id", "mine"}, true, "mine"},
		{"below level", spanCtx, slog.LevelWarn, slog.LevelInfo, nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			l := telemetry.NewLogger("lesson", tt.level, &buf).With("component", "x")
			l.Log(tt.ctx, tt.logLevel, "hello", tt.attrs...)
			if !tt.wantLogged {
				if buf.Len() != 0 {
					t.Errorf("logged %q below level", buf.String())
				}
				return
			}
			var rec map[string]any
			if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
				t.Fatalf("not JSON: %q", buf.String())
			}
			if rec["service"] != "lesson" || rec["component"] != "x" || rec["msg"] != "hello" {
				t.Errorf("record = %v", rec)
			}
			got, _ := rec["trace_id"].(string)
			if got != tt.wantTraceID {
				t.Errorf("trace_id = %q, want %q (record %v)", got, tt.wantTraceID, rec)
			}
			if tt.wantTraceID == traceID.String() && rec["span_id"] != spanID.String() {
				t.Errorf("span_id = %v", rec["span_id"])
			}
		})
	}
}

func TestMetricsHandler(t *testing.T) {
	t.Parallel()
	m := telemetry.NewMetrics()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "puchi_test_total", Help: "test counter"})
	m.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	for _, want := range []string{"puchi_test_total 3", "go_goroutines", "process_"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestSetupServiceName: the environment names the service instead of
// Config.ServiceName (one image, one name per container): OTEL_SERVICE_NAME,
// else service.name in OTEL_RESOURCE_ATTRIBUTES.
func TestSetupServiceName(t *testing.T) {
	for _, tt := range []struct{ name, svc, attrs, want string }{
		{"no env", "", "", "puchi"},
		{"OTEL_SERVICE_NAME", "lesson", "", "lesson"},
		{"OTEL_RESOURCE_ATTRIBUTES", "", "deployment.environment.name=dev,service.name=quiz", "quiz"},
		{"OTEL_SERVICE_NAME wins", "lesson", "service.name=quiz", "lesson"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_SERVICE_NAME", tt.svc)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tt.attrs)
			shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "puchi"})
			if err != nil {
				t.Fatalf("Setup() = %v", err)
			}
			defer func() { _ = shutdown(context.Background()) }()
			_, span := otel.Tracer("test").Start(context.Background(), "op")
			defer span.End()
			ro, ok := span.(sdktrace.ReadOnlySpan)
			if !ok {
				t.Fatalf("span %T is not an SDK span", span)
			}
			res := ro.Resource()
			if got, _ := res.Set().Value("service.name"); got.AsString() != tt.want {
				t.Errorf("service.name = %q, want %q", got.AsString(), tt.want)
			}
			if sdk, _ := res.Set().Value("telemetry.sdk.language"); sdk.AsString() != "go" || res.SchemaURL() == "" {
				t.Errorf("resource %v (schema %q) lacks the SDK attributes or the schema URL", res, res.SchemaURL())
			}
		})
	}
}
