package kafka

import (
	"context"
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the OpenTelemetry instrumentation scope of this package's spans.
const TracerName = "puchi/kafka"

// headerCarrier adapts Message.Headers to the OpenTelemetry text-map carrier.
type headerCarrier struct{ m *Message }

var _ propagation.TextMapCarrier = headerCarrier{}

func (c headerCarrier) Get(key string) string { return c.m.Headers[key] }

func (c headerCarrier) Set(key, value string) {
	if c.m.Headers == nil {
		c.m.Headers = make(map[string]string)
	}
	c.m.Headers[key] = value
}

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c.m.Headers))
	for k := range c.m.Headers {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the trace context of ctx (W3C traceparent/tracestate, or
// whatever the global propagator carries) into m's headers. It does nothing
// when ctx carries no span or no propagator is installed. Not safe for concurrent
// use on the same message.
func InjectTrace(ctx context.Context, m *Message) {
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier{m})
}

// ExtractTrace returns ctx extended with the remote trace context found in m's
// headers (unchanged when there is none), using the global propagator.
func ExtractTrace(ctx context.Context, m *Message) context.Context {
	// Extract only reads: a MapCarrier over the headers reads them as
	// headerCarrier does, without making m escape to the heap.
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(m.Headers))
}

// CreationContext returns the span context m's headers carry (its creation
// context, see [StartCreate]), or an invalid one when they carry none.
func CreationContext(m *Message) trace.SpanContext {
	return trace.SpanContextFromContext(ExtractTrace(context.Background(), m))
}

// StartCreate records the creation of m and makes that record m's creation
// context, following the OpenTelemetry messaging conventions: when ctx carries a
// valid span context, it starts a PRODUCER span "create <topic>"
// (messaging.operation.type "create") as a child of it and injects that span's
// context into m's headers, so every consumer span of m is its child. The caller
// ends the returned span once m is handed over (the outbox: once the row is
// stored) and may record an error on it first.
//
// The span comes from the TracerProvider of ctx's span, so it is exported, and
// sampled, with its parent; a span context without an SDK behind it (a no-op
// provider) is injected unchanged. When ctx carries no valid span context no
// span is started: m gets what [InjectTrace] gives it (nothing, or baggage) and the
// returned span is a no-op, so a background job's event is not made the root of
// a trace of its own.
//
// StartCreate writes to m.Headers (allocating it when nil); not safe for
// concurrent use on the same message.
func StartCreate(ctx context.Context, m *Message) trace.Span {
	ctx, span := startProducerSpan(ctx, m, "create", semconv.MessagingOperationTypeCreate, trace.SpanKindProducer)
	InjectTrace(ctx, m)
	return span
}

// startProducerSpan starts the span of one message as a child of ctx's span,
// from that span's provider; with no valid span in ctx it returns ctx and a
// no-op span.
func startProducerSpan(ctx context.Context, m *Message, op string, opType attribute.KeyValue, kind trace.SpanKind) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.SpanContext().IsValid() {
		return ctx, noop.Span{}
	}
	return parent.TracerProvider().Tracer(TracerName).Start(ctx, op+" "+m.Topic,
		trace.WithSpanKind(kind), trace.WithAttributes(messageAttributes(m, op, opType)...))
}

// processSpans starts the CONSUMER spans "process <topic>" of one partition,
// following the OpenTelemetry messaging conventions. It is built once per
// partition by [newProcessSpans]: the span name and the attributes that are the
// same for every message of the partition (system, operation, destination,
// partition, consumer group) are given at span creation, where samplers see
// them; the per-message ones (offset, key, CloudEvents id and type) are added
// only when the span records, so a no-op tracer costs no attribute building.
// Read-only after construction.
type processSpans struct {
	name string
	opts []trace.SpanStartOption
}

func newProcessSpans(topic string, partition int32, group string) processSpans {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(topic))
	if partition >= 0 {
		attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))))
	}
	attrs = append(attrs, semconv.MessagingConsumerGroupName(group))
	return processSpans{
		name: "process " + topic,
		opts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)},
	}
}

// start starts the span of handling m, a message of this partition: a child of
// the creation context m's headers carry (see [StartCreate]), or of ctx's span
// when they carry none. It returns the context handlers run in.
func (p processSpans) start(ctx context.Context, tracer trace.Tracer, m *Message) (context.Context, trace.Span) {
	ctx, span := tracer.Start(ExtractTrace(ctx, m), p.name, p.opts...)
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, semconv.MessagingKafkaOffset(int(m.Offset)))
		attrs = appendMessageIdentity(attrs, m)
		span.SetAttributes(attrs...)
	}
	return ctx, span
}

// messageAttributes describes one message with the messaging semantic
// conventions, plus the CloudEvents id (as messaging.message.id) and type.
func messageAttributes(m *Message, op string, opType attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 8)
	attrs = append(attrs,
		semconv.MessagingSystemKafka,
		opType,
		semconv.MessagingOperationName(op),
		semconv.MessagingDestinationName(m.Topic))
	if m.Partition >= 0 {
		attrs = append(attrs, semconv.MessagingDestinationPartitionID(strconv.Itoa(int(m.Partition))))
	}
	return appendMessageIdentity(attrs, m)
}

// appendMessageIdentity appends m's key (when valid UTF-8), CloudEvents id and
// type, each when present.
func appendMessageIdentity(attrs []attribute.KeyValue, m *Message) []attribute.KeyValue {
	if len(m.Key) > 0 && utf8.Valid(m.Key) {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(string(m.Key)))
	}
	if id := m.ID(); id != "" {
		attrs = append(attrs, semconv.MessagingMessageID(id))
	}
	if t := m.Type(); t != "" {
		attrs = append(attrs, semconv.CloudEventsEventType(t))
	}
	return attrs
}

// EndSpan ends a messaging span with the outcome of its operation: err, when
// not nil, is recorded, sets error.type and the span's status. span may be nil.
func EndSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetAttributes(semconv.ErrorType(err))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
