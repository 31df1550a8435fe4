package kafka

import (
	"context"
	"reflect"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// consumedMessage is the per-message fast path of fromConfluent: it must give
// the same Message.
func TestConsumedMessageMatchesFromConfluent(t *testing.T) {
	t.Parallel()
	topic := "orders"
	ts := time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		headers []ck.Header
	}{
		{"no headers", nil},
		{"cloudevents", []ck.Header{
			{Key: HeaderSpecVersion, Value: []byte(SpecVersion)},
			{Key: HeaderID, Value: []byte("0192f0c8-0000-7000-8000-000000000001")},
			{Key: HeaderType, Value: []byte("puchi.v1.Thing")},
			{Key: HeaderContentType, Value: []byte(ContentTypeProtobuf)},
		}},
		{"empty and nil values", []ck.Header{{Key: "a", Value: nil}, {Key: "b", Value: []byte{}}, {Key: "c", Value: []byte("x")}}},
		{"repeated name: last wins", []ck.Header{{Key: "a", Value: []byte("1")}, {Key: "a", Value: []byte("22")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			km := &ck.Message{
				TopicPartition: ck.TopicPartition{Topic: &topic, Partition: 2, Offset: 41},
				Key:            []byte("u1"), Value: []byte("v"), Headers: tc.headers, Timestamp: ts,
			}
			want := Message{Topic: topic, Partition: 2, Offset: 41, Key: km.Key, Value: km.Value, Timestamp: ts}
			if len(tc.headers) > 0 {
				want.Headers = map[string]string{}
				for _, h := range tc.headers {
					want.Headers[h.Key] = string(h.Value)
				}
			}
			if got := consumedMessage(km); !reflect.DeepEqual(got, want) {
				t.Fatalf("consumedMessage = %+v, want %+v", got, want)
			}
		})
	}
}

// The process span carries the same attributes whether they are given at
// start (constant per partition) or added once it records (per message).
func TestProcessSpansAttributes(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer(TracerName)
	m := &Message{Topic: "orders", Partition: 2, Offset: 41, Key: []byte("u1"),
		Headers: map[string]string{HeaderID: "id-1", HeaderType: "puchi.v1.Thing"}}
	ps := newProcessSpans(m.Topic, m.Partition, "g1")
	ctx, span := ps.start(context.Background(), tracer, m)
	if trace.SpanFromContext(ctx) != span {
		t.Fatal("the handler context does not carry the span")
	}
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans ended, want 1", len(ended))
	}
	s := ended[0]
	if s.Name() != "process orders" || s.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("span %q kind %s", s.Name(), s.SpanKind())
	}
	got := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	want := map[attribute.Key]string{
		"messaging.system":                   "kafka",
		"messaging.operation.type":           "process",
		"messaging.operation.name":           "process",
		"messaging.destination.name":         "orders",
		"messaging.destination.partition.id": "2",
		"messaging.consumer.group.name":      "g1",
		"messaging.kafka.offset":             "41",
		"messaging.kafka.message.key":        "u1",
		"messaging.message.id":               "id-1",
		"cloudevents.event_type":             "puchi.v1.Thing",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("attributes = %v, want %v", got, want)
	}

	// A tracer that does not record gets no per-message attributes built.
	_, nspan := ps.start(context.Background(), noop.NewTracerProvider().Tracer(TracerName), m)
	if nspan.IsRecording() {
		t.Fatal("no-op span records")
	}
	nspan.End()
}

// The per-message path allocates a bounded, small number of objects: one map
// (with its table) and one string for all header values.
func TestConsumedMessageAllocations(t *testing.T) {
	topic := "orders"
	hs := make([]ck.Header, 0, 7)
	for _, k := range []string{HeaderSpecVersion, HeaderID, HeaderType, HeaderSource, HeaderTime, HeaderSubject, HeaderContentType} {
		hs = append(hs, ck.Header{Key: k, Value: []byte("value-of-" + k)})
	}
	km := &ck.Message{TopicPartition: ck.TopicPartition{Topic: &topic, Partition: 0, Offset: 1}, Headers: hs}
	var sink Message
	allocs := testing.AllocsPerRun(200, func() { sink = consumedMessage(km) })
	if allocs > 3 {
		t.Errorf("consumedMessage: %.0f allocations per message, want ≤ 3 (fromConfluent: one per header value more)", allocs)
	}
	_ = sink
}
