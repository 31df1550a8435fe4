// Package system is Puchi's composition root: it turns a [Config] and the list of
// services into one running process — the embedded broker (or a real cluster),
// topics, every chosen service, the gateway — with one shutdown order. cmd/puchi
// is a thin CLI over it; the end-to-end tests boot it on free ports.
package system

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/puchi-dev/puchi/gateway"
	"github.com/puchi-dev/puchi/gen/openapi"
	"github.com/puchi-dev/puchi/platform/app"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/platform/telemetry"
	"github.com/puchi-dev/puchi/services/lesson"
	"github.com/puchi-dev/puchi/services/progress"
	"github.com/puchi-dev/puchi/services/quiz"
	"github.com/puchi-dev/puchi/services/user"
	"github.com/puchi-dev/puchi/services/vocabulary"
)

// Specs lists every service that exists, in start order.
func Specs(cfg *Config) []service.Spec {
	return []service.Spec{
		user.Spec(user.Config{AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL, AdminEmails: cfg.AdminEmails}),
		lesson.Spec(lesson.Config{}),
		quiz.Spec(quiz.Config{}),
		vocabulary.Spec(vocabulary.Config{}),
		progress.Spec(progress.Config{}), // dials user: listed after it
	}
}

// ServiceNames are the names of [Specs].
func ServiceNames(cfg *Config) []string {
	var names []string
	for _, s := range Specs(cfg) {
		names = append(names, s.Name)
	}
	return names
}

// Options choose what a process runs.
type Options struct {
	Embedded bool     // start the in-process broker (used when KAFKA_BROKERS is empty)
	Services []string // services to host here; empty: none
	Gateway  bool     // run the REST gateway
	// BindHost is the host services listen on when no address is configured:
	// "127.0.0.1" for `puchi run` (internal ports stay on this machine), "" (all
	// interfaces) for `puchi serve` in containers.
	BindHost string
	// Addrs overrides listen addresses per service (tests use ":0"); missing
	// entries come from PUCHI_<SVC>_GRPC_ADDR / _ADMIN_ADDR or the default ports.
	Addrs map[string]service.Addrs
	// Lookup reads per-service variables; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
	Log    *slog.Logger // nil: built from Config (JSON or text on stderr)
}

// System is a built process, ready to [System.Run].
type System struct {
	App       *app.App
	Log       *slog.Logger
	Broker    *broker.Broker // nil with an external cluster
	Brokers   string         // bootstrap servers in use
	Instances []*service.Instance
	Gateway   *gateway.Gateway
	Kafka     kafka.Config
	Issuer    *auth.Issuer // mints the platform's own admin tokens (content seeding)

	demoLoaded atomic.Bool
}

// DemoLoaded reports whether this process loaded the demo course (tests wait on it).
func (s *System) DemoLoaded() bool { return s.demoLoaded.Load() }

