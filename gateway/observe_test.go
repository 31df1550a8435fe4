package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestFirstTwo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/v1/lessons/abc":                    "/v1/lessons",
		"/v1/attempts/{attempt_id}:complete": "/v1/attempts",
		"/v1/notifications:stream":           "/v1/notifications",
		"/health":                            "",
		"/v1/{x}":                            "",
		"/":                                  "",
	} {
		if got := firstTwo(in); got != want {
			t.Errorf("firstTwo(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGatewayMetrics checks the HTTP series: route templates (never ids), status
// classes, a bounded label for unknown paths, and GET /metrics without a token.
func TestGatewayMetrics(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	cfg := testConfig(up.conn)
	cfg.OpenAPI = []byte(`{"paths":{"/v1/users/{username}":{},"/v1/auth/register":{}}}`)
	g := newGateway(t, cfg)
	h := g.Handler()
	for _, c := range []struct {
		call
		want int
	}{
		{call{method: "GET", path: "/v1/users/alice"}, 200},
		{call{method: "GET", path: "/v1/users/bob"}, 404},
		{call{method: "GET", path: "/v1/users/me"}, 401}, // rejected before routing
		{call{method: "GET", path: "/v1/zzz-random-1/x", header: map[string]string{"Authorization": "Bearer good"}}, 404},
		{call{method: "GET", path: "/health"}, 200},
	} {
		if rec := serve(h, c.call); rec.Code != c.want {
			t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, rec.Code, c.want, rec.Body)
		}
	}
	rec := serve(h, call{method: "GET", path: "/metrics"})
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	body := rec.Body.String()
	for _, want := range []string{
		`puchi_gateway_requests_total{code_class="2xx",method="GET",route_class="/v1/users/{username}"} 1`,
		`puchi_gateway_requests_total{code_class="4xx",method="GET",route_class="/v1/users/{username}"} 1`,
		`puchi_gateway_requests_total{code_class="4xx",method="GET",route_class="/v1/users"} 1`,
		`puchi_gateway_requests_total{code_class="4xx",method="GET",route_class="other"} 1`,
		`puchi_gateway_requests_total{code_class="2xx",method="GET",route_class="/health"} 1`,
		`puchi_gateway_request_seconds_bucket{method="GET",route_class="/v1/users/{username}",le="+Inf"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s\n%s", want, body)
		}
	}
	for _, bad := range []string{"alice", "bob", "zzz-random"} {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics has a path value %q", bad)
		}
	}
}

// TestGatewayTracing is not parallel: it installs the global TracerProvider. A
// request continues the caller's traceparent and its span is named after the
// route template.
func TestGatewayTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		_ = tp.Shutdown(context.Background())
	})
	up := startUpstream(t)
	g := newGateway(t, testConfig(up.conn))
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	rec := serve(g.Handler(), call{method: "GET", path: "/v1/users/alice",
		header: map[string]string{"traceparent": "00-" + traceID + "-b7ad6b7169203331-01"}})
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	serve(g.Handler(), call{method: "GET", path: "/health"})
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 (health is not traced): %v", len(spans), spans)
	}
	s := spans[0]
	if s.Name != "GET /v1/users/{username}" || s.SpanContext.TraceID().String() != traceID || s.Parent.SpanID().String() != "b7ad6b7169203331" {
		t.Fatalf("span %q trace %s parent %s", s.Name, s.SpanContext.TraceID(), s.Parent.SpanID())
	}
}
