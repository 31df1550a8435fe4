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
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// brokerWait bounds every wait of these tests: generous, for a loaded 2-core
// machine under -race. Conditions are polled, never assumed after a fixed sleep.
const brokerWait = 60 * time.Second

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
			fn(t, dbtest.Open(t, dialect, brokerSchema), startEmbeddedBroker(t))
		})
	}
}

func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startEmbeddedBroker runs platform/broker on a free port with a temporary data
// directory and returns a client config for it.
func startEmbeddedBroker(t *testing.T) kafka.Config {
	t.Helper()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: t.TempDir()}, quietLogger(t))
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(b.Close)
	return kafka.Config{Brokers: b.Addrs(), ClientID: "outbox-broker-test"}
}

func ensureTopic(t *testing.T, cfg kafka.Config, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), brokerWait)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cfg, topic); err != nil {
		t.Fatalf("EnsureTopics(%s): %v", topic, err)
	}
}

// newProducer returns a real idempotent producer, closed when the test ends (or
// earlier by the caller: Close is idempotent).
func newProducer(t *testing.T, cfg kafka.Config) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(cfg, quietLogger(t))
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), brokerWait)
		defer cancel()
		if err := p.Close(ctx); err != nil {
			t.Errorf("close producer: %v", err)
		}
	})
	return p
}

// startRelay runs r.Run in the background; stop cancels it and waits for Run to
// return (also done when the test ends).
func startRelay(t *testing.T, r *outbox.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay Run: %v", err)
			}
		case <-time.After(brokerWait):
			t.Errorf("relay Run did not return within %s", brokerWait)
		}
	})
	t.Cleanup(stop)
	return stop
}

func newLessonEvent(t *testing.T, topic, key, text string) kafka.Message {
	t.Helper()
	m, err := kafka.NewEvent(kafka.EventSpec{
		Topic: topic, Key: key, Source: "lesson", Subject: key, Payload: wrapperspb.String(text),
	})
	if err != nil {
		t.Fatalf("NewEvent: %v", err)
	}
	return m
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

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(brokerWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", brokerWait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// record is one record read back from a topic.
type record struct {
	partition int32
	offset    int64
	key       string
	value     []byte
	headers   map[string]string
}

func (r record) id() string { return r.headers[kafka.HeaderID] }

func (r record) text(t *testing.T) string {
	t.Helper()
	var v wrapperspb.StringValue
	if err := proto.Unmarshal(r.value, &v); err != nil {
		t.Fatalf("record %d@%d: decode StringValue: %v", r.partition, r.offset, err)
	}
	return v.GetValue()
}

// topicReader reads a topic with a raw confluent consumer that is assigned every
// partition from the beginning (no group membership, no commits).
type topicReader struct {
	t     *testing.T
	c     *ck.Consumer
	topic string
	parts []int32
	next  map[int32]int64 // offset after the last record read, per partition
	recs  []record
}

func newTopicReader(t *testing.T, cfg kafka.Config, topic string) *topicReader {
	t.Helper()
	c, err := ck.NewConsumer(&ck.ConfigMap{
		"bootstrap.servers":    cfg.Brokers,
		"group.id":             "reader-" + topic, // required by librdkafka; never joined
		"enable.auto.commit":   false,
		"enable.partition.eof": false,
		"auto.offset.reset":    "earliest",
	})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	md, err := c.GetMetadata(&topic, false, int(brokerWait.Milliseconds()))
	if err != nil {
		t.Fatalf("reader: metadata of %s: %v", topic, err)
	}
	r := &topicReader{t: t, c: c, topic: topic, next: map[int32]int64{}}
	var tps []ck.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		r.parts = append(r.parts, p.ID)
		tps = append(tps, ck.TopicPartition{Topic: &topic, Partition: p.ID, Offset: ck.OffsetBeginning})
	}
	if len(tps) == 0 {
		t.Fatalf("reader: topic %s has no partitions", topic)
	}
	if err := c.Assign(tps); err != nil {
		t.Fatalf("reader: assign: %v", err)
	}
	return r
}

// poll reads what arrives within about 100ms.
func (r *topicReader) poll() {
	r.t.Helper()
	switch e := r.c.Poll(100).(type) {
	case *ck.Message:
		if e.TopicPartition.Error != nil {
			r.t.Logf("reader: %v", e.TopicPartition.Error)
			return
		}
		rec := record{
			partition: e.TopicPartition.Partition,
			offset:    int64(e.TopicPartition.Offset),
			key:       string(e.Key),
			value:     e.Value,
			headers:   map[string]string{},
		}
		for _, h := range e.Headers {
			if _, dup := rec.headers[h.Key]; dup {
				r.t.Errorf("record %d@%d repeats header %s", rec.partition, rec.offset, h.Key)
			}
			rec.headers[h.Key] = string(h.Value)
		}
		r.recs = append(r.recs, rec)
		r.next[rec.partition] = rec.offset + 1
	case ck.Error:
		r.t.Logf("reader: %v", e)
	}
}

// pollFor reads whatever arrives during d.
func (r *topicReader) pollFor(d time.Duration) {
	r.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		r.poll()
	}
}

