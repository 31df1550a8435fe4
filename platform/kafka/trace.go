package kafka

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
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
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier{m})
}
