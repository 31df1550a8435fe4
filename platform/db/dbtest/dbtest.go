// Package dbtest runs storage tests against every database engine Puchi supports:
// always SQLite (a file in t.TempDir()), and PostgreSQL when the environment variable
// [PostgresURLEnv] holds a connection URL. Each test gets its own database (on
// PostgreSQL a fresh schema, dropped when the test ends), so tests may run in
// parallel. If the variable is set but PostgreSQL cannot be reached the test fails:
// a configured engine is never silently skipped.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"testing"

	"github.com/puchi-dev/puchi/platform/db"
)

// PostgresURLEnv names the variable holding the PostgreSQL URL for storage tests,
// e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresURLEnv = "PUCHI_TEST_POSTGRES_URL"

// Dialects lists the engines this run covers: SQLite, plus PostgreSQL when
// [PostgresURLEnv] is set.
func Dialects() []db.Dialect {
	ds := []db.Dialect{db.DialectSQLite}
	if os.Getenv(PostgresURLEnv) != "" {
		ds = append(ds, db.DialectPostgres)
	}
	return ds
}

// ForEach runs fn as one subtest per engine in [Dialects], each with a fresh
// database that has the platform tables migrated (outbox, processed_events). The
// subtests run one after another; fn may call t.Parallel.
func ForEach(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, dialect := range Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			fn(t, Open(t, dialect, nil))
		})
	}
}

// Open returns a fresh database on dialect, migrated with the platform tables and
// then with migrations (may be nil; see [db.DB.Migrate] for the layout). It is closed
// (and, on PostgreSQL, its schema dropped) when t ends. Failures are fatal.
func Open(t testing.TB, dialect db.Dialect, migrations fs.FS) *db.DB {
	t.Helper()
	ctx := context.Background()
	cfg := Config(t, dialect)
	d, err := db.Open(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatalf("dbtest: open %s: %v", dialect, err)
	}
	t.Cleanup(func() {
		if dialect == db.DialectPostgres {
			if _, err := d.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS "`+cfg.Service+`" CASCADE`); err != nil {
				t.Errorf("dbtest: drop schema %s: %v", cfg.Service, err)
			}
		}
		if err := d.Close(); err != nil {
			t.Errorf("dbtest: close: %v", err)
		}
	})
	if err := d.Migrate(ctx, migrations); err != nil {
		t.Fatalf("dbtest: migrate %s: %v", dialect, err)
	}
	return d
}

// Config returns a [db.Config] for a fresh, uniquely named database on dialect. It
// fails the test when dialect is PostgreSQL and [PostgresURLEnv] is unset.
func Config(t testing.TB, dialect db.Dialect) db.Config {
	t.Helper()
	cfg := db.Config{Service: "t_" + randomHex(t), MaxConns: 4}
	switch dialect {
	case db.DialectSQLite:
		cfg.DataDir = t.TempDir()
	case db.DialectPostgres:
		cfg.URL = os.Getenv(PostgresURLEnv)
		if cfg.URL == "" {
			t.Fatalf("dbtest: %s is not set", PostgresURLEnv)
		}
	default:
		t.Fatalf("dbtest: unknown dialect %q", dialect)
	}
	return cfg
}

// Logger returns a slog.Logger that writes to the test log (shown on failure or -v).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func randomHex(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("dbtest: random: %v", err)
	}
	return hex.EncodeToString(b)
}
