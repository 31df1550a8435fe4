package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     kafka.Config
		wantEnv string // "" means valid
	}{
		{"defaults", kafka.Config{Brokers: "localhost:9092"}, ""},
		{"several brokers", kafka.Config{Brokers: "a:9092, b:9092"}, ""},
		{"no brokers", kafka.Config{}, "KAFKA_BROKERS"},
		{"broker without port", kafka.Config{Brokers: "localhost"}, "KAFKA_BROKERS"},
		{"negative partitions", kafka.Config{Brokers: "a:1", Partitions: -1}, "KAFKA_PARTITIONS"},
		{"negative replication", kafka.Config{Brokers: "a:1", ReplicationFactor: -2}, "KAFKA_REPLICATION_FACTOR"},
		{"negative retention", kafka.Config{Brokers: "a:1", Retention: -time.Hour}, "KAFKA_RETENTION"},
		{"bad topic retention", kafka.Config{Brokers: "a:1", TopicRetention: map[string]time.Duration{"t": 0}}, "KAFKA_TOPIC_RETENTION"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			switch {
			case tc.wantEnv == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantEnv != "" && (err == nil || !strings.Contains(err.Error(), tc.wantEnv)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.wantEnv)
			}
		})
	}
}

func TestConfigDefaultsAndRetentionFor(t *testing.T) {
	t.Parallel()
	c := kafka.Config{Brokers: "a:1", TopicRetention: map[string]time.Duration{"x": time.Hour}}.WithDefaults()
	if c.Partitions != 3 || c.ReplicationFactor != 1 || c.Retention != 30*24*time.Hour || c.Linger != time.Millisecond {
		t.Fatalf("defaults = %+v", c)
	}
	if got := c.RetentionFor("x"); got != time.Hour {
		t.Errorf("RetentionFor(x) = %s, want 1h", got)
	}
	if got := c.RetentionFor("y"); got != 30*24*time.Hour {
		t.Errorf("RetentionFor(y) = %s, want 720h", got)
	}
}

func TestTopicsAndDLQ(t *testing.T) {
	t.Parallel()
	if len(kafka.Topics) != 9 {
		t.Fatalf("len(Topics) = %d, want 9", len(kafka.Topics))
	}
	if got := kafka.DLQTopic("progress-service-group"); got != "progress-service-group.dlq" {
		t.Fatalf("DLQTopic = %q", got)
	}
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", kafka.Permanent(nil), false},
		{"plain", base, false},
		{"marked", kafka.Permanent(base), true},
		{"wrapped mark", fmt.Errorf("ctx: %w", kafka.Permanent(base)), true},
		{"double mark", kafka.Permanent(kafka.Permanent(base)), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := kafka.IsPermanent(tc.err); got != tc.want {
				t.Fatalf("IsPermanent(%v) = %v, want %v", tc.err, got, tc.want)
			}
			if tc.err != nil && tc.want && !errors.Is(tc.err, base) {
				t.Fatalf("%v does not wrap the cause", tc.err)
			}
		})
	}
}

func TestRouter(t *testing.T) {
	t.Parallel()
	var got []string
	r := kafka.NewRouter()
	r.SetLogger(kafkatest.Logger(t))
	kafka.On(r, func(_ context.Context, v *wrapperspb.StringValue, _ *kafka.Message) error {
		got = append(got, v.GetValue())
		if v.GetValue() == "fail" {
			return errors.New("transient")
		}
		return nil
	})
	kafka.On(r, func(_ context.Context, v *wrapperspb.Int64Value, _ *kafka.Message) error { return nil })
	if types := r.Types(); strings.Join(types, ",") != "google.protobuf.Int64Value,google.protobuf.StringValue" {
		t.Fatalf("Types() = %v", types)
	}

	ev := func(text string) *kafka.Message {
		m, err := kafka.NewEvent(kafka.EventSpec{Topic: "t", Source: "s", Payload: wrapperspb.String(text)})
		if err != nil {
			t.Fatal(err)
		}
		return &m
	}
	garbled := ev("x")
	garbled.Value = []byte{0xff, 0xff, 0xff}
	unknown := ev("x")
	unknown.Headers[kafka.HeaderType] = "nobody.Handles"

	tests := []struct {
		name          string
		msg           *kafka.Message
		wantErr       bool
		wantPermanent bool
	}{
		{"decodes and calls", ev("hello"), false, false},
		{"handler error passes through", ev("fail"), true, false},
		{"unknown type is skipped", unknown, false, false},
		{"undecodable known type is permanent", garbled, true, true},
	}
	for _, tc := range tests { // sequential: the handler appends to got
		err := r.Handle(t.Context(), tc.msg)
		if (err != nil) != tc.wantErr || kafka.IsPermanent(err) != tc.wantPermanent {
			t.Errorf("%s: Handle = %v, want err=%v permanent=%v", tc.name, err, tc.wantErr, tc.wantPermanent)
		}
	}
	if strings.Join(got, ",") != "hello,fail" {
		t.Errorf("handler saw %v, want [hello fail]", got)
	}

	defer func() {
		if recover() == nil {
			t.Error("registering a type twice did not panic")
		}
	}()
	kafka.On(r, func(context.Context, *wrapperspb.StringValue, *kafka.Message) error { return nil })
}

func TestTraceInjectExtract(t *testing.T) {
	t.Parallel()
	ctx, span := otel.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	m := kafka.Message{}
	kafka.InjectTrace(ctx, &m)
	if m.Headers[kafka.HeaderTraceparent] == "" {
		t.Fatalf("no traceparent injected: %v", m.Headers)
	}
	got := kafka.ExtractTrace(context.Background(), &m)
	_, child := otel.Tracer("test").Start(got, "child")
	defer child.End()
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() {
		t.Fatal("extracted context does not continue the trace")
	}
	// No headers: the context is returned unchanged.
	if c := kafka.ExtractTrace(t.Context(), &kafka.Message{}); c != t.Context() {
		t.Fatal("ExtractTrace changed a context without trace headers")
	}
}
