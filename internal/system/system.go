// Package system is Puchi's composition root: it turns a [Config] and the list of
// services into one running process — the embedded broker (or a real cluster),
// topics, every chosen service, the gateway — with one shutdown order. cmd/puchi
// is a thin CLI over it; the end-to-end tests boot it on free ports.
package system

import (
	"context"
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
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service"
	"github.com/puchi-dev/puchi/platform/telemetry"
	"github.com/puchi-dev/puchi/services/analytics"
	"github.com/puchi-dev/puchi/services/lesson"
	"github.com/puchi-dev/puchi/services/media"
	"github.com/puchi-dev/puchi/services/notification"
	"github.com/puchi-dev/puchi/services/progress"
	"github.com/puchi-dev/puchi/services/quiz"
	"github.com/puchi-dev/puchi/services/user"
	"github.com/puchi-dev/puchi/services/vocabulary"
)

// Specs lists every service that exists, in start order.
func Specs(cfg *Config) []service.Spec {
	rt := cfg.runtime
	if rt == nil {
		rt = &runtimeDeps{} // names and ports only (help, ServiceNames)
	}
	return []service.Spec{
		user.Spec(user.Config{AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL, AdminEmails: cfg.AdminEmails}),
		lesson.Spec(lesson.Config{}),
		quiz.Spec(quiz.Config{}),
		vocabulary.Spec(vocabulary.Config{}),
		progress.Spec(progress.Config{}), // dials user: listed after it
		mediaSpec(cfg),
		notification.Spec(notification.Config{Reminders: rt.reminders}),
		analytics.Spec(analytics.Config{Kafka: rt.kafka}),
	}
}

// mediaSpec is the media service over the blob store PUCHI_MEDIA_STORE names.
// The S3 store is opened when the service starts (by each instance): the
// bucket is created if missing, and an unreachable server fails the start
// with an error naming its URL.
func mediaSpec(cfg *Config) service.Spec {
	mc := media.Config{MaxUploadBytes: cfg.MediaMaxBytes, Dir: filepath.Join(cfg.DataDir, "media")}
	spec := media.Spec(mc)
	if cfg.MediaStore != "s3" {
		return spec
	}
	s3 := cfg.MediaS3()
	spec.Register = func(d service.Deps) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		blobs, err := media.NewS3Store(ctx, s3)
		if err != nil {
			return err
		}
		mc := mc
		mc.Blobs = blobs
		// Spool uploads under the data dir (a volume in containers), not a
		// possibly small /tmp; the bytes then go to the bucket.
		mc.TempDir = filepath.Join(cfg.DataDir, "tmp", "media-uploads")
		return media.Spec(mc).Register(d)
	}
	return spec
}

// runtimeDeps are what some specs need beyond configuration, known only once
// Build has started the broker: the Kafka client settings (analytics rebuilds)
// and the notification reminder component (one per process).
type runtimeDeps struct {
	kafka     kafka.Config
	reminders *notification.Reminders
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
	mesh       *mesh          // TLS identity and clients to services (mesh.go)
	shared     service.Shared // what [System.StartReplica] starts instances with
	replicas   int
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
		bc, err := cfg.EmbeddedBroker()
		if err != nil {
			return nil, err
		}
		b, err := broker.Start(bc, log.With("component", "broker"))
		if err != nil {
			return nil, fmt.Errorf("embedded broker on %s (PUCHI_BROKER_ADDR): %w", cfg.BrokerAddr, err)
		}
		closers = append(closers, b.Close)
		s.Broker, s.Brokers = b, b.Addrs()
	} else if s.Brokers == "" {
		s.Brokers = cfg.BrokerAddr
	}
	s.Kafka = cfg.Kafka(s.Brokers)
	reminders := notification.NewReminders()
	cfg.runtime = &runtimeDeps{kafka: s.Kafka, reminders: reminders}
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
	if s.mesh, err = newMesh(cfg, selfName(opt)); err != nil {
		return nil, err
	}
	s.replicas = cfg.Replicas

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
		target, err := s.dialTarget(cfg, lookup, name)
		if err != nil {
			return nil, err
		}
		c, err := s.mesh.dial(name, target)
		if err != nil {
			return nil, err
		}
		conns[name] = c.ClientConn
		return c.ClientConn, nil
	}
	defer func() {
		if err != nil {
			_ = s.mesh.close()
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
		addrs = shiftAddrs(addrs, cfg.Instance)
		s.shared = service.Shared{
			Kafka: s.Kafka, Producer: producer, DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL,
			Verifier: verifier, Issuer: issuer, Log: log, Metrics: metrics, Dial: dial,
			// Dead letters go through the process's producer, not a client per
			// consumer; Mount flushes and closes it after the consumers stop.
			Consumer: kafka.ConsumerConfig{DLQProducer: producer},
		}
		sh := s.shared
		if sh.ServerTLS, err = s.mesh.serverTLS(name); err != nil {
			return nil, err
		}
		inst, err := service.Start(ctx, sp, addrs, sh)
		if err != nil {
			return nil, err
		}
		closers = append(closers, inst.Close)
		s.Instances = append(s.Instances, inst)
		replicas, err := s.startReplicas(ctx, inst, addrs, sh)
		if err != nil {
			return nil, err
		}
		for _, r := range replicas {
			closers = append(closers, r.Close)
			s.Instances = append(s.Instances, r)
		}
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
			RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst, MaxBodyBytes: cfg.MaxBodyBytes, MaxUploadBytes: cfg.MediaMaxBytes,
			AuthRateLimit: cfg.AuthRateLimit, AuthRateBurst: cfg.AuthRateBurst,
			Log:     log.With("component", "gateway"),
			Timeout: cfg.GatewayTimeout, TLSCert: cfg.GatewayTLSCert, TLSKey: cfg.GatewayTLSKey,
			Probe:   s.mesh.probe,
			Metrics: metrics, // the gateway's series also reach the admin ports' /metrics
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
	if s.hosts("notification") {
		// The reminder loop writes notifications: it stops before the services
		// drain their outboxes and close their databases.
		s.App.Add(reminders)
		s.App.StopComponents(5*time.Second, reminders)
	}
	service.Mount(s.App, producer, s.Instances...)
	s.App.OnStop("close connections", time.Second, func(context.Context) error {
		return s.mesh.close()
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
		out = append(out, fmt.Sprintf("gateway      REST http://%s  (docs: /docs, health: /health)", hostPort(s.Gateway.Addr())))
	}
	for _, i := range s.Instances {
		out = append(out, fmt.Sprintf("%-12s gRPC %s  admin http://%s/health", i.Spec.Name, hostPort(i.GRPCAddr()), hostPort(i.AdminAddr())))
	}
	kind := "external"
	if s.Broker != nil {
		kind = "embedded"
	}
	if sec := s.Kafka.SecurityProtocol(); sec != "PLAINTEXT" {
		kind += ", " + sec
		if s.Kafka.SASLMechanism != "" {
			kind += fmt.Sprintf(" %s as %s", strings.ToUpper(s.Kafka.SASLMechanism), s.Kafka.SASLUsername)
		}
	}
	out = append(out, fmt.Sprintf("kafka        %s (%s), topics: %s", s.Brokers, kind, strings.Join(sortedTopics(), ", ")))
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
