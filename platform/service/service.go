// Package service hosts one Puchi service: given its [Spec] (name, migrations,
// gRPC registration, event handlers), [Start] opens its database, runs its
// migrations, builds its gRPC server with the platform interceptors, its outbox
// relay, its consumer group and its admin HTTP server. Every service is hosted the
// same way, so a reader who knows one knows all; the composition root (cmd/puchi)
// only lists specs and addresses.
package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/puchi-dev/puchi/platform/app"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/health"
	"github.com/puchi-dev/puchi/platform/idempotency"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// Spec is what a service contributes. Everything else is the host's.
type Spec struct {
	Name          string   // "user": group "user-service-group", SQLite user.db, PostgreSQL schema "user"
	GRPCPort      int      // default gRPC port (architecture.md's table)
	AdminPort     int      // default admin HTTP port (/health, /ready, /metrics)
	Migrations    fs.FS    // holds migrations/*.sql (goose)
	PublicMethods []string // full gRPC method names callable without a token
	Topics        []string // topics the consumer group reads; none means no consumer
	// Register mounts the gRPC service on deps.GRPC and the event handlers on
	// deps.Router. It runs once, after migrations.
	Register func(deps Deps) error
}

// Group is the service's consumer group: "<name>-service-group".
func (s Spec) Group() string { return s.Name + "-service-group" }

// Deps is what [Spec.Register] gets to build its handlers.
type Deps struct {
	DB     *db.DB
	GRPC   grpc.ServiceRegistrar
	Router *kafka.Router
	Group  string
	Issuer *auth.Issuer // the token issuer; only the user service uses it
	Log    *slog.Logger
	// Dial returns a shared client connection to another service by name (e.g.
	// "user"). The connection is lazy, carries the platform's client
	// interceptors, and is owned and closed by the process, never by the caller.
	Dial func(service string) (*grpc.ClientConn, error)
}

// Shared is what every service of a process shares.
type Shared struct {
	Kafka       kafka.Config
	Producer    *kafka.Producer // process-wide, idempotent; owned by the caller
	DataDir     string          // SQLite files live here when DatabaseURL is empty
	DatabaseURL string          // PostgreSQL; one schema per service
	Verifier    *auth.Verifier
	Issuer      *auth.Issuer
	Log         *slog.Logger
	Metrics     *prometheus.Registry // nil: a registry per service
	Consumer    kafka.ConsumerConfig // retry policy template; Group and Topics are set per service
	Dial        func(service string) (*grpc.ClientConn, error)
	// ServerTLS, when set, makes the gRPC server serve (mutual) TLS.
	ServerTLS *tls.Config
	// DB, when set, is an open, migrated database the instance uses instead of
	// opening its own: a replica of a service hosted in the same process. Such
	// an instance runs no outbox relay (the owner's relay, woken by the same
	// DB's after-commit hooks, publishes its rows) and does not close the DB.
	DB *db.DB
}

// Addrs are where an instance listens; ":0" picks a free port.
type Addrs struct {
	GRPC  string
	Admin string
}

// Instance is one started service. Its parts are app components; [Mount] adds
// them to an app with the shutdown order of architecture.md.
type Instance struct {
	Spec     Spec
	DB       *db.DB
	Server   *grpcx.Server
	Relay    *outbox.Relay
	Consumer *kafka.Consumer // nil when the service consumes nothing
	Admin    *health.Admin

	grpcLis net.Listener
	log     *slog.Logger
	ownDB   bool
}

// GRPCAddr is the address the gRPC server listens on.
func (i *Instance) GRPCAddr() string { return i.grpcLis.Addr().String() }

