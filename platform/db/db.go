// Package db is Puchi's persistence runtime: one database per service, SQLite (one
// file under the data directory, the embedded default) or PostgreSQL (one schema per
// service, the distributed engine), behind a small API that takes '?' placeholders on
// both. [DB.InTx] is the unit of work that gives the outbox and the inbox their
// guarantees: a business change, the events it emits and the events it has consumed
// are committed together or not at all.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect names the SQL engine behind a [DB].
type Dialect string

// The dialects Puchi supports.
const (
	DialectSQLite   Dialect = "sqlite"
	DialectPostgres Dialect = "postgres"
)

// Config selects and locates a service's database.
type Config struct {
	// Service is the owning service's name, e.g. "lesson". It names the SQLite file
	// (DataDir/<Service>.db) or the PostgreSQL schema. Lower-case letters, digits and
	// '_', starting with a letter.
	Service string
	// DataDir is the directory holding SQLite files; used only when URL is empty.
	DataDir string
	// URL is a PostgreSQL connection URL (postgres://...). Empty selects SQLite.
	URL string
	// MaxConns caps open connections to PostgreSQL (default 16) and the SQLite
	// read pool (default 4). The SQLite write pool always has exactly one.
	MaxConns int
}

var serviceName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)

// Validate reports the first configuration error, naming the offending field.
func (c Config) Validate() error {
	if !serviceName.MatchString(c.Service) {
		return fmt.Errorf("db: Service %q must match %s", c.Service, serviceName)
	}
	if c.URL == "" && c.DataDir == "" {
		return fmt.Errorf("db: DataDir is required for SQLite (service %s) when no database URL is set", c.Service)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("db: MaxConns must not be negative (service %s)", c.Service)
	}
	return nil
}

// DB is one service's database. It is safe for concurrent use by many goroutines.
//
// On SQLite, writes are serialised through a single connection: [DB.InTx] and
// [DB.ExecContext] queue for it in Go (bounded only by ctx), so concurrent writers
// never see SQLITE_BUSY. [DB.QueryContext] and [DB.QueryRowContext] run on a separate
// read-only pool and see the last committed state (WAL snapshot); a statement that
// writes must therefore go through ExecContext or a transaction. On PostgreSQL all
// three share one pool.
//
// Inside [DB.InTx] use the [Tx], never the DB: on SQLite a write through the DB while
// the same goroutine holds the transaction waits for itself forever.
type DB struct {
	dialect Dialect
	service string
	log     *slog.Logger
	write   *sql.DB // all writes and transactions
	read    *sql.DB // plain reads; the same pool as write on PostgreSQL

	mu      sync.RWMutex
	hooks   []func()
	signals map[string][]func() // OnSignal hooks by signal name
}

// Open opens (creating if needed) the database cfg describes and checks that it
// answers. On PostgreSQL it creates the service's schema if missing and pins every
// connection's search_path to it. It does not migrate; call [DB.Migrate].
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "db", "service", cfg.Service)
	d := &DB{service: cfg.Service, log: log}
	var err error
	if cfg.URL == "" {
		d.dialect = DialectSQLite
		d.write, d.read, err = openSQLite(ctx, cfg)
	} else {
		d.dialect = DialectPostgres
		d.write, err = openPostgres(ctx, cfg)
		d.read = d.write
	}
	if err != nil {
		return nil, err
	}
	log.Debug("database open", "dialect", d.dialect)
	return d, nil
}

// Dialect reports which engine the database runs on.
func (d *DB) Dialect() Dialect { return d.dialect }

// Service returns the service name the database belongs to (its schema on PostgreSQL).
func (d *DB) Service() string { return d.service }

// Close closes every connection. Callers must have stopped using the DB (and every
// [Tx] from it) first; it does not wait for running transactions.
func (d *DB) Close() error {
	err := d.write.Close()
	if d.read != d.write {
		err = errors.Join(err, d.read.Close())
	}
	return err
}

// ExecContext runs a statement that returns no rows, outside any transaction
// (autocommit). Placeholders are '?'. Blocks until a write connection is free.
// It does not run [DB.AfterCommit] hooks: an autocommitted statement cannot take
// part in the outbox.
func (d *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.write.ExecContext(ctx, d.rebind(query), args...)
}

// QueryContext runs a read outside any transaction. Placeholders are '?'. The caller
// must close the returned rows. On SQLite it runs on the read-only pool.
func (d *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.read.QueryContext(ctx, d.rebind(query), args...)
}

// QueryRowContext runs a single-row read outside any transaction; errors surface
// at Scan (sql.ErrNoRows when nothing matched). On SQLite it runs on the read-only pool.
func (d *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.read.QueryRowContext(ctx, d.rebind(query), args...)
}

// PingContext checks that the database answers (used by readiness probes).
func (d *DB) PingContext(ctx context.Context) error {
	return d.write.PingContext(ctx)
}

func (d *DB) rebind(q string) string { return rebind(d.dialect, q) }

// IsUniqueViolation reports whether err (or anything it wraps) is a unique or
// primary-key constraint violation, on either engine.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		code := sqErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// Now returns the current time as the platform stores it: UTC, without monotonic
// reading, at microsecond precision (what PostgreSQL keeps). Use it for timestamp
// columns so that values round-trip and compare the same on both engines.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
