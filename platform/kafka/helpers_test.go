package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// spans records every span of the test binary (TestMain installs it globally).
var spans = tracetest.NewSpanRecorder()

func TestMain(m *testing.M) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	code := m.Run()
	_ = tp.Shutdown(context.Background())
	os.Exit(code)
}

const waitTimeout = 60 * time.Second

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startBroker runs an embedded broker on a free port for the test and returns a
// client config pointing at it.
func startBroker(t *testing.T) kafka.Config {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), ClientID: "test-" + t.Name()}
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runConsumer starts c.Run in the background; the returned stop cancels it and
// waits for Run to return (also registered as cleanup).
func runConsumer(t *testing.T, cfg kafka.Config, cc kafka.ConsumerConfig, h kafka.Handler) (*kafka.Consumer, func()) {
	t.Helper()
	c, err := kafka.NewConsumer(cfg, cc, h, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer %s: Run: %v", cc.Group, err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("consumer %s: Run did not return within %s", cc.Group, waitTimeout)
		}
	})
	t.Cleanup(stop)
	return c, stop
}

// collector is a Handler that records every message it sees.
type collector struct {
	mu   sync.Mutex
	msgs []*kafka.Message
}

func (c *collector) handle(_ context.Context, m *kafka.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
	return nil
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) snapshot() []*kafka.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*kafka.Message(nil), c.msgs...)
}

// publish produces msgs and fails the test on any delivery error.
func publish(t *testing.T, cfg kafka.Config, msgs ...kafka.Message) {
	t.Helper()
	p, err := kafka.NewProducer(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i, err := range p.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("publish %d (%s): %v", i, msgs[i].String(), err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

var seq atomic.Int64

// unique returns a name unique within the test binary.
func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }
