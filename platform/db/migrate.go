package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// schemaFS holds the platform's own tables (the outbox of platform/outbox and the
// processed_events of platform/inbox), one directory per dialect.
//
//go:embed schema
var schemaFS embed.FS

// Goose version tables: the platform's and the service's histories are kept apart
// so that each can number its migrations from 1.
const (
	platformVersionTable = "goose_platform_version"
	serviceVersionTable  = "goose_db_version"
)

// Migrate brings the schema up to date: first the platform's own tables (outbox,
// processed_events; version table goose_platform_version), then the service's
// migrations from fsys (version table goose_db_version). The service's files are
// read from "migrations/<dialect>" ("migrations/sqlite", "migrations/postgres") when
// that directory exists, otherwise from "migrations", whose SQL must then be
// portable. fsys may be nil, and a service without migrations is not an error.
//
// Migrate is idempotent. On PostgreSQL concurrent instances serialise on a
// per-service advisory lock, so several replicas may migrate at start-up; on SQLite
// only one process may use the file. It blocks until done or ctx ends.
func (d *DB) Migrate(ctx context.Context, fsys fs.FS) error {
	platform, err := fs.Sub(schemaFS, "schema/"+string(d.dialect))
	if err != nil {
		return fmt.Errorf("db: platform schema: %w", err)
	}
	if err := d.migrate(ctx, platform, platformVersionTable); err != nil {
		return fmt.Errorf("db: platform migrations: %w", err)
	}
	if fsys == nil {
		return nil
	}
	dir := "migrations"
	if st, err := fs.Stat(fsys, dir+"/"+string(d.dialect)); err == nil && st.IsDir() {
		dir += "/" + string(d.dialect)
	}
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return fmt.Errorf("db: %s migrations: %w", d.service, err)
	}
	if err := d.migrate(ctx, sub, serviceVersionTable); err != nil {
		return fmt.Errorf("db: %s migrations: %w", d.service, err)
	}
	return nil
}

func (d *DB) migrate(ctx context.Context, fsys fs.FS, table string) error {
	opts := []goose.ProviderOption{
		goose.WithTableName(table),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(d.log),
	}
	dialect := goose.DialectSQLite3
	if d.dialect == DialectPostgres {
		dialect = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(d.LockKey("migrate")))
		if err != nil {
			return err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, d.write, fsys, opts...)
	if errors.Is(err, goose.ErrNoMigrations) {
		d.log.DebugContext(ctx, "no migrations", "table", table)
		return nil
	}
	if err != nil {
		return err
	}
	res, err := p.Up(ctx)
	for _, r := range res {
		d.log.InfoContext(ctx, "migration applied", "table", table, "version", r.Source.Version, "duration", r.Duration)
	}
	return err
}
