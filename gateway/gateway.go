// Package gateway is Puchi's REST edge: grpc-gateway in front of the services'
// gRPC APIs, with an early token check, a per-client rate limit, a request size cap,
// JSON errors in one shape ([ErrorBody]), /health, /openapi.json and a /docs page.
package gateway

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	mediav1 "github.com/puchi-dev/puchi/gen/go/puchi/media/v1"
	notificationv1 "github.com/puchi-dev/puchi/gen/go/puchi/notification/v1"
	progressv1 "github.com/puchi-dev/puchi/gen/go/puchi/progress/v1"
	quizv1 "github.com/puchi-dev/puchi/gen/go/puchi/quiz/v1"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	vocabularyv1 "github.com/puchi-dev/puchi/gen/go/puchi/vocabulary/v1"
)

//go:embed docs.html
var docsPage []byte

// registrars maps a service name to the generated function that mounts its REST
// routes. A service that exists gets one line here.
var registrars = map[string]func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
	"user":         userv1.RegisterUserServiceHandler,
	"lesson":       lessonv1.RegisterLessonServiceHandler,
	"quiz":         quizv1.RegisterQuizServiceHandler,
	"vocabulary":   vocabularyv1.RegisterVocabularyServiceHandler,
	"progress":     progressv1.RegisterProgressServiceHandler,
	"notification": notificationv1.RegisterNotificationServiceHandler,
	"analytics":    analyticsv1.RegisterAnalyticsServiceHandler,
	"media":        mediav1.RegisterMediaServiceHandler, // + the custom upload and content routes (media.go)
}

// Config is the gateway's configuration. Upstreams are connections the caller
// dialled and owns (the gateway never closes them).
type Config struct {
	Addr      string                      // listen address, e.g. ":8000"
	Upstreams map[string]*grpc.ClientConn // service name -> connection
	Verify    func(token string) error    // access-token check; nil disables the early check
	OpenAPI   []byte                      // the merged OpenAPI document served at /openapi.json
	RateLimit float64                     // requests per second per client IP; <= 0 disables
	RateBurst int                         // bucket size
	// AuthRateLimit and AuthRateBurst apply, on top of RateLimit, to /v1/auth/*
	// (password hashing is expensive); AuthRateLimit <= 0 disables it.
	AuthRateLimit float64
	AuthRateBurst int
	MaxBodyBytes  int64 // request body cap (not applied to POST /v1/media, capped by MaxUploadBytes)
	Log           *slog.Logger
	// MaxUploadBytes caps a media upload's file (PUCHI_MEDIA_MAX_BYTES; zero:
	// DefaultMaxUploadBytes, 10 MiB).
	MaxUploadBytes int64
	// Timeout is the deadline of every REST call (zero: DefaultTimeout).
	Timeout time.Duration
	// TLSCert and TLSKey, when set, make the gateway serve HTTPS.
	TLSCert, TLSKey string
	// Probe, when set, reports a downstream's per-instance health and breaker
	// state for /health and /ready (false: fall back to a Check on the conn).
	Probe func(ctx context.Context, service string) (Downstream, bool)
	// Metrics receives the gateway's HTTP series (observe.go) and is served at
	// GET /metrics on Addr; nil: a registry of the gateway's own.
	Metrics *prometheus.Registry
}

// Validate reports the first unusable setting, naming its environment variable.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("PUCHI_GATEWAY_ADDR: must not be empty")
	case c.MaxBodyBytes <= 0:
		return errors.New("PUCHI_GATEWAY_MAX_BODY_BYTES: must be positive")
	case c.RateLimit > 0 && c.RateBurst <= 0:
		return errors.New("PUCHI_GATEWAY_RATE_BURST: must be positive when a rate limit is set")
	case c.AuthRateLimit > 0 && c.AuthRateBurst <= 0:
		return errors.New("PUCHI_GATEWAY_AUTH_RATE_BURST: must be positive when an auth rate limit is set")
	case c.Log == nil:
		return errors.New("gateway: Log is required")
	}
	return nil
}

// Gateway serves REST. Create it with [New]; it is an app component ([Gateway.Run]).
type Gateway struct {
	cfg     Config
	handler http.Handler
	ln      net.Listener
	// closing is closed when shutdown starts: long-lived streams end then,
	// while ordinary requests finish normally.
	closing chan struct{}
}

