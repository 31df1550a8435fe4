// Package inbox makes Kafka consumers idempotent: a handler's effect and the record
// that its event was processed (the event's ce_id in processed_events, per consumer
// group) are committed in one database transaction, so a redelivered event has no
// second effect. Together with platform/outbox this gives one effect per event.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// DefaultRetention is how long processed event ids are remembered by [Cleanup]
// callers that have no better figure: longer than Kafka's 30-day topic retention, so
// any event that can still be redelivered is still recognised.
const DefaultRetention = 35 * 24 * time.Hour

// ErrNoEventID is returned for a message without a ce_id header, wrapped and marked
// [kafka.Permanent]: it cannot be deduplicated and retrying will not help, so the
// consumer dead-letters it.
var ErrNoEventID = errors.New("inbox: message has no ce_id")

// Handler returns a message handler that runs fn at most once per event id for
// group. In one [db.DB.InTx] it records (group, ce_id) in processed_events; if the
// id was already recorded it returns nil without calling fn; otherwise it calls fn
// with the transaction, which commits only if fn returns nil — an error rolls back
// both fn's writes and the record, so the event can be retried. The consumer must
// commit the Kafka offset only after the handler returns nil.
//
// Concurrent deliveries of one event (e.g. across a rebalance) are safe: on
// PostgreSQL the second insert waits for the first transaction and then finds the
// id; on SQLite transactions are serialised. A message without ce_id yields a
// [kafka.Permanent] error wrapping [ErrNoEventID]. fn must do all its work through the [db.Tx] it is given;
// events it emits go through outbox.Write on that tx.
func Handler(d *db.DB, group string, fn func(ctx context.Context, tx *db.Tx, m *kafka.Message) error) kafka.Handler {
	return func(ctx context.Context, m *kafka.Message) error {
		return process(ctx, d, group, m, func(ctx context.Context, tx *db.Tx) error {
			return fn(ctx, tx, m)
		})
	}
}

// On registers fn on r for events of type T (decoded by the router from the
// message's ce_type) with the same exactly-one-effect guarantee as [Handler]: fn runs
// in a transaction that also records the event id for group, at most once per id.
// Like [kafka.On], it panics if T already has a handler on r; register before the
// consumer starts.
//
//	inbox.On(router, d, "progress-service-group", svc.onLessonCompleted)
func On[T proto.Message](r *kafka.Router, d *db.DB, group string, fn func(ctx context.Context, tx *db.Tx, event T, m *kafka.Message) error) {
	kafka.On(r, func(ctx context.Context, event T, m *kafka.Message) error {
		return process(ctx, d, group, m, func(ctx context.Context, tx *db.Tx) error {
			return fn(ctx, tx, event, m)
		})
	})
}

func process(ctx context.Context, d *db.DB, group string, m *kafka.Message, fn func(ctx context.Context, tx *db.Tx) error) error {
	id := m.ID()
	if id == "" {
		return kafka.Permanent(fmt.Errorf("%w (group %s, %s)", ErrNoEventID, group, m))
	}
	return d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		res, err := tx.ExecContext(ctx,
			"INSERT INTO processed_events (consumer_group, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
			group, id, db.Now())
		if err != nil {
			return fmt.Errorf("inbox: record %s for %s: %w", id, group, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("inbox: record %s for %s: %w", id, group, err)
		}
		if n == 0 {
			return nil // already processed: no second effect
		}
		return fn(ctx, tx)
	})
}

// Processed reports whether group has already processed the event with id.
func Processed(ctx context.Context, d *db.DB, group, id string) (bool, error) {
	var n int
	if err := d.QueryRowContext(ctx,
		"SELECT count(*) FROM processed_events WHERE consumer_group = ? AND event_id = ?", group, id).Scan(&n); err != nil {
		return false, fmt.Errorf("inbox: processed %s: %w", id, err)
	}
	return n > 0, nil
}

// Cleanup forgets event ids processed more than retention ago (all groups) and
// returns how many it deleted. Call it periodically (e.g. hourly) with a retention
// longer than the topics' (see [DefaultRetention]); an event redelivered after its id
// was forgotten would take effect again. Safe to run concurrently with handlers and
// from several replicas.
func Cleanup(ctx context.Context, d *db.DB, retention time.Duration) (int64, error) {
	if retention <= 0 {
		return 0, fmt.Errorf("inbox: cleanup retention must be positive, got %s", retention)
	}
	res, err := d.ExecContext(ctx, "DELETE FROM processed_events WHERE processed_at < ?", db.Now().Add(-retention))
	if err != nil {
		return 0, fmt.Errorf("inbox: cleanup: %w", err)
	}
	return res.RowsAffected()
}
