// Package idempotency makes retried writes safe: a request that carries an
// Idempotency-Key runs its effect once per (scope, user, key); a retry with the same
// key gets the stored response instead of a second effect. The gateway forwards the
// HTTP header "Idempotency-Key" as gRPC metadata "idempotency-key" ([Key] reads it);
// a request field carrying a key works the same way.
package idempotency

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
)

// MetadataKey is the gRPC metadata name the gateway fills from the HTTP header.
const MetadataKey = "idempotency-key"

// MaxKeyLen bounds client keys.
const MaxKeyLen = 128

// Key returns the idempotency key of an incoming call ("" when none).
func Key(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(MetadataKey); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// RequestKey returns the idempotency key a request carries in its own field
// (fromRequest) when set, else the one of the call's metadata ([Key]): the
// field wins over the Idempotency-Key header.
func RequestKey(ctx context.Context, fromRequest string) string {
	if fromRequest != "" {
		return fromRequest
	}
	return Key(ctx)
}

// Do runs fn in a transaction and stores its response under (scope, userID, key)
// in the same transaction. If a response is already stored, Do returns it (decoded
// into a fresh T from newT) without calling fn. An empty key runs fn in a plain
// transaction and stores nothing. Two concurrent calls with one key produce one
// effect: the loser of the race gets the winner's response.
func Do[T proto.Message](ctx context.Context, d *db.DB, scope, userID, key string, newT func() T,
	fn func(ctx context.Context, tx *db.Tx) (T, error)) (T, error) {
	var zero T
	if len(key) > MaxKeyLen {
		return zero, apperr.Invalid("idempotency_key", "IDEMPOTENCY_KEY_TOO_LONG", fmt.Sprintf("Idempotency-Key must be at most %d characters", MaxKeyLen))
	}
	for attempt := 0; ; attempt++ {
		var out T
		err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			if key != "" {
				var stored []byte
				err := tx.QueryRowContext(ctx, `SELECT response FROM idempotency_keys WHERE scope = ? AND user_id = ? AND idem_key = ?`,
					scope, userID, key).Scan(&stored)
				if err == nil {
					out = newT()
					return proto.Unmarshal(stored, out)
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("idempotency: lookup: %w", err)
				}
			}
			res, err := fn(ctx, tx)
			if err != nil || key == "" {
				out = res
				return err
			}
			b, err := proto.Marshal(res)
			if err != nil {
				return fmt.Errorf("idempotency: encode response: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (scope, user_id, idem_key, response, created_at) VALUES (?,?,?,?,?)`,
				scope, userID, key, b, db.Now()); err != nil {
				return err
			}
			out = res
			return nil
		})
		if db.IsUniqueViolation(err) && attempt == 0 {
			continue // a concurrent call with the same key won: read its response
		}
		if err != nil {
			return zero, err
		}
		return out, nil
	}
}

// Cleanup deletes stored responses older than retention; the host runs it
// periodically. It returns how many rows it removed.
func Cleanup(ctx context.Context, d *db.DB, retention time.Duration) (int64, error) {
	res, err := d.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE created_at < ?`, db.Now().Add(-retention))
	if err != nil {
		return 0, fmt.Errorf("idempotency: cleanup: %w", err)
	}
	return res.RowsAffected()
}
