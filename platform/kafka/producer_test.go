package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// TestPublishStopsKeyAfterLocalFailure: a message the client refuses (larger than
// message.max.bytes) must not be overtaken by a later message of its key in the
// same call; other keys go on.
func TestPublishStopsKeyAfterLocalFailure(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("stop-key")
	kafkatest.EnsureTopics(t, cfg, topic)
	p, err := kafka.NewProducer(cfg, kafkatest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	big := kafkatest.Event(t, topic, "k1", "big")
	big.Value = bytes.Repeat([]byte{'x'}, 2<<20) // > message.max.bytes (1 MB)
	msgs := []kafka.Message{big, kafkatest.Event(t, topic, "k1", "after"), kafkatest.Event(t, topic, "k2", "other"), kafkatest.Event(t, topic, "k1", "later")}
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout)
	defer cancel()
	errs := p.Publish(ctx, msgs)
	var kerr ck.Error
	if !errors.As(errs[0], &kerr) || kerr.Code() != ck.ErrMsgSizeTooLarge || !kafka.IsPermanent(errs[0]) {
		t.Errorf("too large message: %v, want a permanent ErrMsgSizeTooLarge", errs[0])
	}
	if !errors.Is(errs[1], kafka.ErrSkipped) || !errors.Is(errs[3], kafka.ErrSkipped) {
		t.Errorf("later messages of the key: %v, %v; want ErrSkipped", errs[1], errs[3])
	}
	if errs[2] != nil {
		t.Errorf("other key: %v, want delivered", errs[2])
	}
	if p.Err() != nil {
		t.Errorf("Err() = %v on a healthy producer", p.Err())
	}
}
