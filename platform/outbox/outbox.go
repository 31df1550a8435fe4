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

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Write stores msgs in the outbox table as part of tx. Nothing is published until
// tx commits; a rolled-back tx leaves no trace. The trace context of ctx is injected
// into each stored message's headers (W3C traceparent/tracestate) so the consumer's
// span joins the producer's trace; the caller's Message values are not modified.
// Rows are published in the order written. Write does not block beyond the inserts.
func Write(ctx context.Context, tx *db.Tx, msgs ...kafka.Message) error {
	at := db.Now()
	for i := range msgs {
		m := &msgs[i]
		if m.Topic == "" {
			return fmt.Errorf("outbox: message %d (%s) has no topic", i, m.ID())
		}
		value := m.Value
		if value == nil {
			value = []byte{} // an empty protobuf encodes to nothing; the column is NOT NULL
		}
		stored := *m
		stored.Headers = make(map[string]string, len(m.Headers)+2)
		maps.Copy(stored.Headers, m.Headers)
		kafka.InjectTrace(ctx, &stored)
		h, err := json.Marshal(stored.Headers)
		if err != nil {
			return fmt.Errorf("outbox: encode headers of %s: %w", m.ID(), err)
		}
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO outbox (topic, msg_key, value, headers, created_at, attempts) VALUES (?, ?, ?, ?, ?, 0)",
			m.Topic, m.Key, value, string(h), at); err != nil {
			return fmt.Errorf("outbox: insert %s: %w", m.ID(), err)
		}
	}
	return nil
}
