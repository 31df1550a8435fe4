package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Publisher delivers messages to Kafka. Publish blocks until every message has a
// delivery report and returns one entry per message, in order: nil means delivered
// (acknowledged by the broker), non-nil means not delivered. Messages with the same
// key must be produced in slice order (an idempotent producer does this).
// *kafka.Producer satisfies it.
type Publisher interface {
	Publish(ctx context.Context, msgs []kafka.Message) []error
}

// RelayConfig tunes a [Relay]. Zero fields take the defaults shown.
type RelayConfig struct {
	BatchSize       int           // rows per publish round; default 500
	PollInterval    time.Duration // fallback poll when no wake-up arrives; default 1s
	Backoff         time.Duration // first wait after a failed round; default 500ms
	MaxBackoff      time.Duration // cap of the doubling backoff; default 30s
	Retention       time.Duration // sent rows are kept this long, then deleted; default 1h
	CleanupInterval time.Duration // how often sent rows are deleted; default 1m
}

func (c RelayConfig) withDefaults() RelayConfig {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	def(&c.PollInterval, time.Second)
	def(&c.Backoff, 500*time.Millisecond)
	def(&c.MaxBackoff, 30*time.Second)
	def(&c.Retention, time.Hour)
	def(&c.CleanupInterval, time.Minute)
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = c.Backoff
	}
	return c
}

// Relay publishes committed outbox rows and marks them sent after their delivery
// report. It is woken by every [db.DB.InTx] commit (it registers [Relay.Wake] with
// [db.DB.AfterCommit]) and polls as a fallback, so rows committed while no relay was
// running — a crash between commit and publish — go out when one starts.
//
// Order: rows are fetched oldest first and published as one batch, so the producer
// keeps per-key order; a row that fails stays unsent (attempts+1, last_error) and is
// retried, ahead of newer rows, after a backoff. Delivery is at least once: a crash
// after publishing but before marking republishes the batch, which consumers dedupe
// by ce_id.
//
// One publisher per database: within a process, rounds of [Relay.Run] and
// [Relay.Drain] never overlap. On PostgreSQL each round holds a transaction-scoped
// advisory lock, so of several replicas only one publishes at a time (the others
// skip the round) and a lock held by a dead process is released with its
// connection. On SQLite the database belongs to one process, which must run at most
// one Relay for it.
type Relay struct {
	db   *db.DB
	pub  Publisher
	cfg  RelayConfig
	log  *slog.Logger
	wake chan struct{}

	round sync.Mutex // serialises publish rounds (Run vs Drain)
}

// NewRelay returns a relay for d's outbox publishing through pub, and registers its
// Wake as an after-commit hook of d. It starts nothing; call [Relay.Run].
func NewRelay(d *db.DB, pub Publisher, cfg RelayConfig, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		db:   d,
		pub:  pub,
		cfg:  cfg.withDefaults(),
		log:  log.With("component", "outbox-relay", "service", d.Service()),
		wake: make(chan struct{}, 1),
	}
	d.AfterCommit(r.Wake)
	return r
}

// Wake asks the relay to look for new rows now. It never blocks and is safe from any
// goroutine; wake-ups coalesce.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is done, then returns nil. Rounds repeat immediately while
// full batches come back, wait for a wake-up or the poll interval when the outbox is
// empty, and back off (doubling up to MaxBackoff) after a failed round. Sent rows
// older than Retention are deleted every CleanupInterval. Errors are logged, never
// fatal; a round in progress when ctx ends is abandoned and its rows stay unsent
// unless their delivery was already recorded. Use [Relay.Drain] at shutdown.
func (r *Relay) Run(ctx context.Context) error {
	r.log.InfoContext(ctx, "outbox relay started", "batch", r.cfg.BatchSize, "poll", r.cfg.PollInterval)
	defer r.log.InfoContext(ctx, "outbox relay stopped")
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	var lastCleanup time.Time
	backoff := time.Duration(0)
	for {
		if time.Since(lastCleanup) >= r.cfg.CleanupInterval {
			lastCleanup = time.Now()
			if _, err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox cleanup failed", "err", err)
			}
		}
		res, err := r.publishRound(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil || res.failed > 0:
			backoff = min(max(2*backoff, r.cfg.Backoff), r.cfg.MaxBackoff)
			if err != nil {
				r.log.WarnContext(ctx, "outbox round failed", "err", err, "retry_in", backoff)
			} else {
				r.log.WarnContext(ctx, "outbox publish failed", "failed", res.failed, "sent", res.sent, "retry_in", backoff)
			}
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		if res.fetched == r.cfg.BatchSize {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-poll.C:
		}
	}
}

// Drain publishes every row pending now, round after round, and returns once the
// outbox is empty (nil), a round fails (the error; the rows stay for the next relay),
// or ctx ends. It is meant for shutdown, after consumers and RPCs have stopped and
// before the producer is flushed. It may run concurrently with Run; rounds are
// serialised. On PostgreSQL, if another replica holds the relay lock, Drain returns
// nil and leaves the rows to it.
func (r *Relay) Drain(ctx context.Context) error {
	total := 0
	for {
		res, err := r.publishRound(ctx)
		total += res.sent
		switch {
		case err != nil:
			return fmt.Errorf("outbox: drain: %w", err)
		case res.failed > 0:
			return fmt.Errorf("outbox: drain: %d of %d messages not delivered: %s", res.failed, res.fetched, res.firstErr)
		case res.notLeader || res.fetched < r.cfg.BatchSize:
			r.log.InfoContext(ctx, "outbox drained", "sent", total)
			return nil
		}
	}
}

