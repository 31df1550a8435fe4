package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// logs is a slog.Handler that keeps every record (and forwards to the test log).
type logs struct {
	mu   sync.Mutex
	recs []slog.Record
	next slog.Handler
}

func newLogs(t *testing.T) (*logs, *slog.Logger) {
	l := &logs{next: dbtest.Logger(t).Handler()}
	return l, slog.New(l)
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r.Clone())
	l.mu.Unlock()
	if l.next.Enabled(ctx, r.Level) {
		return l.next.Handle(ctx, r)
	}
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l } // attrs are not inspected
func (l *logs) WithGroup(string) slog.Handler      { return l }

// count returns how many records at level have a message containing s.
func (l *logs) count(level slog.Level, s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level && strings.Contains(r.Message, s) {
			n++
		}
	}
	return n
}

func id(t *testing.T, d *db.DB, value string) int64 {
	t.Helper()
	var id int64
	if err := d.QueryRowContext(context.Background(), "SELECT id FROM outbox WHERE value = ?", []byte(value)).Scan(&id); err != nil {
		t.Fatalf("id of %s: %v", value, err)
	}
	return id
}

// TestRelayHoldsBackKeyBehindFailedRow: when a row fails, later rows of its key in
// the batch are not marked sent, even if the publisher delivered them (a failure
// known only from a delivery report), and rows it skipped (kafka.ErrSkipped) count
// no attempt. Other keys go on.
func TestRelayHoldsBackKeyBehindFailedRow(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		ctx := context.Background()
		pub := &recorder{fail: func(call, _ int, m kafka.Message) error {
			switch {
			case call > 1:
				return nil
			case string(m.Value) == "a":
				return errors.New("delivery failed")
			case string(m.Value) == "e":
				return kafka.ErrSkipped
			}
			return nil // "c" is delivered although "a" of its key failed
		}}
		write(t, d, msg("u1", "a"), msg("u2", "b"), msg("u1", "c"), msg("u2", "d"), msg("u1", "e"))
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{}, dbtest.Logger(t))
		if err := r.Drain(ctx); err == nil {
			t.Fatal("Drain succeeded although a row failed")
		}
		if n := rows(t, d, "sent_at IS NOT NULL"); n != 2 {
			t.Errorf("sent rows = %d, want 2 (b, d)", n)
		}
		if n := rows(t, d, "sent_at IS NULL AND attempts = 1 AND last_error = 'delivery failed'"); n != 1 {
			t.Errorf("failed rows = %d, want 1 (a)", n)
		}
		if n := rows(t, d, "sent_at IS NULL AND attempts = 0 AND last_error IS NULL"); n != 2 {
			t.Errorf("held-back rows without an attempt = %d, want 2 (c, e)", n)
		}
		if err := r.Drain(ctx); err != nil {
			t.Fatalf("second Drain: %v", err)
		}
		// The consumer sees c, a, c, e: it drops the second c by ce_id, and the last
		// copy of every u1 event comes after a's.
		if got, want := pub.values(), []string{"b", "c", "d", "a", "c", "e"}; !equal(got, want) {
			t.Errorf("delivered %v, want %v", got, want)
		}
		if n := rows(t, d, "sent_at IS NULL"); n != 0 {
			t.Errorf("%d rows unsent", n)
		}
	})
}

var errTooLarge = kafka.Permanent(errors.New("message too large"))

