package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// newTracer returns a tracer provider of the test's own, recording into exp.
func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// storedHeaders returns the headers of every outbox row, by ce_id.
func storedHeaders(t *testing.T, d *db.DB) map[string]map[string]string {
	t.Helper()
	rs, err := d.QueryContext(context.Background(), "SELECT headers FROM outbox")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]map[string]string{}
	for rs.Next() {
		var raw string
		if err := rs.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var h map[string]string
		if err := json.Unmarshal([]byte(raw), &h); err != nil {
			t.Fatal(err)
		}
		out[h[kafka.HeaderID]] = h
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func attrOf(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
}

// TestWriteStartsCreateSpanPerMessage: with a span in ctx, each message gets a
// PRODUCER "create <topic>" span, a child of that span, and the stored
// traceparent names the create span (so the consumers' spans are its
// children). With no span in ctx there is no span and no traceparent.
func TestWriteStartsCreateSpanPerMessage(t *testing.T) {
	t.Parallel()
	useTraceContext()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		tp, exp := newTracer(t)
		ctx, rpc := tp.Tracer("test").Start(context.Background(), "CompleteLesson")
		in := []kafka.Message{msg("u1", "a"), msg("u2", "b")}
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			return outbox.Write(ctx, tx, in...)
		}); err != nil {
			t.Fatal(err)
		}
		rpc.End()
		write(t, d, msg("u3", "background")) // no span in ctx

		creates := map[string]tracetest.SpanStub{} // by ce_id
		for _, s := range exp.GetSpans() {
			if s.Name != "CompleteLesson" {
				creates[attrOf(s.Attributes, "messaging.message.id")] = s
			}
		}
		if len(creates) != 2 {
			t.Fatalf("%d spans besides the caller's, want one create span per message written under it: %v", len(creates), exp.GetSpans())
		}
		stored := storedHeaders(t, d)
		for _, m := range in {
			s, ok := creates[m.ID()]
			if !ok {
				t.Fatalf("no create span for %s", m.ID())
			}
			if s.Name != "create test-events" || s.SpanKind != trace.SpanKindProducer {
				t.Errorf("span %q [%s], want %q [producer]", s.Name, s.SpanKind, "create test-events")
			}
			if s.Parent.SpanID() != rpc.SpanContext().SpanID() || s.SpanContext.TraceID() != rpc.SpanContext().TraceID() {
				t.Errorf("%s: parent %s, want the caller's span %s", s.Name, s.Parent.SpanID(), rpc.SpanContext().SpanID())
			}
			want := map[attribute.Key]string{
				"messaging.system":            "kafka",
				"messaging.operation.type":    "create",
				"messaging.operation.name":    "create",
				"messaging.destination.name":  "test-events",
				"messaging.kafka.message.key": string(m.Key),
				"messaging.message.id":        m.ID(),
				"cloudevents.event_type":      "test.v1.Thing",
			}
			for k, v := range want {
				if got := attrOf(s.Attributes, k); got != v {
					t.Errorf("%s of %s = %q, want %q", k, m.ID(), got, v)
				}
			}
			if s.Status.Code != codes.Unset {
				t.Errorf("%s: status %v", m.ID(), s.Status)
			}
			if got, want := stored[m.ID()][kafka.HeaderTraceparent], traceparent(s.SpanContext); got != want {
				t.Errorf("stored traceparent of %s = %q, want the create span's %q", m.ID(), got, want)
			}
			if _, ok := m.Headers[kafka.HeaderTraceparent]; ok {
				t.Error("Write modified the caller's headers")
			}
		}
		if h := stored["id-background"]; h == nil || h[kafka.HeaderTraceparent] != "" {
			t.Errorf("row written without a span: headers %v, want no traceparent", h)
		}
	})
}

