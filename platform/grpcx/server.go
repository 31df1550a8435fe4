// Package grpcx builds Puchi's gRPC servers and clients with the cross-cutting
// behaviour every service shares: panic recovery, OpenTelemetry, logging and
// metrics, authentication, protovalidate validation, and the one mapping from
// [apperr] errors to gRPC statuses ([ToStatus]).
package grpcx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/puchi-dev/puchi/platform/auth"
)

// DefaultGracefulTimeout bounds GracefulStop when [ServerConfig.GracefulTimeout] is zero.
const DefaultGracefulTimeout = 10 * time.Second

// alwaysPublic are method prefixes that never need a token: health checks
// (load balancers, orchestrators) and reflection (grpcurl, kafka-ui).
var alwaysPublic = []string{"/grpc.health.v1.Health/", "/grpc.reflection."}

// ServerConfig configures [NewServer].
type ServerConfig struct {
	// Name is the service name, used in logs, metrics and as the component name.
	Name string
	// Addr is the listen address used by [Server.Run], e.g. ":50052".
	Addr string
	// Verifier checks bearer tokens. Required.
	Verifier *auth.Verifier
	// PublicMethods are full method names ("/puchi.user.v1.UserService/Login")
	// callable without a token. A valid token on a public call still puts its
	// claims in the context; an invalid one is ignored there.
	PublicMethods []string
	// Logger receives one line per RPC and every unexpected error. Nil discards.
	Logger *slog.Logger
	// Metrics, when set, receives the grpc_server_handling_seconds histogram
	// (labels service, method, code).
	Metrics prometheus.Registerer
	// GracefulTimeout bounds GracefulStop when [Server.Run]'s context ends;
	// zero means DefaultGracefulTimeout. In-flight RPCs still running then are
	// cancelled.
	GracefulTimeout time.Duration
	// TLS, when set, serves TLS with this configuration (for mutual TLS, see
	// [Identity.ServerTLS]: client certificates required and verified). Nil
	// serves plaintext.
	TLS *tls.Config
}

// Server is a *grpc.Server with Puchi's interceptors, a grpc.health.v1
// service and reflection registered. Register services on it directly (it is
// a grpc.ServiceRegistrar) before calling Run. It is an app.Component.
type Server struct {
	*grpc.Server

	cfg       ServerConfig
	log       *slog.Logger
	health    *health.Server
	validator protovalidate.Validator
	public    map[string]bool
	latency   *prometheus.HistogramVec
}

// NewServer returns a server whose unary and stream calls pass, outermost
// first, through: panic recovery (codes.Internal "internal error", stack
// logged), the otelgrpc stats handler (spans, trace context from metadata),
// logging and metrics (method, code, duration, trace id; never payloads),
// authentication (Bearer token in "authorization" metadata; claims placed
// with auth.WithClaims), protovalidate validation of every request message,
// and error mapping with [ToStatus]. extra options are appended (TLS
// credentials, keepalive, message sizes).
func NewServer(cfg ServerConfig, extra ...grpc.ServerOption) (*Server, error) {
	if cfg.Name == "" {
		return nil, errors.New("grpcx: ServerConfig.Name is required")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("grpcx: ServerConfig.Verifier is required")
	}
	if cfg.GracefulTimeout == 0 {
		cfg.GracefulTimeout = DefaultGracefulTimeout
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("grpcx: protovalidate: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       logger.With("service", cfg.Name),
		health:    health.NewServer(),
		validator: validator,
		public:    make(map[string]bool, len(cfg.PublicMethods)),
	}
	for _, m := range cfg.PublicMethods {
		s.public[m] = true
	}
	if cfg.Metrics != nil {
		s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "grpc_server_handling_seconds",
			Help:        "Duration of gRPC calls handled, by method and status code.",
			ConstLabels: prometheus.Labels{"service": cfg.Name},
			Buckets:     prometheus.DefBuckets,
		}, []string{"method", "code"})
		if err := cfg.Metrics.Register(s.latency); err != nil {
			return nil, fmt.Errorf("grpcx: register metrics: %w", err)
		}
	}
	opts := []grpc.ServerOption{
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))),
		grpc.ChainUnaryInterceptor(s.recoverUnary, s.logUnary, s.authUnary, s.validateUnary, s.mapErrorsUnary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.logStream, s.authStream, s.validateStream, s.mapErrorsStream),
	}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.Server = grpc.NewServer(append(opts, extra...)...)
	healthpb.RegisterHealthServer(s.Server, s.health)
	reflection.Register(s.Server)
	return s, nil
}

// Name returns "grpc " + the service name.
func (s *Server) Name() string { return "grpc " + s.cfg.Name }

// Health returns the grpc.health.v1 server, for per-service statuses.
func (s *Server) Health() *health.Server { return s.health }

// MarkNotServing sets every health status to NOT_SERVING, permanently, so
// load balancers stop sending new calls. It is the first shutdown phase; the
// ctx parameter lets it be passed to app.App.OnStop directly. Safe to call
// more than once and concurrently.
func (s *Server) MarkNotServing(context.Context) error {
	s.health.Shutdown()
	return nil
}

func (s *Server) isPublic(method string) bool {
	if s.public[method] {
		return true
	}
	for _, p := range alwaysPublic {
		if strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// Run listens on [ServerConfig.Addr] and serves until ctx is done, then stops
// as [Server.Serve] does. A listen failure is returned at once.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("grpcx: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, lis)
}

// Serve marks every registered service SERVING and serves on lis until ctx
// is done. It then marks them NOT_SERVING, stops accepting calls and waits
// for in-flight calls with GracefulStop, bounded by
// [ServerConfig.GracefulTimeout], after which remaining calls are cancelled.
// It returns nil after such a stop, or the error that ended serving. Serve
// takes ownership of lis and must be called at most once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	for name := range s.GetServiceInfo() {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	s.log.InfoContext(ctx, "grpc server listening", "addr", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.Server.Serve(lis) }()
	select {
	case err := <-errc:
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			return nil // stopped directly (Stop/GracefulStop), not through ctx
		}
		return fmt.Errorf("grpcx: serve: %w", err)
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.GracefulTimeout):
		s.log.Warn("graceful stop timed out; cancelling in-flight calls", "timeout", s.cfg.GracefulTimeout)
		s.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpcx: serve: %w", err)
	}
	return nil
}
