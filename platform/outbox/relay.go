package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/clock"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Publisher delivers messages to Kafka. Publish blocks until every message has a
// delivery report and returns one entry per message, in order: nil means delivered
// (acknowledged by the broker), non-nil means not delivered. Messages with the same
// topic and key must be produced in slice order (an idempotent producer does this),
// and once one of them fails, the later ones of that topic and key in msgs should
// not be attempted and report [kafka.ErrSkipped]. A publisher that cannot stop them
// (a failure known only from a delivery report) may deliver them: the relay then
// does not count them as sent and publishes them again after the failed one, so
// consumers, which dedupe by ce_id, see the key's events in order once the failed
// one is delivered. An error marked [kafka.Permanent] says the message itself can
// never be delivered (see [RelayConfig].MaxAttempts).
//
// A Publisher that also has an Err() error method (as *kafka.Producer does) reports
// a fatal state with it; the relay logs each change of that state.
// *kafka.Producer satisfies Publisher.
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
	// MaxAttempts parks a row whose publish has failed this many times, the last
	// time with a permanent error ([kafka.IsPermanent]: e.g. larger than
	// message.max.bytes). Default 10. Transient errors (broker down, timeouts, a
	// fatal producer) never park a row, so an outage does not empty the outbox
	// into the parking lot.
	MaxAttempts int
	// StopTimeout bounds how long [Relay.Run] lets a round in progress finish after
	// its ctx ends, so that rows already delivered are marked sent; default 10s.
	StopTimeout time.Duration
	// Metrics, when set, receives the puchi_outbox_* series labelled with the
	// database's service name (see metrics.go); relays of several services may
	// share one registry. nil: no metrics.
	Metrics prometheus.Registerer
	// TracerProvider receives the span of each publish round (see [Relay]).
	// nil: the global provider (otel.GetTracerProvider).
	TracerProvider trace.TracerProvider
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
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	def(&c.StopTimeout, 10*time.Second)
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
// report. It is woken by every [db.DB.InTx] commit that wrote outbox rows ([Write]
// and [Retry] signal their transaction; the relay registers [Relay.Wake] with
// [db.DB.OnSignal]) — not by its own rounds' commits, so an idle relay stays idle
// — and polls as a fallback, so rows committed while no relay was running — a
// crash between commit and publish — go out when one starts.
//
// Order: rows are fetched oldest first and published as one batch, so the producer
// keeps per-key order (key: topic and msg_key); a row that fails stays unsent
// (attempts+1, last_error) and is retried, ahead of newer rows, after a backoff.
// The rows of its key behind it in the batch are not marked sent in that round
// (they are not even attempted by a [Publisher] that honours [kafka.ErrSkipped]),
// so no event overtakes an earlier one of its key. Delivery is at least once: a
// crash after publishing but before marking republishes the batch, which consumers
// dedupe by ce_id.
//
// Poison rows: a row that keeps failing with a permanent error is parked after
// MaxAttempts attempts (parked_at is set, logged at ERROR). A parked row is no
// longer published and no longer holds back its key: later rows of the key go out
// without it, a deliberate break of per-key order for one recorded event, which
// [Retry] re-drives. [Parked] counts them; [Backlog] does not.
//
// One publisher per database: within a process, rounds of [Relay.Run] and
// [Relay.Drain] never overlap. On PostgreSQL each round holds a transaction-scoped
// advisory lock, so of several replicas only one publishes at a time (the others
// skip the round) and a lock held by a dead process is released with its
// connection. On SQLite the database belongs to one process, which must run at most
// one Relay for it.
//
// Tracing: each round that publishes rows records one CLIENT span, "send <topic>"
// ("send" when the batch spans several topics), with messaging.batch.message_count
// and a link to the creation context stored with each row (see [Write]); links
// past the SDK's limit (OTEL_SPAN_LINK_COUNT_LIMIT, default 128) are dropped and
// counted. Its context is not injected into the records and is not handed to the
// [Publisher]: a row is sent with exactly the headers it was stored with, so its
// consumers stay in the trace that wrote it, and rows stored with no trace context
// stay without one.
type Relay struct {
	db     *db.DB
	pub    Publisher
	cfg    RelayConfig
	log    *slog.Logger
	tracer trace.Tracer
	wake   chan struct{}

	round chan struct{} // a one-slot semaphore serialising publish rounds (Run vs Drain)

	pubErr string // the publisher's last reported Err(), as text; Run's goroutine only

	metrics *relayMetrics // nil: no metrics
}

