package outbox_test

// Integration tests of the outbox against the real embedded broker
// (platform/broker) and the real confluent producer, on every database engine of
// dbtest.Dialects(). What reaches the topic is read back with a raw confluent
// consumer that assigns every partition from the beginning, so nothing in
// platform/kafka's consumer path can hide a duplicate or a reordering.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"testing/fstest"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// brokerSchema is the business table the tests change together with the outbox.
var brokerSchema = fstest.MapFS{"migrations/00001_lessons.sql": {Data: []byte(`-- +goose Up
CREATE TABLE lessons (id TEXT PRIMARY KEY, title TEXT NOT NULL);
`)}}

// forEachEngine runs fn once per database engine, one after another, each with a
// fresh migrated database and its own embedded broker.
func forEachEngine(t *testing.T, fn func(t *testing.T, d *db.DB, cfg kafka.Config)) {
	t.Helper()
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			fn(t, dbtest.Open(t, dialect, brokerSchema), kafkatest.Start(t))
		})
	}
}

// startRelay runs r.Run in the background; stop cancels it and waits for Run to
// return (also done when the test ends).
func startRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	return kafkatest.Go(t, "relay", r.Run)
}

// commitEvents writes msgs to the outbox in one committed transaction.
func commitEvents(t *testing.T, d *db.DB, msgs ...kafka.Message) {
	t.Helper()
	if err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
		return outbox.Write(ctx, tx, msgs...)
	}); err != nil {
		t.Fatalf("commit events: %v", err)
	}
}

func backlog(t *testing.T, d *db.DB) int {
	t.Helper()
	n, _, err := outbox.Backlog(context.Background(), d)
	if err != nil {
		t.Fatalf("Backlog: %v", err)
	}
	return n
}

// useTraceContext installs the W3C propagator that outbox.Write injects with.
// Every test of this package that sets it sets the same value.
func useTraceContext() { otel.SetTextMapPropagator(propagation.TraceContext{}) }

// 1. A committed event reaches the topic through a running relay — woken by the
// commit, not by polling — with every CloudEvents header intact and the
// traceparent of its create span, a child of the span that wrote it; the
// business row commits with it.
func TestBrokerRelayPublishesAfterCommit(t *testing.T) {
	t.Parallel()
	useTraceContext()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic = "lesson-events"
		kafkatest.EnsureTopics(t, cfg, topic)
		prod := kafkatest.NewProducer(t, cfg)
		// An hour-long poll: only the after-commit wake-up can get the event out in time.
		r := outbox.NewRelay(d, prod, outbox.RelayConfig{PollInterval: time.Hour}, kafkatest.Logger(t))
		startRelay(t, r)

		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)) // local: no global tracer provider is touched
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		ctx, span := tp.Tracer("outbox-broker-test").Start(context.Background(), "CompleteLesson")
		sc := span.SpanContext()

		ev := kafkatest.Event(t, topic, "user-1", "lesson completed")
		plain := kafkatest.Event(t, topic, "user-2", "no span")
		reader := kafkatest.NewReader(t, cfg, topic)
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO lessons (id, title) VALUES (?, ?)", "l1", "Greetings"); err != nil {
				return err
			}
			if err := outbox.Write(ctx, tx, ev); err != nil {
				return err
			}
			r.Wake() // a relay round now cannot see the uncommitted row
			reader.PollFor(300 * time.Millisecond)
			if n := len(reader.Messages()); n != 0 {
				t.Errorf("%d records on the topic before commit", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		span.End()
		commitEvents(t, d, plain) // written with no span in ctx

		recs := reader.WaitFor("both events", kafkatest.HasID(ev.ID(), plain.ID()))
		kafkatest.WaitFor(t, "outbox rows marked sent", func() bool { return backlog(t, d) == 0 })

		var got, gotPlain kafka.Message
		for _, rec := range recs {
			switch rec.ID() {
			case ev.ID():
				got = rec
			case plain.ID():
				gotPlain = rec
			}
		}
		if string(got.Key) != "user-1" || kafkatest.Text(t, got) != "lesson completed" {
			t.Errorf("record key/value = %q/%q", string(got.Key), kafkatest.Text(t, got))
		}
		for _, h := range []string{kafka.HeaderSpecVersion, kafka.HeaderID, kafka.HeaderType, kafka.HeaderSource,
			kafka.HeaderTime, kafka.HeaderSubject, kafka.HeaderContentType} {
			if ev.Headers[h] == "" || got.Headers[h] != ev.Headers[h] {
				t.Errorf("header %s = %q, want %q", h, got.Headers[h], ev.Headers[h])
			}
		}
		if got.Headers[kafka.HeaderType] != "google.protobuf.StringValue" {
			t.Errorf("ce_type = %q", got.Headers[kafka.HeaderType])
		}
		var create trace.SpanContext
		for _, s := range exp.GetSpans() {
			if s.Name == "create "+topic && s.Parent.SpanID() == sc.SpanID() {
				create = s.SpanContext
			}
		}
		if !create.IsValid() || create.TraceID() != sc.TraceID() {
			t.Fatalf("no create span below the writer's span: %v", exp.GetSpans())
		}
		wantTP := fmt.Sprintf("00-%s-%s-01", create.TraceID(), create.SpanID())
		if got.Headers[kafka.HeaderTraceparent] != wantTP {
			t.Errorf("traceparent = %q, want %q", got.Headers[kafka.HeaderTraceparent], wantTP)
		}
		if len(got.Headers) != len(ev.Headers)+1 {
			t.Errorf("headers = %v, want the event's %d headers plus traceparent", got.Headers, len(ev.Headers))
		}
		if tp, ok := gotPlain.Headers[kafka.HeaderTraceparent]; ok {
			t.Errorf("event written without a span carries traceparent %q", tp)
		}
		if _, ok := ev.Headers[kafka.HeaderTraceparent]; ok {
			t.Error("outbox.Write modified the caller's headers")
		}
		var title string
		if err := d.QueryRowContext(context.Background(), "SELECT title FROM lessons WHERE id = ?", "l1").Scan(&title); err != nil || title != "Greetings" {
			t.Errorf("business row: %q, %v", title, err)
		}
		if all := reader.ReadToEnd(); len(all) != 2 {
			t.Errorf("topic holds %d records, want 2", len(all))
		}
	})
}

