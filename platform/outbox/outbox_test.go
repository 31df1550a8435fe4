package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// recorder is an in-memory Publisher. fail, when set, decides per message whether
// this call fails it; delivered messages are appended in publish order. With
// stopKey it behaves like kafka.Producer on a local failure: the later messages of
// a failed message's key in the call are not attempted and get kafka.ErrSkipped.
type recorder struct {
	mu        sync.Mutex
	delivered []kafka.Message
	calls     int
	fail      func(call, i int, m kafka.Message) error
	stopKey   bool
}

func (r *recorder) Publish(_ context.Context, msgs []kafka.Message) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	errs := make([]error, len(msgs))
	failed := map[string]bool{}
	for i, m := range msgs {
		if r.stopKey && failed[m.Topic+"/"+string(m.Key)] {
			errs[i] = kafka.ErrSkipped
			continue
		}
		if r.fail != nil {
			if errs[i] = r.fail(r.calls, i, m); errs[i] != nil {
				failed[m.Topic+"/"+string(m.Key)] = true
				continue
			}
		}
		r.delivered = append(r.delivered, m)
	}
	return errs
}

func (r *recorder) values() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.delivered))
	for i, m := range r.delivered {
		out[i] = string(m.Value)
	}
	return out
}

func msg(key, value string) kafka.Message {
	return kafka.Message{
		Topic:     "test-events",
		Partition: -1,
		Key:       []byte(key),
		Value:     []byte(value),
		Headers:   map[string]string{kafka.HeaderID: "id-" + value, kafka.HeaderType: "test.v1.Thing"},
	}
}

func write(t *testing.T, d *db.DB, msgs ...kafka.Message) {
	t.Helper()
	if err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
		return outbox.Write(ctx, tx, msgs...)
	}); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func rows(t *testing.T, d *db.DB, where string) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), "SELECT count(*) FROM outbox WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts r.Run and stops it (waiting for it) when the test ends.
func run(t *testing.T, r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestWriteInRolledBackTxLeavesNothing(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		errAbort := errors.New("abort")
		err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
			if err := outbox.Write(ctx, tx, msg("u1", "a"), msg("u1", "b")); err != nil {
				return err
			}
			return errAbort
		})
		if !errors.Is(err, errAbort) {
			t.Fatalf("InTx = %v", err)
		}
		if n := rows(t, d, "1=1"); n != 0 {
			t.Fatalf("outbox has %d rows after rollback", n)
		}
		pub := &recorder{}
		if err := outbox.NewRelay(d, pub, outbox.RelayConfig{}, dbtest.Logger(t)).Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if pub.calls != 0 || len(pub.delivered) != 0 {
			t.Fatalf("published %d messages in %d calls after rollback", len(pub.delivered), pub.calls)
		}
	})
}

func TestRelayPublishesAfterCommitOnly(t *testing.T) {
	t.Parallel()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &recorder{}
		// An hour-long poll: only the after-commit wake-up can make it publish.
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour}, dbtest.Logger(t))
		run(t, r)

		sc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
			TraceFlags: trace.FlagsSampled,
		})
		ctx := trace.ContextWithSpanContext(context.Background(), sc)
		in := msg("u1", "a")
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			if err := outbox.Write(ctx, tx, in, msg("u2", "b"), msg("u1", "c")); err != nil {
				return err
			}
			if len(pub.values()) != 0 {
				t.Error("published before commit")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "3 messages published", func() bool { return len(pub.values()) == 3 })
		if got := pub.values(); !equal(got, []string{"a", "b", "c"}) {
			t.Errorf("published %v, want [a b c]", got)
		}
		if _, ok := in.Headers[kafka.HeaderTraceparent]; ok {
			t.Error("Write modified the caller's headers")
		}
		got := pub.delivered[0]
		if want := "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01"; got.Headers[kafka.HeaderTraceparent] != want {
			t.Errorf("traceparent = %q, want %q", got.Headers[kafka.HeaderTraceparent], want)
		}
		if got.Topic != "test-events" || string(got.Key) != "u1" || got.ID() != "id-a" || got.Partition != -1 || got.Timestamp.IsZero() {
			t.Errorf("published message = %+v", got)
		}
		eventually(t, "rows marked sent", func() bool { return rows(t, d, "sent_at IS NOT NULL") == 3 })

		// A rolled-back write is never published, even when the relay is woken.
		_ = d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
			if err := outbox.Write(ctx, tx, msg("u1", "rolled-back")); err != nil {
				return err
			}
			return errors.New("abort")
		})
		r.Wake()
		write(t, d, msg("u3", "d")) // a later commit, to know the relay has looked again
		eventually(t, "4 messages published", func() bool { return len(pub.values()) == 4 })
		if got := pub.values(); !equal(got, []string{"a", "b", "c", "d"}) {
			t.Errorf("published %v, want [a b c d]", got)
		}
	})
}