// NewRelay returns a relay for d's outbox publishing through pub, and registers its
// Wake as an after-commit hook of d. It starts nothing; call [Relay.Run].
func NewRelay(d *db.DB, pub Publisher, cfg RelayConfig, log *slog.Logger) *Relay {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	r := &Relay{
		db:     d,
		pub:    pub,
		cfg:    cfg.withDefaults(),
		log:    log.With("component", "outbox-relay", "service", d.Service()),
		tracer: tp.Tracer(TracerName),
		wake:   make(chan struct{}, 1),
		round:  make(chan struct{}, 1),
	}
	if cfg.Metrics != nil {
		m, err := newRelayMetrics(cfg.Metrics)
		if err != nil {
			r.log.Warn("outbox relay: metrics not registered", "err", err)
		} else {
			r.metrics = m
		}
	}
	d.OnSignal(commitSignal, r.Wake)
	return r
}

// commitSignal is the [db.Tx.Signal] of a transaction that wrote outbox rows.
const commitSignal = "outbox"

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
// empty, and back off after a round with failures: doubling up to MaxBackoff while
// rounds deliver nothing, back to Backoff as soon as one delivers a row (so one
// failing row does not slow down every other event). Sent rows older than
// Retention are deleted every CleanupInterval. Errors are logged, never fatal; a
// fatal state of the publisher (its Err method, if it has one) is logged at ERROR
// once per change. A round in progress when ctx ends is finished, for at most
// StopTimeout, so that delivered rows are marked sent; no new round starts. Use
// [Relay.Drain] at shutdown.
func (r *Relay) Run(ctx context.Context) error {
	r.log.InfoContext(ctx, "outbox relay started", "batch", r.cfg.BatchSize, "poll", r.cfg.PollInterval)
	defer r.log.InfoContext(ctx, "outbox relay stopped")
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	var lastCleanup, lastMetrics time.Time
	backoff := time.Duration(0)
	for {
		if time.Since(lastCleanup) >= r.cfg.CleanupInterval {
			lastCleanup = time.Now()
			if _, err := r.cleanup(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox cleanup failed", "err", err)
			}
		}
		res, err := r.runRound(ctx)
		r.checkPublisher(ctx)
		if r.metrics != nil && ctx.Err() == nil && time.Since(lastMetrics) >= MetricsInterval {
			lastMetrics = time.Now()
			r.refreshMetrics(ctx)
		}
		if res.sent > 0 {
			backoff = 0 // the way out works: a failure is the row's, not everyone's
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil || res.failed+res.skipped > 0:
			backoff = min(max(2*backoff, r.cfg.Backoff), r.cfg.MaxBackoff)
			if err != nil {
				r.log.WarnContext(ctx, "outbox round failed", "err", err, "retry_in", backoff)
			} else {
				r.log.WarnContext(ctx, "outbox publish failed", "failed", res.failed, "held_back", res.skipped,
					"parked", res.parked, "sent", res.sent, "err", res.firstErr, "retry_in", backoff)
			}
			if !clock.Sleep(ctx, backoff) {
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

// runRound runs one round for Run: it starts only while ctx is live, and once
// started it runs on a context detached from ctx that ends StopTimeout after ctx
// does, so that a shutdown does not abandon rows already delivered but not yet
// marked sent (which the next relay, or Drain, would publish again).
func (r *Relay) runRound(ctx context.Context) (roundResult, error) {
	rc, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-finished:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(r.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			cancel()
		}
	}()
	return r.publishRound(rc, ctx)
}

// checkPublisher logs a change of the publisher's Err state.
func (r *Relay) checkPublisher(ctx context.Context) {
	h, ok := r.pub.(interface{ Err() error })
	if !ok {
		return
	}
	err := h.Err()
	state := ""
	if err != nil {
		state = err.Error()
	}
	if state == r.pubErr {
		return
	}
	r.pubErr = state
	if err != nil {
		r.log.ErrorContext(ctx, "outbox publisher failed: no event is published until it recovers (for a Kafka producer: a restart)", "err", err)
	} else {
		r.log.InfoContext(ctx, "outbox publisher healthy again")
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
		res, err := r.publishRound(ctx, ctx)
		total += res.sent
		switch {
		case err != nil:
			return fmt.Errorf("outbox: drain: %w", err)
		case res.failed+res.skipped > 0:
			return fmt.Errorf("outbox: drain: %d of %d messages not delivered: %v", res.failed+res.skipped, res.fetched, res.firstErr)
		case res.notLeader || res.fetched < r.cfg.BatchSize:
			r.log.InfoContext(ctx, "outbox drained", "sent", total)
			return nil
		}
	}
}

// Backlog reports how many rows wait to be published and how long the oldest has
// waited (0 when none); parked rows are not counted (see [Relay.Parked]). It reads
// without locking and is safe to call any time, e.g. from a metrics collector.
func (r *Relay) Backlog(ctx context.Context) (count int, oldest time.Duration, err error) {
	return Backlog(ctx, r.db)
}

// Parked reports how many rows the relay has given up on; see [Parked].
func (r *Relay) Parked(ctx context.Context) (int, error) {
	return Parked(ctx, r.db)
}

// Backlog reports the number of unsent, unparked rows in d's outbox and the age of
// the oldest.
func Backlog(ctx context.Context, d *db.DB) (count int, oldest time.Duration, err error) {
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE "+pending).Scan(&count); err != nil {
		return 0, 0, fmt.Errorf("outbox: backlog: %w", err)
	}
	if count == 0 {
		return 0, 0, nil
	}
	var created time.Time
	err = d.QueryRowContext(ctx, "SELECT created_at FROM outbox WHERE "+pending+" ORDER BY id LIMIT 1").Scan(&created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, 0, nil // published in between
	case err != nil:
		return 0, 0, fmt.Errorf("outbox: backlog: %w", err)
	}
	return count, max(time.Since(created), 0), nil
}

// pending selects the rows the relay publishes: unsent and not parked.
const pending = "sent_at IS NULL AND parked_at IS NULL"

// Parked reports the number of parked rows in d's outbox: rows the relay gave up on
// after MaxAttempts permanent failures, kept until [Retry] re-drives them. A
// non-zero count needs an operator.
func Parked(ctx context.Context, d *db.DB) (int, error) {
	var n int
	if err := d.QueryRowContext(ctx, "SELECT count(*) FROM outbox WHERE parked_at IS NOT NULL AND sent_at IS NULL").Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox: parked: %w", err)
	}
	return n, nil
}

// ParkedRow describes a parked outbox row.
type ParkedRow struct {
	ID        int64
	Topic     string
	Key       []byte
	Attempts  int
	LastError string
	CreatedAt time.Time
	ParkedAt  time.Time
}

// ListParked returns up to limit parked rows of d's outbox, oldest first.
func ListParked(ctx context.Context, d *db.DB, limit int) ([]ParkedRow, error) {
	rs, err := d.QueryContext(ctx,
		"SELECT id, topic, msg_key, attempts, COALESCE(last_error, ''), created_at, parked_at FROM outbox "+
			"WHERE parked_at IS NOT NULL AND sent_at IS NULL ORDER BY id LIMIT ?", limit)
	if err != nil {
		return nil, fmt.Errorf("outbox: list parked: %w", err)
	}
	defer rs.Close()
	var out []ParkedRow
	for rs.Next() {
		var p ParkedRow
		if err := rs.Scan(&p.ID, &p.Topic, &p.Key, &p.Attempts, &p.LastError, &p.CreatedAt, &p.ParkedAt); err != nil {
			return nil, fmt.Errorf("outbox: list parked: %w", err)
		}
		out = append(out, p)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("outbox: list parked: %w", err)
	}
	return out, nil
}

// Retry un-parks the given parked rows of d's outbox: their attempts restart from
// 0 and the relay publishes them again, woken by the commit. It returns how many
// rows were un-parked (ids that are not parked are ignored). A re-driven row is
// delivered after the later rows of its key that went out while it was parked.
func Retry(ctx context.Context, d *db.DB, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	var n int64
	err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		tx.Signal(commitSignal)
		res, err := tx.ExecContext(ctx,
			"UPDATE outbox SET parked_at = NULL, attempts = 0 WHERE parked_at IS NOT NULL AND sent_at IS NULL AND id IN (?"+
				strings.Repeat(", ?", len(ids)-1)+")", args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: retry: %w", err)
	}
	return int(n), nil
}

type roundResult struct {
	fetched, sent, failed int
	skipped               int // held back behind a failed row of their key; no attempt counted
	parked                int
	firstErr              error
	notLeader             bool
}

type row struct {
	id       int64
	attempts int
	msg      kafka.Message
}

// publishRound fetches up to BatchSize unsent rows, publishes them and records the
// outcome. On PostgreSQL the whole round runs in one transaction holding the relay's
// advisory lock; on SQLite it reads, publishes without holding the single writer,
// and records the outcome in a short transaction. The round starts only if start is
// live when it gets its turn; it then runs on ctx.
func (r *Relay) publishRound(ctx, start context.Context) (roundResult, error) {
	select {
	case r.round <- struct{}{}:
	case <-start.Done():
		return roundResult{}, start.Err()
	}
	defer func() { <-r.round }()
	if err := start.Err(); err != nil {
		return roundResult{}, err
	}
	var (
		rows []row
		res  published
	)
	if r.db.Dialect() == db.DialectPostgres {
		errNotLeader := errors.New("not leader")
		err := r.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			var locked bool
			if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock(?)", r.db.LockKey("outbox-relay")).Scan(&locked); err != nil {
				return fmt.Errorf("advisory lock: %w", err)
			}
			if !locked {
				return errNotLeader
			}
			var err error
			if rows, err = fetch(ctx, tx, r.cfg.BatchSize); err != nil {
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
	} else {
		var err error
		if rows, err = fetch(ctx, r.db, r.cfg.BatchSize); err != nil || len(rows) == 0 {
			return roundResult{}, err
		}
		res = r.publish(ctx, rows)
		if err := r.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			return record(ctx, tx, rows, res)
		}); err != nil {
			// Delivered rows stay unsent and will be published again: at least once.
			return res.roundResult, err
		}
	}
	r.countPublished(res.sent)
	for i, rw := range rows {
		if res.park[i] {
			r.log.ErrorContext(ctx, "outbox row parked: it is not published again until outbox.Retry, and no longer holds back its key",
				"outbox_id", rw.id, "topic", rw.msg.Topic, "key", string(rw.msg.Key), "attempts", rw.attempts+1, "err", res.errs[i])
		}
	}
	return res.roundResult, nil
}

