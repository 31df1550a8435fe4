package db_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
)

const itemsMigration = `-- +goose Up
CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
-- +goose Down
DROP TABLE items;
`

var serviceMigrations = fstest.MapFS{"migrations/00001_items.sql": {Data: []byte(itemsMigration)}}

func openItems(t *testing.T, dialect db.Dialect) *db.DB {
	t.Helper()
	return dbtest.Open(t, dialect, serviceMigrations)
}

func count(t *testing.T, d *db.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("count %q: %v", query, err)
	}
	return n
}

func forEachDialect(t *testing.T, fn func(t *testing.T, dialect db.Dialect)) {
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			fn(t, dialect)
		})
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		ctx := context.Background()
		d := openItems(t, dialect) // migrated once
		for i := range 2 {
			if err := d.Migrate(ctx, serviceMigrations); err != nil {
				t.Fatalf("migrate again (%d): %v", i, err)
			}
		}
		for _, table := range []string{"items", "outbox", "processed_events", "goose_db_version", "goose_platform_version"} {
			count(t, d, "SELECT count(*) FROM "+table)
		}
		if got := count(t, d, "SELECT count(*) FROM goose_db_version WHERE version_id = 1"); got != 1 {
			t.Errorf("service version 1 recorded %d times, want 1", got)
		}
		files, err := filepath.Glob(filepath.Join("schema", string(dialect), "*.sql"))
		if err != nil || len(files) < 2 {
			t.Fatalf("platform migrations: %v, %v", files, err)
		}
		if got := count(t, d, "SELECT count(*) FROM goose_platform_version WHERE version_id > 0"); got != len(files) {
			t.Errorf("platform versions recorded %d, want %d (one per file)", got, len(files))
		}
	})
}

func TestMigratePicksDialectDirectory(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		fsys := fstest.MapFS{
			"migrations/sqlite/00001_x.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE only_sqlite (id INTEGER);\n")},
			"migrations/postgres/00001_x.sql": {Data: []byte("-- +goose Up\nCREATE TABLE only_postgres (id BIGINT);\n")},
		}
		d := dbtest.Open(t, dialect, fsys)
		count(t, d, "SELECT count(*) FROM only_"+string(dialect))
	})
}

func TestMigrateWithoutServiceMigrations(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		d := dbtest.Open(t, dialect, fstest.MapFS{"README": {Data: []byte("no migrations here")}})
		count(t, d, "SELECT count(*) FROM outbox")
	})
}

func TestInTx(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		fn         func(ctx context.Context, tx *db.Tx) error
		wantErr    error
		wantPanic  bool
		wantRows   int
		wantHooked int
	}{
		{name: "commit", fn: insertItem, wantRows: 1, wantHooked: 1},
		{name: "error rolls back", fn: func(ctx context.Context, tx *db.Tx) error {
			if err := insertItem(ctx, tx); err != nil {
				return err
			}
			return errBoom
		}, wantErr: errBoom},
		{name: "panic rolls back", fn: func(ctx context.Context, tx *db.Tx) error {
			if err := insertItem(ctx, tx); err != nil {
				return err
			}
			panic("boom")
		}, wantPanic: true},
		{name: "failed statement rolls back", fn: func(ctx context.Context, tx *db.Tx) error {
			if err := insertItem(ctx, tx); err != nil {
				return err
			}
			return insertItem(ctx, tx) // duplicate key
		}, wantErr: errAny},
	}
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				d := openItems(t, dialect)
				var hooked atomic.Int32
				d.AfterCommit(func() { hooked.Add(1) })
				var err error
				panicked := func() (p bool) {
					defer func() { p = recover() != nil }()
					err = d.InTx(context.Background(), tc.fn)
					return false
				}()
				if panicked != tc.wantPanic {
					t.Fatalf("panicked = %v, want %v", panicked, tc.wantPanic)
				}
				switch {
				case tc.wantErr == errAny && err == nil:
					t.Errorf("err = nil, want an error")
				case tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
				if got := count(t, d, "SELECT count(*) FROM items"); got != tc.wantRows {
					t.Errorf("rows = %d, want %d", got, tc.wantRows)
				}
				if got := int(hooked.Load()); got != tc.wantHooked {
					t.Errorf("AfterCommit ran %d times, want %d", got, tc.wantHooked)
				}
				// The connection must be usable afterwards (no leaked transaction).
				if err := d.InTx(context.Background(), func(ctx context.Context, tx *db.Tx) error {
					_, err := tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "after", 1)
					return err
				}); err != nil {
					t.Fatalf("InTx after %s: %v", tc.name, err)
				}
			})
		}
	})
}

var errAny = errors.New("any error")

func insertItem(ctx context.Context, tx *db.Tx) error {
	_, err := tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "a", 1)
	return err
}

func TestAfterCommitRunsAfterCommitIsVisible(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		d := openItems(t, dialect)
		seen := -1
		d.AfterCommit(func() {
			// Runs after the commit: another connection already sees the row.
			seen = count(t, d, "SELECT count(*) FROM items")
		})
		if err := d.InTx(context.Background(), insertItem); err != nil {
			t.Fatal(err)
		}
		if seen != 1 {
			t.Errorf("hook saw %d rows, want 1", seen)
		}
	})
}

