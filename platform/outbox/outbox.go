// Package outbox implements the transactional outbox: a service writes the events a
// change emits into its own database, in the same transaction as the change
// ([Write]), and a [Relay] publishes committed rows to Kafka afterwards. An event
// therefore reaches Kafka if and only if its transaction committed — at least once,
// in per-key order; consumers dedupe by ce_id (see platform/inbox).
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Write stores msgs in the outbox table as part of tx. Nothing is published until
// tx commits; a rolled-back tx leaves no trace. Rows are published in the order
// written. Write does not block beyond the inserts; the caller's Message values
// are not modified.
//
// Tracing: when ctx carries a span (the RPC or the consumer that emits the
// events), each message gets its own PRODUCER span "create <topic>", a child of
// that span covering the insert, whose context is stored with the message (W3C
// traceparent/tracestate headers, see [kafka.StartCreate]): the consumers' spans
// become children of it, and the relay's send span links to it. With no span in
// ctx (a background job) no span is started and the row is stored with whatever
// the propagator finds in ctx, as before: no root span per event.
func Write(ctx context.Context, tx *db.Tx, msgs ...kafka.Message) error {
	if len(msgs) > 0 {
		tx.Signal(commitSignal) // the commit wakes the relays of tx's database
	}
	at := db.Now()
	for i := range msgs {
		m := &msgs[i]
		if m.Topic == "" {
			return fmt.Errorf("outbox: message %d (%s) has no topic", i, m.ID())
		}
		if err := insert(ctx, tx, m, at); err != nil {
			return err
		}
	}
	return nil
}

// insert stores one message, under its create span.
func insert(ctx context.Context, tx *db.Tx, m *kafka.Message, at time.Time) (err error) {
	value := m.Value
	if value == nil {
		value = []byte{} // an empty protobuf encodes to nothing; the column is NOT NULL
	}
	stored := *m
	stored.Headers = make(map[string]string, len(m.Headers)+2)
	maps.Copy(stored.Headers, m.Headers)
	span := kafka.StartCreate(ctx, &stored)
	defer func() { kafka.EndSpan(span, err) }()
	h, err := json.Marshal(stored.Headers)
	if err != nil {
		return fmt.Errorf("outbox: encode headers of %s: %w", m.ID(), err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO outbox (topic, msg_key, value, headers, created_at, attempts) VALUES (?, ?, ?, ?, ?, 0)",
		m.Topic, m.Key, value, string(h), at); err != nil {
		return fmt.Errorf("outbox: insert %s: %w", m.ID(), err)
	}
	return nil
}