// published is the outcome of publishing one batch: errs[i] is nil for a row to
// mark sent, [kafka.ErrSkipped] for a row to leave untouched (not attempted, or
// delivered behind a failed row of its key), any other error for a failed attempt;
// park[i] parks a failed row.
type published struct {
	roundResult
	errs []error
	park []bool
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
	span := r.startSend(ctx, msgs)
	defer func() { endSend(span, res.roundResult) }()
	// No span reaches the publisher: it must not give a row without a creation
	// context one of its own (kafka.Producer would).
	res.errs = r.pub.Publish(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), msgs)
	if len(res.errs) != len(msgs) {
		err := fmt.Errorf("publisher returned %d results for %d messages", len(res.errs), len(msgs))
		res.errs = make([]error, len(msgs))
		for i := range res.errs {
			res.errs[i] = err
		}
	}
	res.park = make([]bool, len(msgs))
	var blocked map[string]bool // topic+key of the rows that failed or were skipped
	for i, err := range res.errs {
		rw := &rows[i]
		k := rw.msg.Topic + "\x00" + string(rw.msg.Key)
		if err == nil && blocked[k] {
			// The publisher delivered it although an earlier row of its key failed
			// (known only from a delivery report). Not marked sent: it goes out again
			// after that row, and consumers drop this copy by ce_id.
			r.log.WarnContext(ctx, "outbox message delivered ahead of an earlier failed one of its key; it will be published again after it",
				"outbox_id", rw.id, "msg", rw.msg.String())
			res.errs[i], err = kafka.ErrSkipped, kafka.ErrSkipped
		}
		if err == nil {
			res.sent++
			continue
		}
		if blocked == nil {
			blocked = make(map[string]bool)
		}
		blocked[k] = true
		if errors.Is(err, kafka.ErrSkipped) {
			res.skipped++
			continue
		}
		res.failed++
		if res.firstErr == nil {
			res.firstErr = err
		}
		if kafka.IsPermanent(err) && rw.attempts+1 >= r.cfg.MaxAttempts {
			res.park[i] = true
			res.parked++
		}
		r.log.DebugContext(ctx, "outbox message not delivered", "outbox_id", rw.id, "msg", rw.msg.String(), "err", err)
	}
	return res
}

