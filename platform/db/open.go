package db

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

const (
	defaultPostgresConns = 16
	defaultSQLiteReaders = 4
	sqliteBusyTimeoutMS  = 10000
)

// openSQLite opens DataDir/<Service>.db twice: a one-connection pool for writes
// (BEGIN IMMEDIATE, so a transaction holds the write lock from its first statement)
// and a read-only pool for plain queries. With a single writer connection SQLite's
// lock is never contended inside the process; busy_timeout covers other processes
// (e.g. the sqlite3 shell) touching the file.
func openSQLite(ctx context.Context, cfg Config) (write, read *sql.DB, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("db: data dir %s: %w", cfg.DataDir, err)
	}
	path := filepath.Join(cfg.DataDir, cfg.Service+".db")
	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeoutMS))
	common.Add("_pragma", "foreign_keys(1)")
	common.Add("_pragma", "synchronous(NORMAL)")
	common.Set("_time_format", "sqlite")

	wq := cloneValues(common)
	wq.Add("_pragma", "journal_mode(WAL)")
	wq.Set("_txlock", "immediate")
	write, err = sql.Open("sqlite", "file:"+path+"?"+wq.Encode())
	if err != nil {
		return nil, nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// The writer connects first: it creates the file and switches it to WAL, which
	// is persistent, before any read-only connection opens it.
	if err := write.PingContext(ctx); err != nil {
		_ = write.Close()
		return nil, nil, fmt.Errorf("db: open %s: %w", path, err)
	}

	rq := cloneValues(common)
	rq.Add("_pragma", "query_only(1)")
	read, err = sql.Open("sqlite", "file:"+path+"?"+rq.Encode())
	if err != nil {
		_ = write.Close()
		return nil, nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	n := cfg.MaxConns
	if n == 0 {
		n = defaultSQLiteReaders
	}
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	if err := read.PingContext(ctx); err != nil {
		_ = write.Close()
		_ = read.Close()
		return nil, nil, fmt.Errorf("db: open %s: %w", path, err)
	}
	return write, read, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// openPostgres creates the service's schema if needed and returns a pool whose
// every connection has search_path = <Service>.
func openPostgres(ctx context.Context, cfg Config) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// The parse error may echo the URL (and its password); keep it out of logs.
		return nil, fmt.Errorf("db: service %s: invalid PostgreSQL URL", cfg.Service)
	}
	schema := pgx.Identifier{cfg.Service}.Sanitize()
	conn, err := pgx.ConnectConfig(ctx, pc.Copy())
	if err != nil {
		return nil, fmt.Errorf("db: connect to PostgreSQL %s:%d/%s: %w", pc.Host, pc.Port, pc.Database, err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema)
	_ = conn.Close(ctx)
	// Two instances racing on CREATE SCHEMA IF NOT EXISTS can collide on the catalog's
	// unique index; the schema then exists, which is all we wanted.
	if err != nil && !IsUniqueViolation(err) {
		return nil, fmt.Errorf("db: create schema %s: %w", schema, err)
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	pc.RuntimeParams["search_path"] = schema
	pool := stdlib.OpenDB(*pc)
	n := cfg.MaxConns
	if n == 0 {
		n = defaultPostgresConns
	}
	pool.SetMaxOpenConns(n)
	pool.SetMaxIdleConns(n)
	if err := pool.PingContext(ctx); err != nil {
		_ = pool.Close()
		return nil, fmt.Errorf("db: connect to PostgreSQL %s:%d/%s: %w", pc.Host, pc.Port, pc.Database, err)
	}
	return pool, nil
}

// LockKey derives a stable 64-bit PostgreSQL advisory-lock key from name, scoped to
// this database's service so that services sharing one PostgreSQL database do not
// contend. Callers pass a purpose such as "outbox-relay".
func (d *DB) LockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("puchi:" + d.service + ":" + name))
	return int64(h.Sum64())
}