// waitFor reads until cond holds for the records read so far.
func (r *topicReader) waitFor(what string, cond func([]record) bool) []record {
	r.t.Helper()
	deadline := time.Now().Add(brokerWait)
	for !cond(r.recs) {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting for %s on %s (read %d records)", brokerWait, what, r.topic, len(r.recs))
		}
		r.poll()
	}
	return r.recs
}

// readToEnd reads until every partition is consumed up to the high watermark it
// has now, and returns every record read: the complete content of the topic at
// the time of the call.
func (r *topicReader) readToEnd() []record {
	r.t.Helper()
	high := map[int32]int64{}
	for _, p := range r.parts {
		_, h, err := r.c.QueryWatermarkOffsets(r.topic, p, int(brokerWait.Milliseconds()))
		if err != nil {
			r.t.Fatalf("reader: watermarks of %s[%d]: %v", r.topic, p, err)
		}
		high[p] = h
	}
	return r.waitFor("the end of the topic", func([]record) bool {
		for p, h := range high {
			if r.next[p] < h {
				return false
			}
		}
		return true
	})
}

func hasID(id string) func([]record) bool {
	return func(recs []record) bool {
		for _, r := range recs {
			if r.id() == id {
				return true
			}
		}
		return false
	}
}

// useTraceContext installs the W3C propagator that outbox.Write injects with.
// Every test of this package that sets it sets the same value.
func useTraceContext() { otel.SetTextMapPropagator(propagation.TraceContext{}) }

