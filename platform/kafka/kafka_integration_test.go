package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

func describe(t *testing.T, cfg kafka.Config, topics ...string) map[string]kafka.TopicInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout)
	defer cancel()
	infos, err := kafka.DescribeTopics(ctx, cfg, topics...)
	if err != nil {
		t.Fatalf("DescribeTopics: %v", err)
	}
	return infos
}

func TestEnsureTopicsIdempotentWithRetention(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	const override = 7 * 24 * time.Hour
	cfg.TopicRetention = map[string]time.Duration{kafka.TopicAnalyticsEvents: override}

	// A topic that already exists with another retention gets realigned.
	stale := cfg
	stale.Retention = time.Hour
	kafkatest.EnsureTopics(t, stale, kafka.TopicUserEvents)
	if got := describe(t, cfg, kafka.TopicUserEvents)[kafka.TopicUserEvents].Retention; got != time.Hour {
		t.Fatalf("pre-existing retention = %s, want 1h", got)
	}

	all := append(slices.Clone(kafka.Topics), kafka.DLQTopic("g"))
	for range 2 {
		kafkatest.EnsureTopics(t, cfg, all...)
	}
	infos := describe(t, cfg, append(all, "missing-topic")...)
	if _, ok := infos["missing-topic"]; ok {
		t.Error("DescribeTopics reported a topic that does not exist")
	}
	for _, topic := range all {
		info, ok := infos[topic]
		if !ok {
			t.Errorf("%s: missing", topic)
			continue
		}
		want := kafka.DefaultRetention
		if topic == kafka.TopicAnalyticsEvents {
			want = override
		}
		if info.Partitions != 3 || info.Retention != want || !info.RetentionExplicit {
			t.Errorf("%s: got %+v, want 3 partitions, explicit retention %s", topic, info, want)
		}
	}
	if ms := infos[kafka.TopicLessonEvents].Retention.Milliseconds(); ms != 2592000000 {
		t.Errorf("retention.ms = %d, want 2592000000", ms)
	}
}

func TestRoundTripKeepsKeyHeadersAndTrace(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("roundtrip")
	kafkatest.EnsureTopics(t, cfg, topic)

	ctx, span := otel.Tracer("test").Start(context.Background(), "produce")
	var sent []kafka.Message
	for i := range 20 {
		m := kafkatest.Event(t, topic, fmt.Sprintf("user-%d", i%4), strconv.Itoa(i))
		m.Headers["x-custom"] = "v" + strconv.Itoa(i)
		kafka.InjectTrace(ctx, &m)
		sent = append(sent, m)
	}
	span.End()
	kafkatest.Produce(t, cfg, sent...)

	var got collector
	group := unique("rt-group")
	kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, got.handle)
	kafkatest.WaitFor(t, "20 messages", func() bool { return got.len() >= len(sent) })

	byID := map[string]kafka.Message{}
	for _, m := range sent {
		byID[m.ID()] = m
	}
	lastPerKey := map[string]int{}
	for _, m := range got.snapshot() {
		want, ok := byID[m.ID()]
		if !ok {
			t.Fatalf("unexpected message %s", m)
		}
		if string(m.Key) != string(want.Key) || !proto.Equal(decode(t, m.Value), decode(t, want.Value)) {
			t.Errorf("%s: key/value changed", m)
		}
		for k, v := range want.Headers {
			if m.Headers[k] != v {
				t.Errorf("%s: header %s = %q, want %q", m, k, m.Headers[k], v)
			}
		}
		if m.Headers[kafka.HeaderTraceparent] == "" {
			t.Errorf("%s: no traceparent", m)
		}
		// Per-key order: payloads of one key arrive increasing.
		n, _ := strconv.Atoi(decode(t, m.Value).GetValue())
		if prev, ok := lastPerKey[string(m.Key)]; ok && n < prev {
			t.Errorf("key %s: %d after %d", m.Key, n, prev)
		}
		lastPerKey[string(m.Key)] = n
	}

	// One CONSUMER span "process <topic>" per message, a child of the context
	// its headers carry, described with the messaging conventions.
	parent := span.SpanContext()
	var consumed []sdktrace.ReadOnlySpan
	kafkatest.WaitFor(t, "consumer spans", func() bool {
		consumed = consumed[:0]
		for _, s := range spans.Ended() {
			if s.Name() == "process "+topic && s.SpanContext().TraceID() == parent.TraceID() {
				consumed = append(consumed, s)
			}
		}
		return len(consumed) >= len(sent)
	})
	for _, s := range consumed {
		a := s.Attributes()
		want, ok := byID[attrOf(a, "messaging.message.id")]
		if !ok || s.SpanKind() != trace.SpanKindConsumer || s.Parent().SpanID() != parent.SpanID() ||
			attrOf(a, "messaging.system") != "kafka" || attrOf(a, "messaging.operation.type") != "process" ||
			attrOf(a, "messaging.destination.name") != topic || attrOf(a, "messaging.consumer.group.name") != group ||
			attrOf(a, "messaging.destination.partition.id") == "" || attrOf(a, "messaging.kafka.offset") == "" ||
			attrOf(a, "cloudevents.event_type") != want.Type() {
			t.Errorf("consumer span %s [%s] parent %s: %v", s.Name(), s.SpanKind(), s.Parent().SpanID(), a)
		}
	}
}

func decode(t *testing.T, b []byte) *wrapperspb.StringValue {
	t.Helper()
	var v wrapperspb.StringValue
	if err := proto.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return &v
}

// TestPoisonMessagesGoToDLQ: permanent failures and undecodable messages go
// to the group's DLQ through a producer the consumer creates itself.
func TestPoisonMessagesGoToDLQ(t *testing.T) {
	t.Parallel()
	checkPoisonToDLQ(t, kafkatest.Start(t), nil)
}

func TestTransientErrorIsRetried(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("transient")
	kafkatest.EnsureTopics(t, cfg, topic)
	kafkatest.Produce(t, cfg, kafkatest.Event(t, topic, "u1", "a"))

	var calls atomic.Int32
	c, _ := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: unique("transient-group"), Topics: []string{topic}, Backoff: 5 * time.Millisecond},
		func(ctx context.Context, m *kafka.Message) error {
			if calls.Add(1) <= 2 {
				return errors.New("database is locked")
			}
			return nil
		})
	kafkatest.WaitFor(t, "message processed", func() bool { return c.Stats().Processed == 1 })
	if s := c.Stats(); s.Retried != 2 || s.DeadLettered != 0 || calls.Load() != 3 {
		t.Errorf("stats = %+v, calls = %d; want 2 retries, no dead letter, 3 calls", s, calls.Load())
	}
}

func TestRestartResumesFromCommittedOffset(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("resume")
	group := unique("resume-group")
	kafkatest.EnsureTopics(t, cfg, topic)

	var first []kafka.Message
	for i := range 6 {
		first = append(first, kafkatest.Event(t, topic, fmt.Sprintf("u%d", i%3), "first-"+strconv.Itoa(i)))
	}
	kafkatest.Produce(t, cfg, first...)
	var seen1 collector
	c1, stop1 := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, seen1.handle)
	kafkatest.WaitFor(t, "first batch", func() bool { return c1.Stats().Processed == uint64(len(first)) })
	stop1()

	var second []kafka.Message
	for i := range 6 {
		second = append(second, kafkatest.Event(t, topic, fmt.Sprintf("u%d", i%3), "second-"+strconv.Itoa(i)))
	}
	kafkatest.Produce(t, cfg, second...)
	var seen2 collector
	kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, seen2.handle)
	// Every key's partition holds the first batch before the second, so once the
	// second batch is in, any redelivery of the first would have been seen.
	kafkatest.WaitFor(t, "second batch", func() bool { return seen2.len() >= len(second) })
	for _, m := range seen2.snapshot() {
		if v := decode(t, m.Value).GetValue(); v[:6] != "second" {
			t.Errorf("restarted consumer reprocessed %s (%s)", m, v)
		}
	}
}

func TestCancelDuringRetryDoesNotDeadLetter(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("cancel")
	group := unique("cancel-group")
	kafkatest.EnsureTopics(t, cfg, topic)
	msg := kafkatest.Event(t, topic, "u1", "stuck")
	kafkatest.Produce(t, cfg, msg)

	c, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}, MaxRetries: 1000, Backoff: 10 * time.Millisecond},
		func(ctx context.Context, m *kafka.Message) error { return errors.New("downstream unavailable") })
	kafkatest.WaitFor(t, "a retry", func() bool { return c.Stats().Retried >= 2 })
	stop()
	checkRedelivered(t, cfg, c, group, msg)
}

// checkRedelivered checks that c, stopped while msg (the only message of its
// topic) was in hand, neither processed nor dead-lettered anything, that the
// group's DLQ is empty, and that the group gets msg again: its offset was not
// stored.
func checkRedelivered(t *testing.T, cfg kafka.Config, c *kafka.Consumer, group string, msg kafka.Message) {
	t.Helper()
	if s := c.Stats(); s.DeadLettered != 0 || s.Processed != 0 {
		t.Fatalf("stats after stop = %+v, want nothing dead-lettered or processed", s)
	}
	if n := highWatermarks(t, cfg, kafka.DLQTopic(group)); n != 0 {
		t.Fatalf("DLQ holds %d records, want 0", n)
	}
	var again collector
	kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{msg.Topic}}, again.handle)
	kafkatest.WaitFor(t, "redelivery", func() bool { return again.len() == 1 })
	if got := again.snapshot()[0].ID(); got != msg.ID() {
		t.Fatalf("redelivered %s, want %s", got, msg.ID())
	}
}

// highWatermarks sums the high watermarks of topic's partitions.
func highWatermarks(t *testing.T, cfg kafka.Config, topic string) int64 {
	t.Helper()
	var total int64
	for _, high := range kafkatest.EndOffsets(t, cfg, topic) {
		total += high
	}
	return total
}

func TestPublishAfterCloseFails(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	p, err := kafka.NewProducer(cfg, kafkatest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	errs := p.Publish(t.Context(), []kafka.Message{kafkatest.Event(t, "x", "k", "v")})
	if len(errs) != 1 || !errors.Is(errs[0], kafka.ErrProducerClosed) {
		t.Fatalf("Publish after Close = %v, want ErrProducerClosed", errs)
	}
}
