package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestProducerErrReportsFatalError(t *testing.T) {
	t.Parallel()
	pr, err := NewProducer(Config{Brokers: "127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pr.Close(context.Background()) }()
	if err := pr.Err(); err != nil {
		t.Fatalf("Err() = %v before any failure", err)
	}
	pr.p.TestFatalError(ck.ErrOutOfOrderSequenceNumber, "test fatal error")
	deadline := time.Now().Add(10 * time.Second)
	for pr.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("Err() still nil after a fatal error")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var kerr ck.Error
	if !errors.As(pr.Err(), &kerr) || !kerr.IsFatal() {
		t.Errorf("Err() = %v, want the fatal client error", pr.Err())
	}
	errs := pr.Publish(context.Background(), []Message{{Topic: "t", Key: []byte("k"), Value: []byte("v"), Partition: -1}})
	if len(errs) != 1 || !errors.Is(errs[0], pr.Err()) {
		t.Errorf("Publish after a fatal error = %v, want %v", errs, pr.Err())
	}
	if IsPermanent(errs[0]) {
		t.Error("a fatal producer error is marked permanent: it would park outbox rows")
	}
}
