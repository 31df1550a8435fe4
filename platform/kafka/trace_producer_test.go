package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// TestPublishTracesMessagesWithoutCreationContext: a direct publish (no outbox)
// with a span in ctx gets one PRODUCER "send <topic>" span per message that
// carries no trace context, a child of that span, ended with the delivery report
// (an error status for a refused message); the record carries the send span's
// context. A message that already carries one (a relayed outbox row, a dead
// letter) is sent unchanged with no span, and without a span in ctx nothing is
// traced.
func TestPublishTracesMessagesWithoutCreationContext(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("trace-send")
	kafkatest.EnsureTopics(t, cfg, topic)
	p := kafkatest.NewProducer(t, cfg)

	// A provider of the test's own: the send span must come from the provider of
	// the span in ctx, not from the global one (TestMain's recorder).
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	_, earlier := tp.Tracer("test").Start(context.Background(), "CompleteLesson")
	carried := kafkatest.Event(t, topic, "user-2", "relayed")
	kafka.InjectTrace(trace.ContextWithSpan(context.Background(), earlier), &carried)
	earlier.End()
	carriedTP := carried.Headers[kafka.HeaderTraceparent]

	ctx, parent := tp.Tracer("test").Start(context.Background(), "IngestEvents")
	plain := kafkatest.Event(t, topic, "user-1", "direct")
	big := kafkatest.Event(t, topic, "user-3", "too big")
	big.Value = bytes.Repeat([]byte{'x'}, 2<<20) // > message.max.bytes: refused by the client
	pubCtx, cancel := context.WithTimeout(ctx, kafkatest.Timeout)
	defer cancel()
	errs := p.Publish(pubCtx, []kafka.Message{plain, carried, big})
	parent.End()
	if errs[0] != nil || errs[1] != nil || !kafka.IsPermanent(errs[2]) {
		t.Fatalf("Publish = %v, want nil, nil, a permanent error", errs)
	}
	if _, ok := plain.Headers[kafka.HeaderTraceparent]; ok {
		t.Error("Publish modified the caller's headers")
	}

	// Publish has returned: every span it started has ended.
	sends := map[string]tracetest.SpanStub{} // by ce_id
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindProducer {
			sends[attrOf(s.Attributes, "messaging.message.id")] = s
		}
	}
	if len(sends) != 2 {
		t.Fatalf("%d producer spans (%v), want 2: the plain and the refused message", len(sends), names(exp.GetSpans()))
	}
	if _, ok := sends[carried.ID()]; ok {
		t.Error("a message that carries a creation context got a send span")
	}
	for _, m := range []kafka.Message{plain, big} {
		s, ok := sends[m.ID()]
		if !ok {
			t.Fatalf("no send span for %s", m.String())
		}
		if s.Name != "send "+topic {
			t.Errorf("span name %q, want %q", s.Name, "send "+topic)
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() || s.SpanContext.TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("%s: parent %s, want the span in ctx %s", s.Name, s.Parent.SpanID(), parent.SpanContext().SpanID())
		}
		want := map[attribute.Key]string{
			"messaging.system":            "kafka",
			"messaging.operation.type":    "send",
			"messaging.operation.name":    "send",
			"messaging.destination.name":  topic,
			"messaging.kafka.message.key": string(m.Key),
			"messaging.message.id":        m.ID(),
			"cloudevents.event_type":      m.Type(),
		}
		for k, v := range want {
			if got := attrOf(s.Attributes, k); got != v {
				t.Errorf("%s of %s = %q, want %q", k, m.ID(), got, v)
			}
		}
	}
	if s := sends[plain.ID()]; s.Status.Code != codes.Unset {
		t.Errorf("delivered message's span status = %v", s.Status)
	}
	if s := sends[big.ID()]; s.Status.Code != codes.Error || attrOf(s.Attributes, "error.type") == "" {
		t.Errorf("refused message's span: status %v, error.type %q; want an error", s.Status, attrOf(s.Attributes, "error.type"))
	}

	// Without a span in ctx: no span, no trace context.
	before := len(exp.GetSpans())
	bare := kafkatest.Event(t, topic, "user-4", "no span")
	bareCtx, cancelBare := context.WithTimeout(context.Background(), kafkatest.Timeout)
	defer cancelBare()
	if err := p.Publish(bareCtx, []kafka.Message{bare})[0]; err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != before {
		t.Errorf("publishing without a span in ctx recorded %d spans", n-before)
	}

	recs := kafkatest.NewReader(t, cfg, topic).WaitFor("the three records", kafkatest.HasID(plain.ID(), carried.ID(), bare.ID()))
	for _, r := range recs {
		got := r.Headers[kafka.HeaderTraceparent]
		switch r.ID() {
		case plain.ID():
			sc := sends[plain.ID()].SpanContext
			if want := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID()); got != want {
				t.Errorf("plain record's traceparent = %q, want the send span's %q", got, want)
			}
		case carried.ID():
			if got != carriedTP {
				t.Errorf("carried record's traceparent = %q, want it unchanged %q", got, carriedTP)
			}
		case bare.ID():
			if got != "" {
				t.Errorf("record published without a span carries traceparent %q", got)
			}
		}
	}
}

func attrOf(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func names(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name + "/" + s.SpanKind.String()
	}
	return out
}