func TestRelayRetriesFailedMessagesInOrder(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		ctx := context.Background()
		// Like an idempotent producer losing a partition mid-batch: the first call
		// delivers a prefix and fails the rest.
		pub := &recorder{fail: func(call, i int, _ kafka.Message) error {
			if call == 1 && i >= 2 {
				return errors.New("broker unavailable")
			}
			return nil
		}}
		var msgs []kafka.Message
		for i := range 5 {
			msgs = append(msgs, msg("u1", strconv.Itoa(i)))
		}
		write(t, d, msgs...)
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{Backoff: time.Millisecond}, dbtest.Logger(t))
		if err := r.Drain(ctx); err == nil {
			t.Fatal("Drain succeeded although 3 messages failed")
		}
		if n := rows(t, d, "sent_at IS NOT NULL"); n != 2 {
			t.Errorf("sent rows = %d, want 2", n)
		}
		if n := rows(t, d, "sent_at IS NULL AND attempts = 1 AND last_error = 'broker unavailable'"); n != 3 {
			t.Errorf("failed rows with attempts=1 and last_error = %d, want 3", n)
		}
		if n, _, err := r.Backlog(ctx); err != nil || n != 3 {
			t.Errorf("Backlog = %d, %v; want 3", n, err)
		}
		write(t, d, msg("u1", "5")) // newer than the failed ones
		if err := r.Drain(ctx); err != nil {
			t.Fatalf("second Drain: %v", err)
		}
		if got, want := pub.values(), []string{"0", "1", "2", "3", "4", "5"}; !equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		if n := rows(t, d, "sent_at IS NULL"); n != 0 {
			t.Errorf("%d rows unsent after drain", n)
		}
	})
}

func TestRelayRunBacksOffAndRetries(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &recorder{fail: func(call, _ int, _ kafka.Message) error {
			if call <= 3 {
				return errors.New("down")
			}
			return nil
		}}
		run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour, Backoff: time.Millisecond}, dbtest.Logger(t)))
		write(t, d, msg("u1", "a"), msg("u1", "b"))
		eventually(t, "delivery after retries", func() bool { return len(pub.values()) == 2 })
		if got := pub.values(); !equal(got, []string{"a", "b"}) {
			t.Errorf("delivered %v", got)
		}
		eventually(t, "rows marked sent", func() bool { return rows(t, d, "sent_at IS NOT NULL AND attempts = 4") == 2 })
	})
}

// TestCrashBetweenCommitAndPublish: events committed while no relay runs are
// published exactly once by a relay started later, and not again by the next one.
func TestCrashBetweenCommitAndPublish(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		write(t, d, msg("u1", "a"), msg("u2", "b"))
		write(t, d, msg("u1", "c"))
		if n, age, err := outbox.Backlog(context.Background(), d); err != nil || n != 3 || age < 0 || age > time.Minute {
			t.Fatalf("Backlog = %d, %v, %v", n, age, err)
		}

		pub := &recorder{}
		cfg := outbox.RelayConfig{PollInterval: 10 * time.Millisecond}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- outbox.NewRelay(d, pub, cfg, dbtest.Logger(t)).Run(ctx) }()
		eventually(t, "backlog published", func() bool { return len(pub.values()) == 3 })
		time.Sleep(50 * time.Millisecond) // several more polls
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		// The next incarnation finds nothing to send.
		r2 := outbox.NewRelay(d, pub, cfg, dbtest.Logger(t))
		run(t, r2)
		time.Sleep(50 * time.Millisecond)
		if err := r2.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := pub.values(); !equal(got, []string{"a", "b", "c"}) {
			t.Errorf("delivered %v, want [a b c] exactly once", got)
		}
		if n, _, err := outbox.Backlog(context.Background(), d); err != nil || n != 0 {
			t.Errorf("Backlog after publish = %d, %v", n, err)
		}
	})
}

func TestRelayDeletesSentRowsAfterRetention(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &recorder{}
		run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{
			PollInterval: 5 * time.Millisecond, Retention: time.Millisecond, CleanupInterval: time.Millisecond,
		}, dbtest.Logger(t)))
		write(t, d, msg("u1", "a"))
		eventually(t, "sent row deleted", func() bool { return len(pub.values()) == 1 && rows(t, d, "1=1") == 0 })
	})
}

