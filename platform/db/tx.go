package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// Tx is a transaction opened by [DB.InTx]. It belongs to the goroutine running the
// InTx callback and must not be used after the callback returns.
type Tx struct {
	tx      *sql.Tx
	dialect Dialect
	signals []string // names passed to Signal, each once
}

// Signal marks the transaction with name: once it commits, the hooks registered
// with [DB.OnSignal] for name run (once, however often it was signalled). A
// rolled-back transaction signals nothing. The outbox uses it so that only commits
// that wrote outbox rows wake the relay.
func (t *Tx) Signal(name string) {
	if !slices.Contains(t.signals, name) {
		t.signals = append(t.signals, name)
	}
}

// Dialect reports which engine the transaction runs on.
func (t *Tx) Dialect() Dialect { return t.dialect }

// ExecContext runs a statement in the transaction. Placeholders are '?'.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, rebind(t.dialect, query), args...)
}

// QueryContext runs a query in the transaction; it sees the transaction's own
// writes. The caller must close the rows before the next statement on SQLite.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, rebind(t.dialect, query), args...)
}

// QueryRowContext runs a single-row query in the transaction.
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, rebind(t.dialect, query), args...)
}

// InTx runs fn in a transaction and commits it if fn returns nil; if fn returns an
// error or panics, the transaction is rolled back (and the panic re-raised). After a
// successful commit, and only then, every hook registered with [DB.AfterCommit] runs
// synchronously on the calling goroutine before InTx returns, then the
// [DB.OnSignal] hooks of the names the transaction signalled ([Tx.Signal]).
//
// InTx blocks until a connection is available: on SQLite until the single writer is
// free (transactions are serialised and begin with BEGIN IMMEDIATE, so they never
// fail with SQLITE_BUSY), on PostgreSQL until the pool has a connection. Cancelling
// ctx rolls the transaction back. Transactions do not nest: fn must use the [Tx] it
// is given, never the DB. The error fn returns is returned unwrapped; a commit
// failure is wrapped, and then the outcome is unknown only if the connection broke.
// Isolation is the engine's default (SQLite: serializable; PostgreSQL: read committed).
func (d *DB) InTx(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	sqlTx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: begin: %w", err)
	}
	done := false
	defer func() {
		if done {
			return
		}
		// fn panicked or called runtime.Goexit (t.FailNow): never leak the transaction.
		_ = sqlTx.Rollback()
		if p := recover(); p != nil {
			panic(p)
		}
	}()
	tx := &Tx{tx: sqlTx, dialect: d.dialect}
	if err := fn(ctx, tx); err != nil {
		done = true
		if rbErr := sqlTx.Rollback(); rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) {
			d.log.WarnContext(ctx, "rollback failed", "err", rbErr)
		}
		return err
	}
	done = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("db: commit: %w", err)
	}
	d.runHooks(tx.signals)
	return nil
}

// AfterCommit registers fn to run after every successful [DB.InTx] commit, on the
// committing goroutine. Hooks must be fast and must not block (the outbox relay
// registers its non-blocking Wake with [DB.OnSignal]); they run in registration order. It is safe to
// call concurrently with transactions; a hook registered mid-commit may or may not
// run for that commit.
func (d *DB) AfterCommit(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hooks = append(d.hooks, fn)
}

// OnSignal registers fn to run after every successful [DB.InTx] commit of a
// transaction that called [Tx.Signal] with name, on the committing goroutine,
// after the [DB.AfterCommit] hooks. The same rules apply: fast, non-blocking,
// registration order, safe to call concurrently with transactions.
func (d *DB) OnSignal(name string, fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.signals == nil {
		d.signals = map[string][]func(){}
	}
	d.signals[name] = append(d.signals[name], fn)
}

func (d *DB) runHooks(signals []string) {
	d.mu.RLock()
	hooks := d.hooks
	var signalled []func()
	for _, name := range signals {
		signalled = append(signalled, d.signals[name]...)
	}
	d.mu.RUnlock()
	for _, h := range hooks {
		h()
	}
	for _, h := range signalled {
		h()
	}
}