// Build starts the broker (if embedded), provisions the topics, opens and migrates
// every chosen service and listens on every address. It serves nothing until
// [System.Run]. On error everything it opened is closed again.
func Build(ctx context.Context, cfg *Config, opt Options) (_ *System, err error) {
	lookup := opt.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	log := opt.Log
	if log == nil {
		log = NewLogger(cfg, os.Stderr)
	}
	s := &System{Log: log, App: app.New("puchi", log)}
	var closers []func()
	defer func() {
		if err != nil {
			for _, c := range slices.Backward(closers) {
				c()
			}
		}
	}()

	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "puchi", OTLPEndpoint: cfg.OTLPEndpoint, Logger: log})
	if err != nil {
		return nil, err
	}
	closers = append(closers, func() { _ = shutdownTracing(context.Background()) })

	// Kafka: embedded or external, then the topics.
	s.Brokers = cfg.Brokers
	if opt.Embedded {
		b, err := broker.Start(broker.Config{
			Addr: cfg.BrokerAddr, DataDir: filepath.Join(cfg.DataDir, "kafka"), Retention: cfg.Retention,
		}, log.With("component", "broker"))
		if err != nil {
			return nil, fmt.Errorf("embedded broker on %s (PUCHI_BROKER_ADDR): %w", cfg.BrokerAddr, err)
		}
		closers = append(closers, b.Close)
		s.Broker, s.Brokers = b, b.Addrs()
	} else if s.Brokers == "" {
		s.Brokers = cfg.BrokerAddr
	}
	s.Kafka = cfg.Kafka(s.Brokers)
	if err := s.Kafka.Validate(); err != nil {
		return nil, err
	}
	if len(opt.Services) > 0 || opt.Embedded {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := kafka.EnsureTopics(tctx, s.Kafka, kafka.Topics...)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("provision topics on %s (KAFKA_BROKERS): %w", s.Brokers, err)
		}
	}

	// Auth: one Ed25519 key; the user service signs, everyone verifies.
	key, err := auth.LoadOrCreateKey(cfg.KeyFile())
	if err != nil {
		return nil, fmt.Errorf("PUCHI_JWT_KEY_FILE: %w", err)
	}
	tokenCfg := auth.TokenConfig{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	issuer, err := auth.NewIssuer(key, tokenCfg)
	if err != nil {
		return nil, err
	}
	s.Issuer = issuer
	verifier, err := auth.NewVerifier(tokenCfg, key.Public)
	if err != nil {
		return nil, err
	}

	var producer *kafka.Producer
	if len(opt.Services) > 0 {
		if producer, err = kafka.NewProducer(s.Kafka, log.With("component", "producer")); err != nil {
			return nil, err
		}
		closers = append(closers, func() { _ = producer.Close(context.Background()) })
	}
	// Connections between services (and from the gateway), one per target,
	// closed at the end of shutdown. A service hosted in this process is dialled
	// at its real address, so it must come before its callers in Specs.
	conns := map[string]*grpc.ClientConn{}
	var connsMu sync.Mutex
	dial := func(name string) (*grpc.ClientConn, error) {
		connsMu.Lock()
		defer connsMu.Unlock()
		if c, ok := conns[name]; ok {
			return c, nil
		}
		target := ""
		for _, sp := range Specs(cfg) {
			if sp.Name == name {
				target = envOr(lookup, envName(name, "ADDR"), fmt.Sprintf("127.0.0.1:%d", sp.GRPCPort))
			}
		}
		for _, inst := range s.Instances {
			if inst.Spec.Name == name {
				target = inst.GRPCAddr()
			}
		}
		if target == "" {
			return nil, fmt.Errorf("dial: unknown service %q", name)
		}
		c, err := grpcx.Dial(target, grpcx.ClientConfig{})
		if err != nil {
			return nil, err
		}
		conns[name] = c
		return c, nil
	}
	defer func() {
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
		}
	}()
	specs := map[string]service.Spec{}
	for _, sp := range Specs(cfg) {
		specs[sp.Name] = sp
	}
	metrics := prometheus.NewRegistry()
	for _, name := range opt.Services {
		sp, ok := specs[name]
		if !ok {
			return nil, fmt.Errorf("unknown service %q (have: %s)", name, strings.Join(ServiceNames(cfg), ", "))
		}
		addrs, ok := opt.Addrs[name]
		if !ok {
			addrs = service.Addrs{
				GRPC:  envOr(lookup, envName(name, "GRPC_ADDR"), fmt.Sprintf("%s:%d", opt.BindHost, sp.GRPCPort)),
				Admin: envOr(lookup, envName(name, "ADMIN_ADDR"), fmt.Sprintf("%s:%d", opt.BindHost, sp.AdminPort)),
			}
		}
		inst, err := service.Start(ctx, sp, addrs, service.Shared{
			Kafka: s.Kafka, Producer: producer, DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL,
			Verifier: verifier, Issuer: issuer, Log: log, Metrics: metrics, Dial: dial,
		})
		if err != nil {
			return nil, err
		}
		closers = append(closers, inst.Close)
		s.Instances = append(s.Instances, inst)
	}

	if opt.Gateway {
		upstreams := map[string]*grpc.ClientConn{}
		for _, sp := range Specs(cfg) {
			if upstreams[sp.Name], err = dial(sp.Name); err != nil {
				return nil, err
			}
		}
		s.Gateway, err = gateway.New(ctx, gateway.Config{
			Addr: cfg.GatewayAddr, Upstreams: upstreams, OpenAPI: openapi.JSON,
			Verify:    func(tok string) error { _, err := verifier.Verify(tok); return err },
			RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, MaxBodyBytes: cfg.MaxBodyBytes,
			AuthRateLimit: cfg.AuthRateLimit, AuthRateBurst: cfg.AuthRateBurst,
			Log: log.With("component", "gateway"),
		})
		if err != nil {
			return nil, err
		}
	}

	// The demo course, on a first run that hosts both lesson and quiz.
	if cfg.DemoContent && s.hosts("lesson") && s.hosts("quiz") {
		lc, err := dial("lesson")
		if err != nil {
			return nil, err
		}
		qc, err := dial("quiz")
		if err != nil {
			return nil, err
		}
		s.App.Add(&demoSeeder{sys: s, issuer: issuer, lesson: lc, quiz: qc})
	}

	// Components and the shutdown order: gateway first (stop taking requests),
	// then the services (architecture.md's order, in service.Mount), then the
	// gateway's connections, the broker and the traces.
	if s.Gateway != nil {
		s.App.Add(s.Gateway)
		s.App.StopComponents(15*time.Second, s.Gateway)
	}
	service.Mount(s.App, producer, s.Instances...)
	s.App.OnStop("close connections", time.Second, func(context.Context) error {
		var errs []error
		for _, c := range conns {
			errs = append(errs, c.Close())
		}
		return errors.Join(errs...)
	})
	if s.Broker != nil {
		s.App.OnStop("stop broker", 10*time.Second, func(context.Context) error { s.Broker.Close(); return nil })
	}
	s.App.OnStop("flush traces", 5*time.Second, shutdownTracing)
	return s, nil
}

