package kafka_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

// TestPoisonMessagesGoToDLQSharedProducer is TestPoisonMessagesGoToDLQ with the
// dead letters written by a producer the consumer is given (as `puchi run` gives
// every consumer the process's one producer) instead of one of its own.
func TestPoisonMessagesGoToDLQSharedProducer(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	checkPoisonToDLQ(t, cfg, kafkatest.NewProducer(t, cfg))
}

// checkPoisonToDLQ runs a consumer (dead-lettering through shared; nil: its own
// producer) over two poison messages among three good ones on one partition and
// checks that exactly the poison ones reach the DLQ, with key, value, original
// headers and the dlq_* headers.
func checkPoisonToDLQ(t *testing.T, cfg kafka.Config, shared *kafka.Producer) {
	t.Helper()
	topic := unique("poison")
	group := unique("poison-group")
	kafkatest.EnsureTopics(t, cfg, topic)

	var handled collector
	r := kafka.NewRouter()
	kafka.On(r, func(ctx context.Context, v *wrapperspb.StringValue, m *kafka.Message) error {
		if v.GetValue() == "poison" {
			return kafka.Permanent(errors.New("cannot apply poison"))
		}
		return handled.handle(ctx, m)
	})

	// One key, so every message is on one partition behind the poison ones.
	poison := kafkatest.Event(t, topic, "u1", "poison")
	garbled := kafkatest.Event(t, topic, "u1", "x")
	garbled.Value = []byte{0xff, 0xff, 0xff, 0xff} // known ce_type, undecodable bytes
	unknown := kafkatest.Event(t, topic, "u1", "y")
	unknown.Headers[kafka.HeaderType] = "puchi.other.v1.Unknown"
	ok1, ok2 := kafkatest.Event(t, topic, "u1", "ok1"), kafkatest.Event(t, topic, "u1", "ok2")
	kafkatest.Produce(t, cfg, poison, ok1, garbled, unknown, ok2)

	c, _ := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}, Backoff: time.Millisecond, DLQProducer: shared}, r.Handle)
	// ok1, ok2 and the skipped unknown count as processed.
	kafkatest.WaitFor(t, "3 processed, 2 dead-lettered", func() bool {
		s := c.Stats()
		return s.DeadLettered == 2 && s.Processed == 3 && handled.len() == 2
	})
	if s := c.Stats(); s.Retried != 0 {
		t.Errorf("stats = %+v, want 0 retries (Permanent skips them)", s)
	}

	var dead collector
	kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: unique("dlq-reader"), Topics: []string{kafka.DLQTopic(group)}}, dead.handle)
	kafkatest.WaitFor(t, "2 messages in the DLQ", func() bool { return dead.len() == 2 })
	want := map[string]kafka.Message{poison.ID(): poison, garbled.ID(): garbled}
	for _, m := range dead.snapshot() {
		orig, ok := want[m.ID()]
		if !ok {
			t.Fatalf("unexpected dead letter %s", m)
		}
		if string(m.Key) != "u1" || string(m.Value) != string(orig.Value) || m.Type() != orig.Type() {
			t.Errorf("dead letter %s lost key, value or headers", m)
		}
		if m.Headers[kafka.HeaderDLQTopic] != topic || m.Headers[kafka.HeaderDLQGroup] != group ||
			m.Headers[kafka.HeaderDLQPartition] == "" || m.Headers[kafka.HeaderDLQOffset] == "" ||
			m.Headers[kafka.HeaderDLQError] == "" || m.Headers[kafka.HeaderDLQTime] == "" {
			t.Errorf("dead letter %s: dlq headers incomplete: %v", m, m.Headers)
		}
	}
}

// TestConsumerLeavesSharedProducerOpen: a consumer that dead-lettered through a
// shared producer and then stopped has not closed it; the producer still
// publishes, with acknowledgement.
func TestConsumerLeavesSharedProducerOpen(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("shared")
	kafkatest.EnsureTopics(t, cfg, topic)
	shared := kafkatest.NewProducer(t, cfg)
	kafkatest.Produce(t, cfg, kafkatest.Event(t, topic, "u1", "poison"))

	c, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: unique("shared-group"), Topics: []string{topic}, DLQProducer: shared},
		func(context.Context, *kafka.Message) error { return kafka.Permanent(errors.New("poison")) })
	kafkatest.WaitFor(t, "the dead letter", func() bool { return c.Stats().DeadLettered == 1 })
	stop()

	if err := shared.Err(); err != nil {
		t.Fatalf("shared producer after the consumer stopped: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout)
	defer cancel()
	if errs := shared.Publish(ctx, []kafka.Message{kafkatest.Event(t, topic, "u2", "after")}); errs[0] != nil {
		t.Fatalf("publish through the shared producer after the consumer stopped: %v", errs[0])
	}
}

// TestClosedSharedProducerLosesNothing: when the shared producer cannot take the
// dead letter (here: closed too early by its owner), the consumer keeps retrying
// the dead letter instead of storing the offset; after a shutdown the same group
// gets the message again and nothing is in the DLQ. It also shows the consumer
// writes through the producer it is given, not one of its own.
func TestClosedSharedProducerLosesNothing(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("closed")
	group := unique("closed-group")
	kafkatest.EnsureTopics(t, cfg, topic)
	msg := kafkatest.Event(t, topic, "u1", "poison")
	kafkatest.Produce(t, cfg, msg)

	closed, err := kafka.NewProducer(cfg, kafkatest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var logs telemetrytest.LogBuffer
	c, err := kafka.NewConsumer(cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}, Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, DLQProducer: closed},
		func(context.Context, *kafka.Message) error { return kafka.Permanent(errors.New("poison")) },
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := kafkatest.Go(t, "consumer", c.Run)
	kafkatest.WaitFor(t, "failed dead-letter attempts", func() bool { return strings.Count(logs.String(), "dead-letter produce failed") >= 3 })
	stop()
	checkRedelivered(t, cfg, c, group, msg)
}
