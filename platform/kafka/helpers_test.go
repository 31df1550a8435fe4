package kafka_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

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

var seq atomic.Int64

// unique returns a name unique within the test binary.
func unique(prefix string) string { return fmt.Sprintf("%s-%d", prefix, seq.Add(1)) }
