package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Observability of the REST edge.
//
// Tracing: [otelhttp] wraps the whole handler chain, so every REST request
// starts a server span (or continues the caller's W3C traceparent). The
// grpc-gateway forwards the request context to the upstream gRPC calls, whose
// connections carry otelgrpc client handlers, so the services' spans are its
// children. Once a REST route matched, the span is renamed "METHOD /route"
// with http.route set to the route template (ids never appear in names).
//
// Metrics, registered on [Config.Metrics] (nil: a registry of the gateway's
// own) and served at GET /metrics on the gateway's port:
//
//	puchi_gateway_requests_total{method,route_class,code_class}  counter
//	puchi_gateway_request_seconds{method,route_class}             histogram
//
// route_class is the matched route template ("/v1/attempts/{attempt_id}:complete",
// "/health"); a request rejected before routing (401, 429, 413) gets the first
// two segments of its path when some route starts with them ("/v1/lessons"),
// and "other" otherwise, so the label's values stay bounded whatever clients
// send. code_class is "2xx", "3xx", "4xx" or "5xx".

// untraced paths are probes and scrapes: no spans for them.
var untraced = map[string]bool{"/health": true, "/ready": true, "/metrics": true}

type httpMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	prefixes map[string]bool // known "/v1/<collection>" prefixes, from the OpenAPI paths
}

func newHTTPMetrics(reg prometheus.Registerer, openapi []byte) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puchi_gateway_requests_total",
			Help: "REST requests answered by the gateway, by method, route template and status class.",
		}, []string{"method", "route_class", "code_class"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "puchi_gateway_request_seconds",
			Help:    "Time to answer a REST request at the gateway (streams: until they end).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "route_class"}),
		prefixes: openAPIPrefixes(openapi),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.seconds, err = register(reg, m.seconds); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or reuses the collector already registered under the
// same name (two gateways on one registry, as in tests that reboot).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// openAPIPrefixes collects the first two segments of every documented path.
func openAPIPrefixes(doc []byte) map[string]bool {
	out := map[string]bool{}
	var d struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if json.Unmarshal(doc, &d) != nil {
		return out
	}
	for p := range d.Paths {
		if c := firstTwo(p); c != "" {
			out[c] = true
		}
	}
	return out
}

// firstTwo is "/a/b" for "/a/b/c..." (a verb such as ":complete" cut off), or "".
func firstTwo(p string) string {
	segs := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 3)
	if len(segs) < 2 || segs[0] == "" || segs[1] == "" {
		return ""
	}
	second, _, _ := strings.Cut(segs[1], ":")
	if strings.ContainsAny(second, "{}") {
		return ""
	}
	return "/" + segs[0] + "/" + second
}

// routeKey holds the *routeSlot the inner handlers fill with the matched route.
type routeKey struct{}

type routeSlot struct{ route string }

func setRoute(ctx context.Context, route string) {
	if s, ok := ctx.Value(routeKey{}).(*routeSlot); ok {
		s.route = route
	}
	span := trace.SpanFromContext(ctx)
	if req, ok := ctx.Value(methodKey{}).(string); ok && span.IsRecording() {
		span.SetName(req + " " + route)
		span.SetAttributes(attribute.String("http.route", route))
	}
}

type methodKey struct{}

// routeMiddleware runs inside the grpc-gateway mux once a route matched and
// records its template ("/v1/attempts/{attempt_id}:complete").
func routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if p, ok := runtime.HTTPPattern(r.Context()); ok {
			setRoute(r.Context(), strings.ReplaceAll(p.String(), "=*}", "}"))
		}
		next(w, r, params)
	}
}

// observe counts and times every request and names its route. root resolves the
// routes mounted outside the grpc-gateway (/health, the media upload, ...).
func (m *httpMetrics) observe(root *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		method := methodLabel(r.Method)
		slot := &routeSlot{}
		ctx := context.WithValue(context.WithValue(r.Context(), routeKey{}, slot), methodKey{}, r.Method)
		if _, pat := root.Handler(r); pat != "" && pat != "/" {
			if _, path, ok := strings.Cut(pat, " "); ok {
				pat = path
			}
			setRoute(ctx, pat)
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		route := slot.route
		if route == "" {
			route = "other"
			if c := firstTwo(r.URL.Path); m.prefixes[c] {
				route = c
			}
		}
		m.requests.WithLabelValues(method, route, strconv.Itoa(rec.status/100)+"xx").Inc()
		m.seconds.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	})
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// traced wraps h in the otelhttp server handler (probes and scrapes excluded).
func traced(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "gateway",
		otelhttp.WithFilter(func(r *http.Request) bool { return !untraced[r.URL.Path] }),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// metricsHandler serves reg's series in the Prometheus exposition format.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}
