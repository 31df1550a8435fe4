// Package kafkatest is the test kit for code that talks to Kafka: it starts the
// embedded broker (platform/broker) for one test, provisions topics, produces
// events, runs consumers and other loops in the background, polls conditions with
// a deadline, and reads topics back with a raw confluent consumer (see [Reader]).
//
// Every helper takes the test's testing.TB and fails it on error, so tests of any
// package (and of any module of the workspace) call them without error plumbing.
// Every wait is bounded by [Timeout] and conditions are polled, never assumed after
// a fixed sleep.
package kafkatest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Timeout bounds every wait of this package: generous, for a loaded 2-core
// machine under -race.
const Timeout = 60 * time.Second

// pollInterval is how often [WaitFor] re-evaluates its condition.
const pollInterval = 20 * time.Millisecond

// Logger returns a logger that writes warnings and errors to the test's output
// (shown for failed tests and under -v).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Start runs an embedded broker on a free port of 127.0.0.1 with a temporary data
// directory, stopped when the test ends, and returns a client config for it (no
// other field set: apply [kafka.Config.WithDefaults] where the code under test
// expects defaults).
func Start(t testing.TB) kafka.Config {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}, Logger(t))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), ClientID: "kafkatest"}
}

// EnsureTopics runs [kafka.EnsureTopics] within [Timeout].
func EnsureTopics(t testing.TB, cfg kafka.Config, topics ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, topics...); err != nil {
		t.Fatalf("EnsureTopics(%v): %v", topics, err)
	}
}

// NewProducer returns a real idempotent producer, closed when the test ends (or
// earlier by the caller: Close is idempotent).
func NewProducer(t testing.TB, cfg kafka.Config) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(cfg, Logger(t))
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close producer: %v", err)
		}
	})
	return p
}

// Produce publishes msgs, in order, with a producer of its own, and fails the test
// on any delivery error. It returns once every message is acknowledged.
func Produce(t testing.TB, cfg kafka.Config, msgs ...kafka.Message) {
	t.Helper()
	p, err := kafka.NewProducer(cfg, Logger(t))
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	for i, err := range p.Publish(ctx, msgs) {
		if err != nil {
			t.Fatalf("publish %d (%s): %v", i, msgs[i].String(), err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("close producer: %v", err)
	}
}

// Event returns a CloudEvents message for topic with key as its partition key and
// ce_subject, source "test" and text as a google.protobuf.StringValue payload
// (read it back with [Text]).
func Event(t testing.TB, topic, key, text string) kafka.Message {
	t.Helper()
	m, err := kafka.NewEvent(kafka.EventSpec{
		Topic: topic, Key: key, Source: "test", Subject: key, Payload: wrapperspb.String(text),
	})
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	return m
}

// Text decodes the google.protobuf.StringValue payload of m (see [Event]).
func Text(t testing.TB, m kafka.Message) string {
	t.Helper()
	var v wrapperspb.StringValue
	if err := proto.Unmarshal(m.Value, &v); err != nil {
		t.Fatalf("%s: decode StringValue: %v", m.String(), err)
	}
	return v.GetValue()
}

// WaitFor polls cond until it holds, failing the test when [Timeout] passes first.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Timeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// Go runs run (a consumer's or relay's Run, say) in the background. The returned
// stop cancels its context and waits for it to return, failing the test when it
// returns an error or not within [Timeout]; stop is idempotent and also runs when
// the test ends. name identifies the loop in failures.
func Go(t testing.TB, name string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		case <-time.After(Timeout):
			t.Errorf("%s: Run did not return within %s", name, Timeout)
		}
	})
	t.Cleanup(stop)
	return stop
}

// RunConsumer creates a [kafka.Consumer] logging through [Logger] and runs it
// with [Go]; stop cancels it and waits for Run to return.
func RunConsumer(t testing.TB, cfg kafka.Config, cc kafka.ConsumerConfig, h kafka.Handler) (c *kafka.Consumer, stop func()) {
	t.Helper()
	c, err := kafka.NewConsumer(cfg, cc, h, Logger(t))
	if err != nil {
		t.Fatalf("new consumer %s: %v", cc.Group, err)
	}
	return c, Go(t, "consumer "+cc.Group, c.Run)
}