// TestSignalHooks: OnSignal hooks run once per committed transaction that
// signalled their name (however often), after the AfterCommit hooks; never for
// other names, unsignalled commits or rollbacks.
func TestSignalHooks(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		d := openItems(t, dialect)
		var order []string
		d.AfterCommit(func() { order = append(order, "commit") })
		d.OnSignal("a", func() { order = append(order, "a1") })
		d.OnSignal("a", func() { order = append(order, "a2") })
		d.OnSignal("b", func() { order = append(order, "b") })
		tx := func(fn func(ctx context.Context, tx *db.Tx) error) []string {
			t.Helper()
			order = nil
			_ = d.InTx(context.Background(), fn)
			return order
		}
		for _, tc := range []struct {
			name string
			fn   func(ctx context.Context, tx *db.Tx) error
			want string
		}{
			{"unsignalled", func(context.Context, *db.Tx) error { return nil }, "[commit]"},
			{"signalled twice", func(_ context.Context, tx *db.Tx) error { tx.Signal("a"); tx.Signal("a"); return nil }, "[commit a1 a2]"},
			{"two names", func(_ context.Context, tx *db.Tx) error { tx.Signal("b"); tx.Signal("a"); return nil }, "[commit b a1 a2]"},
			{"unknown name", func(_ context.Context, tx *db.Tx) error { tx.Signal("c"); return nil }, "[commit]"},
			{"rolled back", func(_ context.Context, tx *db.Tx) error { tx.Signal("a"); return errors.New("boom") }, "[]"},
		} {
			if got := fmt.Sprint(tx(tc.fn)); got != tc.want {
				t.Errorf("%s: hooks ran %s, want %s", tc.name, got, tc.want)
			}
		}
	})
}

func TestIsUniqueViolation(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		ctx := context.Background()
		d := openItems(t, dialect)
		if _, err := d.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "a", 1); err != nil {
			t.Fatal(err)
		}
		_, err := d.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "a", 2)
		if !db.IsUniqueViolation(err) {
			t.Errorf("IsUniqueViolation(%v) = false, want true", err)
		}
		if !db.IsUniqueViolation(fmt.Errorf("wrapped: %w", err)) {
			t.Errorf("IsUniqueViolation(wrapped) = false, want true")
		}
		_, err = d.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "b", nil) // NOT NULL
		if err == nil || db.IsUniqueViolation(err) {
			t.Errorf("NOT NULL violation: err = %v, IsUniqueViolation must be false", err)
		}
		if db.IsUniqueViolation(nil) || db.IsUniqueViolation(errors.New("x")) {
			t.Error("IsUniqueViolation true for non-database error")
		}
	})
}

// TestConcurrentInTx hammers the database with concurrent read-modify-write
// transactions and plain reads. On SQLite this must never surface SQLITE_BUSY, and
// on both engines no update may be lost.
func TestConcurrentInTx(t *testing.T) {
	t.Parallel()
	forEachDialect(t, func(t *testing.T, dialect db.Dialect) {
		ctx := context.Background()
		d := openItems(t, dialect)
		if _, err := d.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "counter", 0); err != nil {
			t.Fatal(err)
		}
		const workers, perWorker = 16, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*perWorker*2)
		for w := range workers {
			wg.Go(func() {
				for i := range perWorker {
					err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
						var n int
						// SELECT ... then UPDATE: a lost update if transactions interleaved.
						q := "SELECT n FROM items WHERE id = ?"
						if tx.Dialect() == db.DialectPostgres {
							q += " FOR UPDATE"
						}
						if err := tx.QueryRowContext(ctx, q, "counter").Scan(&n); err != nil {
							return err
						}
						if _, err := tx.ExecContext(ctx, "UPDATE items SET n = ? WHERE id = ?", n+1, "counter"); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", fmt.Sprintf("w%d-%d", w, i), i)
						return err
					})
					if err != nil {
						errs <- err
					}
					var n int
					if err := d.QueryRowContext(ctx, "SELECT n FROM items WHERE id = ?", "counter").Scan(&n); err != nil {
						errs <- fmt.Errorf("read: %w", err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := count(t, d, "SELECT n FROM items WHERE id = ?", "counter"); got != workers*perWorker {
			t.Errorf("counter = %d, want %d", got, workers*perWorker)
		}
		if got := count(t, d, "SELECT count(*) FROM items"); got != workers*perWorker+1 {
			t.Errorf("rows = %d, want %d", got, workers*perWorker+1)
		}
	})
}

func TestSQLiteReadPoolIsReadOnly(t *testing.T) {
	t.Parallel()
	d := openItems(t, db.DialectSQLite)
	_, err := d.QueryContext(context.Background(), "INSERT INTO items (id, n) VALUES ('x', 1) RETURNING id")
	if err == nil {
		t.Fatal("write through QueryContext succeeded on SQLite; want a read-only error")
	}
}

func TestOpenFailsOnUnreachablePostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*1e9)
	defer cancel()
	_, err := db.Open(ctx, db.Config{Service: "x", URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"}, nil)
	if err == nil {
		t.Fatal("Open succeeded against a closed port")
	}
}