// hosts reports whether this process runs the named service.
func (s *System) hosts(name string) bool {
	for _, i := range s.Instances {
		if i.Spec.Name == name {
			return true
		}
	}
	return false
}

// Run runs until ctx is cancelled or SIGINT/SIGTERM, then shuts down in order.
func (s *System) Run(ctx context.Context) error { return s.App.Run(ctx) }

// Listening describes every listener, for the start-up banner.
func (s *System) Listening() []string {
	var out []string
	if s.Gateway != nil {
		out = append(out, fmt.Sprintf("gateway    REST http://%s  (docs: /docs, health: /health)", hostPort(s.Gateway.Addr())))
	}
	for _, i := range s.Instances {
		out = append(out, fmt.Sprintf("%-10s gRPC %s  admin http://%s/health", i.Spec.Name, hostPort(i.GRPCAddr()), hostPort(i.AdminAddr())))
	}
	kind := "external"
	if s.Broker != nil {
		kind = "embedded"
	}
	out = append(out, fmt.Sprintf("kafka      %s (%s), topics: %s", s.Brokers, kind, strings.Join(sortedTopics(), ", ")))
	return out
}

func sortedTopics() []string {
	t := slices.Clone(kafka.Topics)
	sort.Strings(t)
	return t
}

// hostPort shows "[::]:8000" as "localhost:8000".
func hostPort(addr string) string {
	for _, p := range []string{"[::]:", "0.0.0.0:"} {
		if rest, ok := strings.CutPrefix(addr, p); ok {
			return "localhost:" + rest
		}
	}
	return addr
}

// envName is PUCHI_<SERVICE>_<SUFFIX>, e.g. PUCHI_USER_GRPC_ADDR.
func envName(service, suffix string) string {
	return "PUCHI_" + strings.ToUpper(service) + "_" + suffix
}

func envOr(lookup func(string) (string, bool), name, def string) string {
	if v, ok := lookup(name); ok && v != "" {
		return v
	}
	return def
}

// NewLogger builds the process logger: JSON (or text) with trace ids.
func NewLogger(cfg *Config, w io.Writer) *slog.Logger {
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: cfg.LogLevel}))
	}
	return telemetry.NewLogger("puchi", cfg.LogLevel, w)
}