// TestWriteCreateSpanRecordsFailedInsert: the create span covers the insert, and
// an insert that fails leaves it with an error status.
func TestWriteCreateSpanRecordsFailedInsert(t *testing.T) {
	t.Parallel()
	useTraceContext()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		tp, exp := newTracer(t)
		ctx, rpc := tp.Tracer("test").Start(context.Background(), "CompleteLesson")
		defer rpc.End()
		_ = d.InTx(context.Background(), func(_ context.Context, tx *db.Tx) error {
			cancelled, cancel := context.WithCancel(ctx)
			cancel() // the insert fails at once; the transaction itself is not cancelled
			if err := outbox.Write(cancelled, tx, msg("u1", "a")); !errors.Is(err, context.Canceled) {
				t.Errorf("Write = %v, want context.Canceled", err)
			}
			return errors.New("abort")
		})
		spans := exp.GetSpans()
		if len(spans) != 1 || spans[0].Name != "create test-events" {
			t.Fatalf("spans %v, want one create span", spans)
		}
		if s := spans[0]; s.Status.Code != codes.Error || attrOf(s.Attributes, "error.type") == "" {
			t.Errorf("create span of a failed insert: status %v, error.type %q", s.Status, attrOf(s.Attributes, "error.type"))
		}
	})
}

// spanSpy is a Publisher that delivers everything and records whether the
// context it was called with carried a span.
type spanSpy struct {
	mu      sync.Mutex
	sawSpan bool
	fail    map[string]error // by ce_id
}

func (p *spanSpy) Publish(ctx context.Context, msgs []kafka.Message) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if trace.SpanContextFromContext(ctx).IsValid() {
		p.sawSpan = true
	}
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		errs[i] = p.fail[m.ID()]
	}
	return errs
}

// TestRelaySendSpanLinksCreationContexts: a publish round records one CLIENT
// "send <topic>" span linked (not parented) to the create span of each row
// written under a span, with the batch size; rows are published with the
// headers they were stored with and no span reaches the publisher. A round
// with undelivered rows ends its span with an error.
func TestRelaySendSpanLinksCreationContexts(t *testing.T) {
	t.Parallel()
	useTraceContext()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		tp, exp := newTracer(t)
		ctx, rpc := tp.Tracer("test").Start(context.Background(), "CompleteLesson")
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			return outbox.Write(ctx, tx, msg("u1", "a"), msg("u2", "b"))
		}); err != nil {
			t.Fatal(err)
		}
		rpc.End()
		write(t, d, msg("u3", "c")) // no creation context
		var created []trace.SpanContext
		for _, s := range exp.GetSpans() {
			if s.Name == "create test-events" {
				created = append(created, s.SpanContext)
			}
		}
		if len(created) != 2 {
			t.Fatalf("%d create spans, want 2", len(created))
		}
		exp.Reset()

		pub := &spanSpy{}
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{TracerProvider: tp}, dbtest.Logger(t))
		// Drained under a span of its caller (e.g. a shutdown step): the send span
		// is still a root, and the publisher still sees no span.
		dctx, caller := tp.Tracer("test").Start(context.Background(), "shutdown")
		defer caller.End()
		if err := r.Drain(dctx); err != nil {
			t.Fatal(err)
		}
		spans := exp.GetSpans()
		if len(spans) != 1 {
			t.Fatalf("spans %v, want one send span", spans)
		}
		s := spans[0]
		if s.Name != "send test-events" || s.SpanKind != trace.SpanKindClient || s.Parent.IsValid() {
			t.Errorf("span %q [%s] parent %s, want a root %q [client]", s.Name, s.SpanKind, s.Parent.SpanID(), "send test-events")
		}
		for k, v := range map[attribute.Key]string{
			"messaging.system": "kafka", "messaging.operation.type": "send", "messaging.operation.name": "send",
			"messaging.destination.name": "test-events", "messaging.batch.message_count": "3",
		} {
			if got := attrOf(s.Attributes, k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		linked := map[string]bool{}
		for _, l := range s.Links {
			linked[traceparent(l.SpanContext)] = true
		}
		if len(s.Links) != 2 || !linked[traceparent(created[0])] || !linked[traceparent(created[1])] {
			t.Errorf("links %v, want the two create spans %v", s.Links, created)
		}
		if s.Status.Code != codes.Unset {
			t.Errorf("status %v after a round that delivered everything", s.Status)
		}
		if pub.sawSpan {
			t.Error("the publisher was handed a span: it could give rows a creation context of its own")
		}

		// A round with an undelivered row: an error span.
		exp.Reset()
		write(t, d, msg("u4", "d"))
		pub.fail = map[string]error{"id-d": errors.New("broker down")}
		if err := r.Drain(context.Background()); err == nil {
			t.Fatal("Drain delivered a failing row")
		}
		if spans := exp.GetSpans(); len(spans) != 1 || spans[0].Status.Code != codes.Error {
			t.Errorf("spans of a failed round %v, want one with an error status", spans)
		}
	})
}