// 1. A committed event reaches the topic through a running relay — woken by the
// commit, not by polling — with every CloudEvents header intact and the
// traceparent of the span that wrote it; the business row commits with it.
func TestBrokerRelayPublishesAfterCommit(t *testing.T) {
	t.Parallel()
	useTraceContext()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic = "lesson-events"
		ensureTopic(t, cfg, topic)
		prod := newProducer(t, cfg)
		// An hour-long poll: only the after-commit wake-up can get the event out in time.
		r := outbox.NewRelay(d, prod, outbox.RelayConfig{PollInterval: time.Hour}, quietLogger(t))
		startRelay(t, r)

		tp := sdktrace.NewTracerProvider() // local: no global tracer provider is touched
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		ctx, span := tp.Tracer("outbox-broker-test").Start(context.Background(), "CompleteLesson")
		sc := span.SpanContext()

		ev := newLessonEvent(t, topic, "user-1", "lesson completed")
		plain := newLessonEvent(t, topic, "user-2", "no span")
		reader := newTopicReader(t, cfg, topic)
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO lessons (id, title) VALUES (?, ?)", "l1", "Greetings"); err != nil {
				return err
			}
			if err := outbox.Write(ctx, tx, ev); err != nil {
				return err
			}
			r.Wake() // a relay round now cannot see the uncommitted row
			reader.pollFor(300 * time.Millisecond)
			if n := len(reader.recs); n != 0 {
				t.Errorf("%d records on the topic before commit", n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		span.End()
		commitEvents(t, d, plain) // written with no span in ctx

		recs := reader.waitFor("both events", func(recs []record) bool { return hasID(ev.ID())(recs) && hasID(plain.ID())(recs) })
		waitUntil(t, "outbox rows marked sent", func() bool { return backlog(t, d) == 0 })

		var got, gotPlain record
		for _, rec := range recs {
			switch rec.id() {
			case ev.ID():
				got = rec
			case plain.ID():
				gotPlain = rec
			}
		}
		if got.key != "user-1" || got.text(t) != "lesson completed" {
			t.Errorf("record key/value = %q/%q", got.key, got.text(t))
		}
		for _, h := range []string{kafka.HeaderSpecVersion, kafka.HeaderID, kafka.HeaderType, kafka.HeaderSource,
			kafka.HeaderTime, kafka.HeaderSubject, kafka.HeaderContentType} {
			if ev.Headers[h] == "" || got.headers[h] != ev.Headers[h] {
				t.Errorf("header %s = %q, want %q", h, got.headers[h], ev.Headers[h])
			}
		}
		if got.headers[kafka.HeaderType] != "google.protobuf.StringValue" {
			t.Errorf("ce_type = %q", got.headers[kafka.HeaderType])
		}
		wantTP := fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
		if got.headers[kafka.HeaderTraceparent] != wantTP {
			t.Errorf("traceparent = %q, want %q", got.headers[kafka.HeaderTraceparent], wantTP)
		}
		if len(got.headers) != len(ev.Headers)+1 {
			t.Errorf("headers = %v, want the event's %d headers plus traceparent", got.headers, len(ev.Headers))
		}
		if tp, ok := gotPlain.headers[kafka.HeaderTraceparent]; ok {
			t.Errorf("event written without a span carries traceparent %q", tp)
		}
		if _, ok := ev.Headers[kafka.HeaderTraceparent]; ok {
			t.Error("outbox.Write modified the caller's headers")
		}
		var title string
		if err := d.QueryRowContext(context.Background(), "SELECT title FROM lessons WHERE id = ?", "l1").Scan(&title); err != nil || title != "Greetings" {
			t.Errorf("business row: %q, %v", title, err)
		}
		if all := reader.readToEnd(); len(all) != 2 {
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
		ensureTopic(t, cfg, topic)
		r := outbox.NewRelay(d, newProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, quietLogger(t))
		startRelay(t, r)

		ghost := newLessonEvent(t, topic, "user-1", "rolled back")
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
		marker := newLessonEvent(t, topic, "user-1", "marker")
		commitEvents(t, d, marker)

		reader := newTopicReader(t, cfg, topic)
		reader.waitFor("the marker", hasID(marker.ID()))
		waitUntil(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.readToEnd()
		if len(all) != 1 || all[0].id() != marker.ID() {
			for _, rec := range all {
				t.Errorf("on topic: %s (%s)", rec.id(), rec.text(t))
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
		ensureTopic(t, cfg, topic)
		var want []kafka.Message
		for tx := range 5 {
			var msgs []kafka.Message
			for i := range 4 {
				msgs = append(msgs, newLessonEvent(t, topic, "user-"+strconv.Itoa(i%3), fmt.Sprintf("tx%d-%d", tx, i)))
			}
			commitEvents(t, d, msgs...)
			want = append(want, msgs...)
		}
		if n := backlog(t, d); n != len(want) {
			t.Fatalf("backlog = %d, want %d", n, len(want))
		}
		reader := newTopicReader(t, cfg, topic)
		if n := len(reader.readToEnd()); n != 0 {
			t.Fatalf("%d records published with no relay running", n)
		}

		// The process restarts: a new producer and relay find the committed rows.
		stop := startRelay(t, outbox.NewRelay(d, newProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, quietLogger(t)))
		waitUntil(t, "the backlog published", func() bool { return backlog(t, d) == 0 })
		stop()

		// More restarts: drains (twice) on a fresh relay and producer, then another Run.
		p2 := newProducer(t, cfg)
		r2 := outbox.NewRelay(d, p2, outbox.RelayConfig{}, quietLogger(t))
		for i := range 2 {
			if err := r2.Drain(context.Background()); err != nil {
				t.Fatalf("Drain %d: %v", i+1, err)
			}
		}
		startRelay(t, outbox.NewRelay(d, newProducer(t, cfg), outbox.RelayConfig{PollInterval: 50 * time.Millisecond}, quietLogger(t)))
		marker := newLessonEvent(t, topic, "user-0", "marker")
		commitEvents(t, d, marker)
		reader.waitFor("the marker", hasID(marker.ID()))
		waitUntil(t, "empty backlog", func() bool { return backlog(t, d) == 0 })

		count := map[string]int{}
		for _, rec := range reader.readToEnd() {
			count[rec.id()]++
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
		ensureTopic(t, cfg, topic)
		startRelay(t, outbox.NewRelay(d, newProducer(t, cfg),
			outbox.RelayConfig{BatchSize: 16, PollInterval: 50 * time.Millisecond}, quietLogger(t)))

		var batch []kafka.Message
		for i := range total {
			key := fmt.Sprintf(keyName, (i*7)%keys) // interleave keys within and across transactions
			seq := i / keys
			batch = append(batch, newLessonEvent(t, topic, key, fmt.Sprintf("%s/%03d", key, seq)))
			if len(batch) == perTx || i == total-1 {
				commitEvents(t, d, batch...)
				batch = nil
			}
		}
		reader := newTopicReader(t, cfg, topic)
		reader.waitFor("200 records", func(recs []record) bool { return len(recs) >= total })
		waitUntil(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.readToEnd()
		if len(all) != total {
			t.Fatalf("topic holds %d records, want %d", len(all), total)
		}
		next := map[string]int{}
		partOf := map[string]int32{}
		for _, rec := range all {
			text := rec.text(t)
			want := fmt.Sprintf("%s/%03d", rec.key, next[rec.key])
			if text != want {
				t.Errorf("key %s: got %s, want %s", rec.key, text, want)
			}
			next[rec.key]++
			if p, ok := partOf[rec.key]; ok && p != rec.partition {
				t.Errorf("key %s on partitions %d and %d", rec.key, p, rec.partition)
			}
			partOf[rec.key] = rec.partition
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
		ensureTopic(t, cfg, topic)
		poison := newLessonEvent(t, topic, "user-1", "poison")
		poison.Value = make([]byte, 2<<20) // > message.max.bytes (1 MB)
		after := newLessonEvent(t, topic, "user-1", "after")
		other := newLessonEvent(t, topic, "user-2", "other")
		commitEvents(t, d, poison, after, other)
		r := outbox.NewRelay(d, newProducer(t, cfg), outbox.RelayConfig{
			PollInterval: 50 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxAttempts: 3,
		}, quietLogger(t))
		reader := newTopicReader(t, cfg, topic)
		startRelay(t, r)
		reader.waitFor("the other key", hasID(other.ID()))
		waitUntil(t, "the poison row parked", func() bool {
			n, err := r.Parked(context.Background())
			return err == nil && n == 1
		})
		reader.waitFor("the row behind the poison one", hasID(after.ID()))
		waitUntil(t, "empty backlog", func() bool { return backlog(t, d) == 0 })
		all := reader.readToEnd()
		if len(all) != 2 {
			t.Fatalf("topic holds %d records, want 2 (other, after)", len(all))
		}
		for _, rec := range all {
			if rec.id() == poison.ID() {
				t.Error("the poison row was published")
			}
		}
	})
}