// New builds the routes. It listens at once, so that the caller knows the address
// (see [Gateway.Addr]) before [Gateway.Run] serves.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mux := runtime.NewServeMux(
		runtime.WithErrorHandler(grpcErrorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithMiddlewares(routeMiddleware),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	names := make([]string, 0, len(cfg.Upstreams))
	for name := range cfg.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		reg, ok := registrars[name]
		if !ok {
			return nil, fmt.Errorf("gateway: no REST routes for service %q", name)
		}
		if err := reg(ctx, mux, cfg.Upstreams[name]); err != nil {
			return nil, fmt.Errorf("gateway: mount %s: %w", name, err)
		}
	}
	g := &Gateway{cfg: cfg, closing: make(chan struct{})}
	reg := cfg.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	metrics, err := newHTTPMetrics(reg, cfg.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	root := http.NewServeMux()
	root.Handle("GET /metrics", metricsHandler(reg))
	root.HandleFunc("GET /health", g.health(false))
	root.HandleFunc("GET /ready", g.health(true))
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(cfg.OpenAPI)
	})
	root.HandleFunc("GET /docs", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(docsPage)
	})
	root.Handle("/", withDeadline(cfg.Timeout, mux))
	_, media := cfg.Upstreams["media"]
	if media {
		mountMedia(root, cfg.Upstreams["media"], cfg.MaxUploadBytes)
	}

	var h http.Handler = root
	if cfg.Verify != nil {
		h = anonymousMediaContent(root, requireToken(cfg.Verify, h))
	}
	h = limitBodyExceptMediaUpload(cfg.MaxBodyBytes, media, h)
	h = authRateLimit(newClientLimiter(cfg.AuthRateLimit, cfg.AuthRateBurst), h)
	h = rateLimit(newClientLimiter(cfg.RateLimit, cfg.RateBurst), h)
	h = endStreamsOnShutdown(g.closing, h)
	h = accessLog(cfg.Log, h)
	h = metrics.observe(root, h)
	h = traced(h)
	g.handler = h

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: listen %s (PUCHI_GATEWAY_ADDR): %w", cfg.Addr, err)
	}
	g.ln = ln
	return g, nil
}

// Handler is the complete REST handler, for tests that drive it in process.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Addr is the address the gateway listens on.
func (g *Gateway) Addr() string { return g.ln.Addr().String() }

// Close releases the listener of a gateway that never ran.
func (g *Gateway) Close() error { return g.ln.Close() }

// Name identifies the component in logs.
func (g *Gateway) Name() string { return "gateway" }

// Run serves until ctx is cancelled, then shuts down, letting in-flight requests
// finish for up to 10 seconds.
func (g *Gateway) Run(ctx context.Context) error {
	srv := &http.Server{Handler: g.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if g.cfg.TLSCert != "" {
			errc <- srv.ServeTLS(g.ln, g.cfg.TLSCert, g.cfg.TLSKey)
			return
		}
		errc <- srv.Serve(g.ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	close(g.closing)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("gateway shutdown: %w", err)
	}
	return nil
}

// endStreamsOnShutdown gives streaming routes (":stream") a context that ends
// when the gateway starts shutting down, so an open stream never holds shutdown.
func endStreamsOnShutdown(closing <-chan struct{}, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ":stream") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		go func() {
			select {
			case <-closing:
				cancel()
			case <-ctx.Done():
			}
		}()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// HealthReport is the body of /health and /ready.
type HealthReport struct {
	Status   string            `json:"status"`   // "ok", "degraded" or "down"
	Services map[string]string `json:"services"` // name -> SERVING | NOT_SERVING | UNREACHABLE
	// Downstreams details each service (instances, breaker) when the
	// gateway's connections report it ([Config.Probe]).
	Downstreams map[string]Downstream `json:"downstreams,omitempty"`
}

// health checks every upstream with grpc.health.v1 (1 s each, in parallel).
// /health always answers 200 while the gateway runs; /ready answers 503 when any
// upstream is not serving.
func (g *Gateway) health(ready bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep := HealthReport{Status: "ok", Services: map[string]string{}}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, conn := range g.cfg.Upstreams {
			wg.Go(func() {
				st, d := g.downstream(r.Context(), name, conn)
				mu.Lock()
				rep.Services[name] = st
				if d != nil {
					if rep.Downstreams == nil {
						rep.Downstreams = map[string]Downstream{}
					}
					rep.Downstreams[name] = *d
				}
				mu.Unlock()
			})
		}
		wg.Wait()
		down, degraded := 0, 0
		for name, st := range rep.Services {
			if st != "SERVING" {
				down++
			} else if d, ok := rep.Downstreams[name]; ok && d.State != stateServing {
				degraded++
			}
		}
		// /ready is false only when a dependency is fully down; some instances
		// down or a breaker probing is "degraded" but ready.
		code := http.StatusOK
		switch {
		case down > 0 && down == len(rep.Services):
			rep.Status = "down"
		case down > 0 || degraded > 0:
			rep.Status = "degraded"
		}
		if ready && down > 0 {
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	}
}

// headerMatcher forwards Idempotency-Key as gRPC metadata "idempotency-key" (read
// by platform/idempotency), and everything else as grpc-gateway does by default.
func headerMatcher(key string) (string, bool) {
	if strings.EqualFold(key, "Idempotency-Key") {
		return "idempotency-key", true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// accessLog logs one line per request: method, path, status, duration. Never bodies.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		lvl := slog.LevelInfo
		if rec.status >= 500 {
			lvl = slog.LevelError
		}
		log.LogAttrs(r.Context(), lvl, "http request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)), slog.String("client", clientKey(r)))
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// Flush lets streamed responses through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
