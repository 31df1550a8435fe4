package service_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/app"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
	"github.com/puchi-dev/puchi/platform/outbox"
	"github.com/puchi-dev/puchi/platform/service"
)

var migrations = fstest.MapFS{
	"migrations/00001_notes.sql": {Data: []byte("-- +goose Up\nCREATE TABLE notes (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE notes;\n")},
}

func shared(t *testing.T) (service.Shared, *kafka.Producer) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	kc := kafka.Config{Brokers: kafkatest.Start(t).Brokers}.WithDefaults()
	kafkatest.EnsureTopics(t, kc, "notes-events")
	prod, err := kafka.NewProducer(kc, log)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ver, err := auth.NewVerifier(auth.TokenConfig{Issuer: "i", Audience: "a"}, key.Public)
	if err != nil {
		t.Fatal(err)
	}
	return service.Shared{
		Kafka: kc, Producer: prod, DataDir: t.TempDir(), Verifier: ver, Log: log,
		Consumer: kafka.ConsumerConfig{Backoff: 10 * time.Millisecond, LagInterval: 50 * time.Millisecond},
	}, prod
}

// A hosted service serves gRPC health and admin HTTP, publishes through its outbox,
// consumes its topic through the inbox, and shuts down closing its database.
func TestHostedServiceLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	sh, prod := shared(t)
	var consumed atomic.Int32
	var d *db.DB
	spec := service.Spec{
		Name: "notes", Migrations: migrations, Topics: []string{"notes-events"},
		Register: func(deps service.Deps) error {
			d = deps.DB
			inbox.On(deps.Router, deps.DB, deps.Group, func(ctx context.Context, tx *db.Tx, ev *wrapperspb.StringValue, _ *kafka.Message) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO notes (id) VALUES (?)`, ev.GetValue())
				consumed.Add(1)
				return err
			})
			return nil
		},
	}
	inst, err := service.Start(context.Background(), spec, service.Addrs{GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"}, sh)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Group() != "notes-service-group" || inst.Consumer == nil {
		t.Fatalf("group %q, consumer %v", spec.Group(), inst.Consumer)
	}
	a := app.New("test", nil, app.WithSignals())
	service.Mount(a, prod, inst)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	conn, err := grpc.NewClient(inst.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kafkatest.WaitFor(t, "gRPC SERVING", func() bool {
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		resp, err := http.Get("http://" + inst.AdminAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
		if path == "/metrics" && !strings.Contains(string(body), "grpc_server_handling_seconds") {
			t.Errorf("/metrics lacks the RPC histogram")
		}
	}

	// An event written through the outbox reaches the service's own consumer, once.
	ev, err := kafka.NewEvent(kafka.EventSpec{Topic: "notes-events", Key: "k", Source: "notes", Payload: wrapperspb.String("n1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error { return outbox.Write(ctx, tx, ev, ev) }); err != nil {
		t.Fatal(err)
	}
	kafkatest.WaitFor(t, "the event to be consumed", func() bool {
		var n int
		_ = d.QueryRowContext(ctx, `SELECT COUNT(*) FROM notes`).Scan(&n)
		return n == 1 && consumed.Load() == 1
	})
	// The admin port serves the outbox and consumer series of the service (the
	// event was written twice: two rows published, two handled, one applied).
	want := []string{
		`puchi_outbox_backlog{service="notes"} 0`,
		`puchi_outbox_published_total{service="notes"} 2`,
		`puchi_outbox_oldest_age_seconds{service="notes"}`,
		`puchi_outbox_parked{service="notes"} 0`,
		`puchi_consumer_messages_total{group="notes-service-group",outcome="ok",topic="notes-events"} 2`,
		`puchi_consumer_handler_seconds_count{group="notes-service-group",topic="notes-events"} 2`,
		`puchi_consumer_lag{group="notes-service-group",partition="0",topic="notes-events"} 0`,
	}
	var metrics, missing string
	t.Cleanup(func() {
		if t.Failed() && missing != "" {
			var puchi []string
			for _, l := range strings.Split(metrics, "\n") {
				if strings.HasPrefix(l, "puchi_") {
					puchi = append(puchi, l)
				}
			}
			t.Logf("/metrics lacks %s; its puchi_ series:\n%s", missing, strings.Join(puchi, "\n"))
		}
	})
	kafkatest.WaitFor(t, "the puchi_ series on /metrics", func() bool {
		resp, err := http.Get("http://" + inst.AdminAddr() + "/metrics")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(body)
		for _, w := range want {
			if !strings.Contains(metrics, w) {
				missing = w
				return false
			}
		}
		missing = ""
		return true
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("shutdown hung")
	}
	if err := d.PingContext(context.Background()); err == nil {
		t.Error("database still open after shutdown")
	}
}

func TestStartFailureReleasesEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	sh, _ := shared(t)
	bad := fstest.MapFS{"migrations/00001_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE (;\n")}}
	spec := service.Spec{Name: "broken", Migrations: bad, Register: func(service.Deps) error { return nil }}
	if _, err := service.Start(context.Background(), spec, service.Addrs{GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"}, sh); err == nil {
		t.Fatal("a broken migration started")
	}
	// The same data dir opens again: nothing was left locked.
	spec.Migrations = migrations
	inst, err := service.Start(context.Background(), spec, service.Addrs{GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"}, sh)
	if err != nil {
		t.Fatal(err)
	}
	inst.Close()
}