func TestRelayBatches(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		var msgs []kafka.Message
		var want []string
		for i := range 23 {
			msgs = append(msgs, msg("u"+strconv.Itoa(i%3), strconv.Itoa(i)))
			want = append(want, strconv.Itoa(i))
		}
		write(t, d, msgs...)
		pub := &recorder{}
		if err := outbox.NewRelay(d, pub, outbox.RelayConfig{BatchSize: 5}, dbtest.Logger(t)).Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := pub.values(); !equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		if pub.calls != 5 {
			t.Errorf("publish calls = %d, want 5 (batches of 5)", pub.calls)
		}
	})
}

// TestRelaysShareOneDatabase: several relays on one PostgreSQL schema (replicas)
// publish every message once and in per-key order: only the lock holder publishes.
func TestRelaysShareOneDatabase(t *testing.T) {
	t.Parallel()
	if !hasPostgres() {
		t.Skip("PostgreSQL only (" + dbtest.PostgresURLEnv + " unset); SQLite is single-process")
	}
	d := dbtest.Open(t, db.DialectPostgres, nil)
	pub := &recorder{}
	for range 3 {
		run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: 5 * time.Millisecond, BatchSize: 7}, dbtest.Logger(t)))
	}
	var wg sync.WaitGroup
	const writers, perWriter = 4, 15
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				write(t, d, msg("w"+strconv.Itoa(w), fmt.Sprintf("w%d-%02d", w, i)))
			}
		})
	}
	wg.Wait()
	eventually(t, "all published", func() bool { return len(pub.values()) >= writers*perWriter })
	time.Sleep(50 * time.Millisecond)
	got := pub.values()
	if len(got) != writers*perWriter {
		t.Fatalf("published %d messages, want %d (duplicates?)", len(got), writers*perWriter)
	}
	last := map[byte]string{}
	for _, v := range got {
		w := v[1]
		if v <= last[w] {
			t.Errorf("key w%c out of order: %s after %s", w, v, last[w])
		}
		last[w] = v
	}
}

func hasPostgres() bool {
	for _, d := range dbtest.Dialects() {
		if d == db.DialectPostgres {
			return true
		}
	}
	return false
}

// The real producer is a Publisher.
var _ outbox.Publisher = (*kafka.Producer)(nil)

// TestIdleRelayDoesNotWakeItself: the relay's own commits (the advisory-lock
// transaction of every PostgreSQL round) must not wake it — or another relay on
// the same database — for another round, or an idle relay loops on empty
// transactions (thousands a second before the fix). Only commits that wrote
// outbox rows wake it, at once.
func TestIdleRelayDoesNotWakeItself(t *testing.T) {
	t.Parallel()
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			d := dbtest.Open(t, dialect, nil)
			var commits atomic.Int64
			d.AfterCommit(func() { commits.Add(1) })
			pub := &recorder{}
			// A long poll: only wake-ups can start rounds within the test. On
			// PostgreSQL two relays share the database (replicas): neither may
			// wake the other either.
			relays := 1
			if dialect == db.DialectPostgres {
				relays = 2
			}
			for range relays {
				run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour}, dbtest.Logger(t)))
			}
			write(t, d, msg("k", "first"))
			eventually(t, "first published", func() bool { return len(pub.values()) == 1 })
			eventually(t, "first marked sent", func() bool {
				n, _, err := outbox.Backlog(context.Background(), d)
				return err == nil && n == 0
			})
			time.Sleep(50 * time.Millisecond) // the marking round's hooks have run
			before := commits.Load()
			time.Sleep(500 * time.Millisecond)
			if n := commits.Load() - before; n > 5 {
				t.Fatalf("an idle relay committed %d transactions in 500ms: it wakes itself", n)
			}
			// A commit that wrote no outbox rows does not wake the relays (on
			// PostgreSQL a woken round would commit its lock transaction).
			before = commits.Load()
			if err := d.InTx(context.Background(), func(context.Context, *db.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if n := commits.Load() - before; n != 1 {
				t.Fatalf("after one unrelated commit: %d commits, want 1 (a relay woke up)", n)
			}
			// Not deaf: the next business commit is published without a poll.
			write(t, d, msg("k", "second"))
			eventually(t, "second published", func() bool { return len(pub.values()) == 2 })
		})
	}
}