// Start opens and migrates the database, listens on addrs and builds every part.
// Nothing serves until the components run. On error, what was opened is closed.
func Start(ctx context.Context, spec Spec, addrs Addrs, sh Shared) (_ *Instance, err error) {
	log := sh.Log.With("service", spec.Name)
	inst := &Instance{Spec: spec, log: log}
	defer func() {
		if err != nil {
			inst.Close()
		}
	}()
	if sh.DB != nil {
		inst.DB = sh.DB
	} else {
		inst.ownDB = true
		if inst.DB, err = db.Open(ctx, db.Config{Service: spec.Name, DataDir: sh.DataDir, URL: sh.DatabaseURL}, sh.Log); err != nil {
			return nil, fmt.Errorf("%s: open database: %w", spec.Name, err)
		}
		if err = inst.DB.Migrate(ctx, spec.Migrations); err != nil {
			return nil, fmt.Errorf("%s: migrate: %w", spec.Name, err)
		}
	}
	reg := sh.Metrics
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if inst.Server, err = grpcx.NewServer(grpcx.ServerConfig{
		Name: spec.Name, Addr: addrs.GRPC, Verifier: sh.Verifier, PublicMethods: spec.PublicMethods,
		Logger: sh.Log, Metrics: reg, TLS: sh.ServerTLS,
	}); err != nil {
		return nil, err
	}
	router := kafka.NewRouter()
	if err = spec.Register(Deps{DB: inst.DB, GRPC: inst.Server, Router: router, Group: spec.Group(), Issuer: sh.Issuer, Log: log, Dial: sh.Dial}); err != nil {
		return nil, fmt.Errorf("%s: register: %w", spec.Name, err)
	}
	if inst.ownDB {
		inst.Relay = outbox.NewRelay(inst.DB, sh.Producer, outbox.RelayConfig{Metrics: reg}, sh.Log)
	}
	if len(spec.Topics) > 0 {
		cc := sh.Consumer
		cc.Group, cc.Topics = spec.Group(), spec.Topics
		cc.Metrics = reg
		if inst.Consumer, err = kafka.NewConsumer(sh.Kafka, cc, router.Handle, log); err != nil {
			return nil, fmt.Errorf("%s: consumer: %w", spec.Name, err)
		}
	}
	checks := map[string]func(context.Context) error{
		"database": inst.DB.PingContext,
	}
	if sh.Producer != nil {
		checks["kafka producer"] = func(context.Context) error { return sh.Producer.Err() }
	}
	var lc net.ListenConfig
	if inst.grpcLis, err = lc.Listen(ctx, "tcp", addrs.GRPC); err != nil {
		return nil, fmt.Errorf("%s: listen gRPC on %s: %w", spec.Name, addrs.GRPC, err)
	}
	// The admin port is bound last: nothing after it can fail and leak it.
	inst.Admin = health.NewAdmin(addrs.Admin, checks, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err = inst.Admin.Listen(ctx); err != nil {
		return nil, fmt.Errorf("%s: admin HTTP on %s: %w", spec.Name, addrs.Admin, err)
	}
	return inst, nil
}

// ServeGRPC serves the instance's gRPC server on its listener until ctx ends
// (what [Mount] runs; for callers that run an instance themselves).
func (i *Instance) ServeGRPC(ctx context.Context) error { return i.Server.Serve(ctx, i.grpcLis) }

// AdminAddr is the address the admin HTTP server listens on.
func (i *Instance) AdminAddr() string { return i.Admin.Addr() }

// Close releases what [Start] opened, for a process that never ran the instance.
// Once the instance's components run, [Mount]'s shutdown phases close it instead.
func (i *Instance) Close() {
	if i.grpcLis != nil {
		_ = i.grpcLis.Close()
	}
	if i.DB != nil && i.ownDB {
		_ = i.DB.Close()
	}
}

// grpcComponent serves the instance's gRPC server on its listener.
type grpcComponent struct{ i *Instance }

func (g *grpcComponent) Name() string                  { return g.i.Server.Name() }
func (g *grpcComponent) Run(ctx context.Context) error { return g.i.Server.Serve(ctx, g.i.grpcLis) }

// Retention of the bookkeeping tables: longer than Kafka's 30-day retention for
// processed event ids (a replay from the log start is still deduplicated), a day
// for idempotency keys (client retries happen within minutes).
const (
	inboxRetention       = 35 * 24 * time.Hour
	idempotencyRetention = 24 * time.Hour
	janitorInterval      = time.Hour
)

// janitor deletes expired inbox and idempotency rows every hour until ctx ends.
func (i *Instance) janitor(ctx context.Context) error {
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := inbox.Cleanup(ctx, i.DB, inboxRetention); err != nil {
			i.log.Warn("inbox cleanup failed", "err", err)
		} else if n > 0 {
			i.log.Info("inbox cleanup", "deleted", n)
		}
		if n, err := idempotency.Cleanup(ctx, i.DB, idempotencyRetention); err != nil {
			i.log.Warn("idempotency cleanup failed", "err", err)
		} else if n > 0 {
			i.log.Info("idempotency cleanup", "deleted", n)
		}
	}
}

// component names a Run function for the app (relays and consumers are not
// components by themselves).
type component struct {
	name string
	run  func(context.Context) error
}

func (c *component) Name() string                  { return c.name }
func (c *component) Run(ctx context.Context) error { return c.run(ctx) }

// Mount adds the instances to a with architecture.md's shutdown order: mark
// NOT_SERVING → stop accepting RPCs (bounded GracefulStop) → stop consumers (they
// commit) → stop and drain the relays → flush the producer → close the databases.
// Admin servers stop last, so /health answers while the process drains.
// producer may be nil when the caller flushes it itself.
func Mount(a *app.App, producer *kafka.Producer, insts ...*Instance) {
	var servers, consumers, relays, admins []app.Component
	for _, i := range insts {
		servers = append(servers, &grpcComponent{i})
		if i.Relay != nil {
			relays = append(relays, &component{"outbox relay " + i.Spec.Name, i.Relay.Run})
		}
		admins = append(admins, i.Admin)
		if i.Consumer != nil {
			consumers = append(consumers, &component{"consumer " + i.Spec.Group(), i.Consumer.Run})
		}
	}
	var janitors []app.Component
	for _, i := range insts {
		janitors = append(janitors, &component{"janitor " + i.Spec.Name, i.janitor})
	}
	a.Add(servers...)
	a.Add(consumers...)
	a.Add(relays...)
	a.Add(admins...)
	a.Add(janitors...)
	a.OnStop("mark not serving", time.Second, func(ctx context.Context) error {
		for _, i := range insts {
			_ = i.Server.MarkNotServing(ctx)
			_ = i.Admin.Drain(ctx)
		}
		return nil
	})
	a.StopComponents(15*time.Second, servers...)
	if len(consumers) > 0 {
		a.StopComponents(15*time.Second, consumers...)
	}
	a.StopComponents(5*time.Second, relays...)
	a.OnStop("drain outbox", 10*time.Second, func(ctx context.Context) error {
		var errs []error
		for _, i := range insts {
			if i.Relay != nil {
				errs = append(errs, i.Relay.Drain(ctx))
			}
		}
		return errors.Join(errs...)
	})
	if producer != nil {
		a.OnStop("flush producer", 10*time.Second, producer.Close)
	}
	a.StopComponents(5*time.Second, append(admins, janitors...)...)
	a.OnStop("close databases", 5*time.Second, func(context.Context) error {
		var errs []error
		for _, i := range insts {
			if i.ownDB {
				errs = append(errs, i.DB.Close())
			}
		}
		return errors.Join(errs...)
	})
}