// TestRelayParksPoisonRow: a row failing permanently is parked after MaxAttempts,
// releasing its key, logged at ERROR, counted by Parked and not by Backlog, and
// re-driven by Retry. Other keys are not held up meanwhile.
func TestRelayParksPoisonRow(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		ctx := context.Background()
		var fixed atomic.Bool
		pub := &recorder{stopKey: true, fail: func(_, _ int, m kafka.Message) error {
			if string(m.Value) == "poison" && !fixed.Load() {
				return errTooLarge
			}
			return nil
		}}
		l, log := newLogs(t)
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: 5 * time.Millisecond, Backoff: time.Millisecond, MaxAttempts: 3}, log)
		write(t, d, msg("u1", "poison"), msg("u1", "after"), msg("u2", "other"))
		run(t, r)
		eventually(t, "the key released", func() bool { return rows(t, d, "sent_at IS NOT NULL") == 2 })
		if got := pub.values(); !equal(got, []string{"other", "after"}) {
			t.Errorf("delivered %v, want [other after]", got)
		}
		if n := rows(t, d, "parked_at IS NOT NULL AND sent_at IS NULL AND attempts = 3"); n != 1 {
			t.Errorf("parked rows with 3 attempts = %d, want 1", n)
		}
		if n, err := r.Parked(ctx); err != nil || n != 1 {
			t.Errorf("Parked = %d, %v; want 1", n, err)
		}
		if n, _, err := r.Backlog(ctx); err != nil || n != 0 {
			t.Errorf("Backlog = %d, %v; want 0 (parked rows excluded)", n, err)
		}
		if n := l.count(slog.LevelError, "parked"); n != 1 {
			t.Errorf("%d ERROR logs about parking, want 1", n)
		}
		parked, err := outbox.ListParked(ctx, d, 10)
		if err != nil || len(parked) != 1 {
			t.Fatalf("ListParked = %v, %v", parked, err)
		}
		if p := parked[0]; p.ID != id(t, d, "poison") || p.Topic != "test-events" || string(p.Key) != "u1" ||
			p.Attempts != 3 || p.LastError != errTooLarge.Error() || p.ParkedAt.IsZero() || p.CreatedAt.IsZero() {
			t.Errorf("parked row = %+v", p)
		}

		fixed.Store(true)
		if n, err := outbox.Retry(ctx, d, parked[0].ID, 987654); err != nil || n != 1 {
			t.Fatalf("Retry = %d, %v; want 1", n, err)
		}
		eventually(t, "the re-driven row sent", func() bool { return rows(t, d, "sent_at IS NULL") == 0 })
		if got := pub.values(); !equal(got, []string{"other", "after", "poison"}) {
			t.Errorf("delivered %v", got)
		}
		if n, err := outbox.Parked(ctx, d); err != nil || n != 0 {
			t.Errorf("Parked after Retry = %d, %v", n, err)
		}
	})
}

// TestRelayNeverParksOnTransientErrors: an outage must not park the outbox.
func TestRelayNeverParksOnTransientErrors(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &recorder{fail: func(int, int, kafka.Message) error { return errors.New("broker down") }}
		write(t, d, msg("u1", "a"))
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{MaxAttempts: 2}, dbtest.Logger(t))
		for range 4 {
			if err := r.Drain(context.Background()); err == nil {
				t.Fatal("Drain succeeded")
			}
		}
		if n := rows(t, d, "parked_at IS NULL AND attempts = 4"); n != 1 {
			t.Errorf("unparked row with 4 attempts = %d, want 1", n)
		}
	})
}

// TestRelayBackoffResetsWhenRowsAreDelivered: a row that keeps failing must not
// slow down the other events: a round that delivers something resets the backoff.
func TestRelayBackoffResetsWhenRowsAreDelivered(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &recorder{fail: func(_, _ int, m kafka.Message) error {
			if string(m.Value) == "stuck" {
				return errors.New("not leader for partition") // transient: never parked
			}
			return nil
		}}
		run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour, Backoff: time.Millisecond, MaxBackoff: time.Hour}, dbtest.Logger(t)))
		write(t, d, msg("u1", "stuck"))
		// Without the reset the backoff doubles every round: 1ms, 2ms, ... 2^14ms
		// (16s) before the 15th row could go out.
		start := time.Now()
		for i := range 15 {
			write(t, d, msg("u2", strconv.Itoa(i)))
			eventually(t, "row "+strconv.Itoa(i), func() bool { return rows(t, d, "sent_at IS NOT NULL") == i+1 })
		}
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("15 events took %s behind a failing row", took)
		}
	})
}