// Backlog reports how many rows wait to be published and how long the oldest has
// waited (0 when none). It reads without locking and is safe to call any time, e.g.
// from a metrics collector.
func (r *Relay) Backlog(ctx context.Context) (count int, oldest time.Duration, err error) {
	return Backlog(ctx, r.db)
}

// Backlog reports the number of unsent rows in d's outbox and the age of the oldest.
func Backlog(ctx context.Context, d *db.DB) (count int, oldest time.Duration, err error) {
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&count); err != nil {
		return 0, 0, fmt.Errorf("outbox: backlog: %w", err)
	}
	if count == 0 {
		return 0, 0, nil
	}
	var created time.Time
	err = d.QueryRowContext(ctx, "SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1").Scan(&created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, nil // published in between
	case err != nil:
		return 0, 0, fmt.Errorf("outbox: backlog: %w", err)
	}
	return count, max(time.Since(created), 0), nil
}

type roundResult struct {
	fetched, sent, failed int
	firstErr              error
	notLeader             bool
}

type row struct {
	id  int64
	msg kafka.Message
}

// publishRound fetches up to BatchSize unsent rows, publishes them and records the
// outcome. On PostgreSQL the whole round runs in one transaction holding the relay's
// advisory lock; on SQLite it reads, publishes without holding the single writer,
// and records the outcome in a short transaction.
func (r *Relay) publishRound(ctx context.Context) (roundResult, error) {
	r.round.Lock()
	defer r.round.Unlock()
	if r.db.Dialect() == db.DialectPostgres {
		var res published
		errNotLeader := errors.New("not leader")
		err := r.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			var locked bool
			if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock(?)", r.db.LockKey("outbox-relay")).Scan(&locked); err != nil {
				return fmt.Errorf("advisory lock: %w", err)
			}
			if !locked {
				return errNotLeader
			}
			rows, err := fetch(ctx, tx, r.cfg.BatchSize)
			if err != nil {
				return err
			}
			res = r.publish(ctx, rows)
			return record(ctx, tx, rows, res)
		})
		if errors.Is(err, errNotLeader) {
			return roundResult{notLeader: true}, nil
		}
		if err != nil {
			return roundResult{}, err
		}
		return res.roundResult, nil
	}
	rows, err := fetch(ctx, r.db, r.cfg.BatchSize)
	if err != nil || len(rows) == 0 {
		return roundResult{}, err
	}
	res := r.publish(ctx, rows)
	if err := r.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		return record(ctx, tx, rows, res)
	}); err != nil {
		// Delivered rows stay unsent and will be published again: at least once.
		return res.roundResult, err
	}
	return res.roundResult, nil
}

type published struct {
	roundResult
	errs []error
}

func (r *Relay) publish(ctx context.Context, rows []row) published {
	res := published{roundResult: roundResult{fetched: len(rows)}}
	if len(rows) == 0 {
		return res
	}
	msgs := make([]kafka.Message, len(rows))
	for i, rw := range rows {
		msgs[i] = rw.msg
	}
	res.errs = r.pub.Publish(ctx, msgs)
	if len(res.errs) != len(msgs) {
		err := fmt.Errorf("publisher returned %d results for %d messages", len(res.errs), len(msgs))
		res.errs = make([]error, len(msgs))
		for i := range res.errs {
			res.errs[i] = err
		}
	}
	for i, err := range res.errs {
		if err == nil {
			res.sent++
			continue
		}
		res.failed++
		if res.firstErr == nil {
			res.firstErr = err
		}
		r.log.DebugContext(ctx, "outbox message not delivered", "outbox_id", rows[i].id, "msg", rows[i].msg.String(), "err", err)
	}
	return res
}

// fetch reads up to limit unsent rows, oldest first.
func fetch(ctx context.Context, q db.Querier, limit int) ([]row, error) {
	rs, err := q.QueryContext(ctx,
		"SELECT id, topic, msg_key, value, headers, created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	defer rs.Close()
	var rows []row
	for rs.Next() {
		var (
			rw      row
			headers string
		)
		if err := rs.Scan(&rw.id, &rw.msg.Topic, &rw.msg.Key, &rw.msg.Value, &headers, &rw.msg.Timestamp); err != nil {
			return nil, fmt.Errorf("fetch: %w", err)
		}
		if err := json.Unmarshal([]byte(headers), &rw.msg.Headers); err != nil {
			return nil, fmt.Errorf("fetch: headers of outbox row %d: %w", rw.id, err)
		}
		rw.msg.Partition = -1
		rows = append(rows, rw)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	return rows, nil
}

// record marks delivered rows sent and counts an attempt, with its error, on the rest.
func record(ctx context.Context, tx *db.Tx, rows []row, res published) error {
	at := db.Now()
	var sent []any
	for i, rw := range rows {
		if res.errs[i] == nil {
			sent = append(sent, rw.id)
			continue
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
			truncate(res.errs[i].Error(), 1000), rw.id); err != nil {
			return fmt.Errorf("record failure: %w", err)
		}
	}
	if len(sent) == 0 {
		return nil
	}
	q := "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL WHERE id IN (?" +
		strings.Repeat(", ?", len(sent)-1) + ")"
	if _, err := tx.ExecContext(ctx, q, append([]any{at}, sent...)...); err != nil {
		return fmt.Errorf("mark sent: %w", err)
	}
	return nil
}

// cleanup deletes rows sent more than Retention ago.
func (r *Relay) cleanup(ctx context.Context) (int64, error) {
	res, err := r.db.ExecContext(ctx, "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", db.Now().Add(-r.cfg.Retention))
	if err != nil {
		return 0, fmt.Errorf("outbox: cleanup: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		r.log.DebugContext(ctx, "outbox cleanup", "deleted", n)
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// sleep waits for d or ctx, reporting whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