// TracerName is the OpenTelemetry instrumentation scope of the relay's spans.
const TracerName = "puchi/outbox"

// startSend starts the span of one publish round, linked to the creation
// context of each message that has one.
func (r *Relay) startSend(ctx context.Context, msgs []kafka.Message) trace.Span {
	topic := msgs[0].Topic
	for i := range msgs {
		if msgs[i].Topic != topic {
			topic = ""
			break
		}
	}
	name := "send"
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKafka,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("send"),
		semconv.MessagingBatchMessageCount(len(msgs)),
	}
	if topic != "" {
		name += " " + topic
		attrs = append(attrs, semconv.MessagingDestinationName(topic))
	}
	// CLIENT, not PRODUCER: the messages' creation contexts are their create
	// spans, not this one (messaging conventions, "Span kind").
	_, span := r.tracer.Start(ctx, name, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if !span.IsRecording() {
		return span // no per-message work when nothing is recorded
	}
	for i := range msgs {
		if sc := kafka.CreationContext(&msgs[i]); sc.IsValid() {
			span.AddLink(trace.Link{SpanContext: sc})
		}
	}
	return span
}

// endSend ends a round's span; undelivered messages make it an error.
func endSend(span trace.Span, res roundResult) {
	if n := res.failed + res.skipped; n > 0 {
		if res.firstErr != nil {
			span.RecordError(res.firstErr)
			span.SetAttributes(semconv.ErrorType(res.firstErr))
		}
		span.SetStatus(codes.Error, fmt.Sprintf("%d of %d messages not delivered", n, res.fetched))
	}
	span.End()
}

// fetch reads up to limit pending rows, oldest first.
func fetch(ctx context.Context, q db.Querier, limit int) ([]row, error) {
	rs, err := q.QueryContext(ctx,
		"SELECT id, attempts, topic, msg_key, value, headers, created_at FROM outbox WHERE "+pending+" ORDER BY id LIMIT ?", limit)
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
		if err := rs.Scan(&rw.id, &rw.attempts, &rw.msg.Topic, &rw.msg.Key, &rw.msg.Value, &headers, &rw.msg.Timestamp); err != nil {
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

// record marks delivered rows sent, counts an attempt, with its error, on the
// failed ones (parking those res says to), and leaves skipped rows untouched.
func record(ctx context.Context, tx *db.Tx, rows []row, res published) error {
	at := db.Now()
	var sent []any
	for i, rw := range rows {
		err := res.errs[i]
		switch {
		case err == nil:
			sent = append(sent, rw.id)
			continue
		case errors.Is(err, kafka.ErrSkipped):
			continue
		}
		var parked any // NULL
		if res.park[i] {
			parked = at
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE outbox SET attempts = attempts + 1, last_error = ?, parked_at = ? WHERE id = ?",
			truncate(err.Error(), 1000), parked, rw.id); err != nil {
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