// 2. An event written in a transaction that rolls back is never published: a
// marker committed afterwards on the same key (same partition, later in the
// outbox) arrives, and it is the only record on the topic.
func TestBrokerRolledBackEventIsNeverPublished(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic = "lesson-events"
		kafkatest.EnsureTopics(t, cfg, topic)
		r := outbox.NewRelay(d, kafkatest.NewProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, kafkatest.Logger(t))
		startRelay(t, r)

		ghost := kafkatest.Event(t, topic, "user-1", "rolled back")
		errAbort := errors.New("abort")
		err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO lessons (id, title) VALUES (?, ?)", "l1", "Ghost"); err != nil {
				return err
			}
			if err := outbox.Write(ctx, tx, ghost); err != nil {
				return err
			}
			r.Wake()
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("InTx = %v, want the callback's error", err)
		}
		r.Wake()
		marker := kafkatest.Event(t, topic, "user-1", "marker")
		commitEvents(t, d, marker)

		reader := kafkatest.NewReader(t, cfg, topic)
		reader.WaitFor("the marker", kafkatest.HasID(marker.ID()))
		kafkatest.WaitFor(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.ReadToEnd()
		if len(all) != 1 || all[0].ID() != marker.ID() {
			for _, rec := range all {
				t.Errorf("on topic: %s (%s)", rec.ID(), kafkatest.Text(t, rec))
			}
			t.Fatalf("topic holds %d records, want only the marker", len(all))
		}
		var n int
		if err := d.QueryRowContext(context.Background(), "SELECT count(*) FROM lessons").Scan(&n); err != nil || n != 0 {
			t.Errorf("lessons rows after rollback = %d (%v), want 0", n, err)
		}
		if err := d.QueryRowContext(context.Background(), "SELECT count(*) FROM outbox").Scan(&n); err != nil || n != 1 {
			t.Errorf("outbox rows = %d (%v), want 1 (the marker)", n, err)
		}
	})
}

// 3. Rows committed while no relay runs (a crash between commit and publish) are
// published by the next relay, each exactly once, and later restarts and drains
// add no duplicates.
func TestBrokerCrashBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic = "lesson-events"
		kafkatest.EnsureTopics(t, cfg, topic)
		var want []kafka.Message
		for tx := range 5 {
			var msgs []kafka.Message
			for i := range 4 {
				msgs = append(msgs, kafkatest.Event(t, topic, "user-"+strconv.Itoa(i%3), fmt.Sprintf("tx%d-%d", tx, i)))
			}
			commitEvents(t, d, msgs...)
			want = append(want, msgs...)
		}
		if n := backlog(t, d); n != len(want) {
			t.Fatalf("backlog = %d, want %d", n, len(want))
		}
		reader := kafkatest.NewReader(t, cfg, topic)
		if n := len(reader.ReadToEnd()); n != 0 {
			t.Fatalf("%d records published with no relay running", n)
		}

		// The process restarts: a new producer and relay find the committed rows.
		stop := startRelay(t, outbox.NewRelay(d, kafkatest.NewProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, kafkatest.Logger(t)))
		kafkatest.WaitFor(t, "the backlog published", func() bool { return backlog(t, d) == 0 })
		stop()

		// More restarts: drains (twice) on a fresh relay and producer, then another Run.
		p2 := kafkatest.NewProducer(t, cfg)
		r2 := outbox.NewRelay(d, p2, outbox.RelayConfig{}, kafkatest.Logger(t))
		for i := range 2 {
			if err := r2.Drain(context.Background()); err != nil {
				t.Fatalf("Drain %d: %v", i+1, err)
			}
		}
		startRelay(t, outbox.NewRelay(d, kafkatest.NewProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, kafkatest.Logger(t)))
		marker := kafkatest.Event(t, topic, "user-0", "marker")
		commitEvents(t, d, marker)
		reader.WaitFor("the marker", kafkatest.HasID(marker.ID()))
		kafkatest.WaitFor(t, "empty backlog", func() bool { return backlog(t, d) == 0 })

		count := map[string]int{}
		for _, rec := range reader.ReadToEnd() {
			count[rec.ID()]++
		}
		for _, m := range append(want, marker) {
			if count[m.ID()] != 1 {
				t.Errorf("event %s published %d times, want 1", m.ID(), count[m.ID()])
			}
			delete(count, m.ID())
		}
		for id, n := range count {
			t.Errorf("unexpected event %s on the topic (%d times)", id, n)
		}
		var unsent int
		if err := d.QueryRowContext(context.Background(), "SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&unsent); err != nil || unsent != 0 {
			t.Errorf("unsent outbox rows = %d (%v), want 0", unsent, err)
		}
	})
}