// gated is a Publisher that blocks each call until released (or ctx ends, like the
// real producer), then delivers through its recorder.
type gated struct {
	recorder
	entered chan struct{}
	release chan struct{}
}

func (g *gated) Publish(ctx context.Context, msgs []kafka.Message) []error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return g.recorder.Publish(ctx, msgs)
	case <-ctx.Done():
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return errs
	}
}

// TestRunFinishesRoundInProgressOnStop: cancelling Run while a batch is being
// published lets the round finish, so the delivered rows are marked sent and a
// later Drain does not publish them again; the wait is bounded by StopTimeout.
func TestRunFinishesRoundInProgressOnStop(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		write(t, d, msg("u1", "a"), msg("u2", "b"))
		pub := &gated{entered: make(chan struct{}, 1), release: make(chan struct{})}
		r := outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour, StopTimeout: time.Minute}, dbtest.Logger(t))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		<-pub.entered
		cancel()
		select {
		case <-done:
			t.Fatal("Run returned with a round in progress")
		case <-time.After(50 * time.Millisecond):
		}
		close(pub.release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if n := rows(t, d, "sent_at IS NOT NULL"); n != 2 {
			t.Errorf("sent rows = %d, want 2", n)
		}
		again := &recorder{}
		if err := outbox.NewRelay(d, again, outbox.RelayConfig{}, dbtest.Logger(t)).Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(again.values()) != 0 {
			t.Errorf("Drain republished %v", again.values())
		}

		// A round that cannot finish is abandoned after StopTimeout.
		write(t, d, msg("u1", "c"))
		stuck := &gated{entered: make(chan struct{}, 1), release: make(chan struct{})}
		r = outbox.NewRelay(d, stuck, outbox.RelayConfig{PollInterval: time.Hour, StopTimeout: 20 * time.Millisecond}, dbtest.Logger(t))
		ctx, cancel = context.WithCancel(context.Background())
		go func() { done <- r.Run(ctx) }()
		<-stuck.entered
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after StopTimeout")
		}
		if n := rows(t, d, "sent_at IS NULL"); n != 1 {
			t.Errorf("unsent rows = %d, want 1", n)
		}
	})
}

// failing is a Publisher with an Err method: while err is set, it fails everything.
type failing struct {
	recorder
	err atomic.Pointer[error]
}

func (f *failing) Err() error {
	if e := f.err.Load(); e != nil {
		return *e
	}
	return nil
}

// TestRelayLogsPublisherFailureOnce: a fatal publisher state is logged at ERROR
// once, not once per round, and its end once.
func TestRelayLogsPublisherFailureOnce(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		pub := &failing{}
		pub.fail = func(int, int, kafka.Message) error { return pub.Err() }
		fatal := errors.New("fatal: out of order sequence number")
		pub.err.Store(&fatal)
		l, log := newLogs(t)
		run(t, outbox.NewRelay(d, pub, outbox.RelayConfig{PollInterval: time.Hour, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, log))
		write(t, d, msg("u1", "a"))
		eventually(t, "several failed rounds", func() bool {
			pub.mu.Lock()
			defer pub.mu.Unlock()
			return pub.calls >= 5
		})
		if n := l.count(slog.LevelError, "publisher failed"); n != 1 {
			t.Errorf("%d ERROR logs about the publisher, want 1", n)
		}
		pub.err.Store(nil)
		eventually(t, "delivery after recovery", func() bool { return rows(t, d, "sent_at IS NOT NULL") == 1 })
		eventually(t, "recovery logged", func() bool { return l.count(slog.LevelInfo, "publisher healthy again") == 1 })
		if n := l.count(slog.LevelError, "publisher failed"); n != 1 {
			t.Errorf("%d ERROR logs about the publisher, want 1", n)
		}
	})
}