// 4. 200 events over 10 keys, written in many transactions while the relay runs
// with small batches, arrive on the topic in per-key order, each exactly once.
func TestBrokerPerKeyOrder(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const (
			topic   = "lesson-events"
			keys    = 10
			perKey  = 20
			perTx   = 8
			total   = keys * perKey
			keyName = "user-%02d"
		)
		kafkatest.EnsureTopics(t, cfg, topic)
		startRelay(t, outbox.NewRelay(d, kafkatest.NewProducer(t, cfg),
			outbox.RelayConfig{BatchSize: 16, PollInterval: 50 * time.Millisecond}, kafkatest.Logger(t)))

		var batch []kafka.Message
		for i := range total {
			key := fmt.Sprintf(keyName, (i*7)%keys) // interleave keys within and across transactions
			seq := i / keys
			batch = append(batch, kafkatest.Event(t, topic, key, fmt.Sprintf("%s/%03d", key, seq)))
			if len(batch) == perTx || i == total-1 {
				commitEvents(t, d, batch...)
				batch = nil
			}
		}
		reader := kafkatest.NewReader(t, cfg, topic)
		reader.WaitFor("200 records", func(recs []kafka.Message) bool { return len(recs) >= total })
		kafkatest.WaitFor(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.ReadToEnd()
		if len(all) != total {
			t.Fatalf("topic holds %d records, want %d", len(all), total)
		}
		next := map[string]int{}
		partOf := map[string]int32{}
		for _, rec := range all {
			key, text := string(rec.Key), kafkatest.Text(t, rec)
			want := fmt.Sprintf("%s/%03d", key, next[key])
			if text != want {
				t.Errorf("key %s: got %s, want %s", key, text, want)
			}
			next[key]++
			if p, ok := partOf[key]; ok && p != rec.Partition {
				t.Errorf("key %s on partitions %d and %d", key, p, rec.Partition)
			}
			partOf[key] = rec.Partition
		}
		if len(next) != keys {
			t.Errorf("saw %d keys, want %d", len(next), keys)
		}
		for k, n := range next {
			if n != perKey {
				t.Errorf("key %s: %d records, want %d", k, n, perKey)
			}
		}
	})
}

// TestBrokerPoisonRowIsParked: with the real producer, an event larger than
// message.max.bytes never overtakes nor blocks: the rows of its key wait behind it
// until it is parked, other keys go out at once, and nothing is duplicated.
func TestBrokerPoisonRowIsParked(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic = "lesson-events"
		kafkatest.EnsureTopics(t, cfg, topic)
		poison := kafkatest.Event(t, topic, "user-1", "poison")
		poison.Value = make([]byte, 2<<20) // > message.max.bytes (1 MB)
		after := kafkatest.Event(t, topic, "user-1", "after")
		other := kafkatest.Event(t, topic, "user-2", "other")
		commitEvents(t, d, poison, after, other)
		r := outbox.NewRelay(d, kafkatest.NewProducer(t, cfg), outbox.RelayConfig{
			PollInterval: 50 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxAttempts: 3,
		}, kafkatest.Logger(t))
		reader := kafkatest.NewReader(t, cfg, topic)
		startRelay(t, r)
		reader.WaitFor("the other key", kafkatest.HasID(other.ID()))
		kafkatest.WaitFor(t, "the poison row parked", func() bool {
			n, err := r.Parked(context.Background())
			return err == nil && n == 1
		})
		reader.WaitFor("the row behind the poison one", kafkatest.HasID(after.ID()))
		kafkatest.WaitFor(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.ReadToEnd()
		if len(all) != 2 {
			t.Fatalf("topic holds %d records, want 2 (other, after)", len(all))
		}
		for _, rec := range all {
			if rec.ID() == poison.ID() {
				t.Error("the poison row was published")
			}
		}
	})
}
