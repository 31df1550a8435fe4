package media

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the media service's SQL persistence (metadata only; the bytes are in
// the [BlobStore]). Writes take the transaction they run in; the caller owns
// transaction boundaries so that state and outbox rows commit together.
type Store struct{}

const itemColumns = `id, owner_id, filename, sha256, content_type, size_bytes, purpose, visibility,
	width, height, duration_ms, thumb_sha256, thumb_size, thumb_type, created_at, processed_at`

// InsertItem adds it.
func (Store) InsertItem(ctx context.Context, tx *db.Tx, it Item) error {
	var processed sql.NullInt64
	if it.ProcessedAt != nil {
		processed = sql.NullInt64{Int64: it.ProcessedAt.UnixMilli(), Valid: true}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO media_items (`+itemColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		it.ID, it.OwnerID, it.Filename, it.SHA256, it.ContentType, it.Size, string(it.Purpose), string(it.Visibility),
		it.Width, it.Height, it.DurationMS, it.ThumbSHA256, it.ThumbSize, it.ThumbType, it.CreatedAt.UnixMilli(), processed)
	if err != nil {
		return fmt.Errorf("insert media item: %w", err)
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanItem(r scanner) (Item, error) {
	var it Item
	var purpose, vis string
	var created int64
	var processed sql.NullInt64
	if err := r.Scan(&it.ID, &it.OwnerID, &it.Filename, &it.SHA256, &it.ContentType, &it.Size, &purpose, &vis,
		&it.Width, &it.Height, &it.DurationMS, &it.ThumbSHA256, &it.ThumbSize, &it.ThumbType, &created, &processed); err != nil {
		return Item{}, err
	}
	it.Purpose, it.Visibility = Purpose(purpose), Visibility(vis)
	it.CreatedAt = time.UnixMilli(created).UTC()
	if processed.Valid {
		p := time.UnixMilli(processed.Int64).UTC()
		it.ProcessedAt = &p
	}
	return it, nil
}

// ItemByID returns the item; NotFound when there is none.
func (Store) ItemByID(ctx context.Context, q db.Querier, id string) (Item, error) {
	it, err := scanItem(q.QueryRowContext(ctx, `SELECT `+itemColumns+` FROM media_items WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, errItemNotFound(id)
	}
	if err != nil {
		return Item{}, fmt.Errorf("select media item: %w", err)
	}
	return it, nil
}

// ListByOwner returns up to limit of the owner's items, newest first (created_at,
// id descending), after the cursor (created_at millis, id) when afterID is set;
// purpose "" is any purpose.
func (Store) ListByOwner(ctx context.Context, q db.Querier, owner string, purpose Purpose, afterCreated int64, afterID string, limit int) ([]Item, error) {
	where, args := `owner_id = ?`, []any{owner}
	if purpose != "" {
		where += ` AND purpose = ?`
		args = append(args, string(purpose))
	}
	if afterID != "" {
		where += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, afterCreated, afterCreated, afterID)
	}
	args = append(args, limit)
	return queryItems(ctx, q, `SELECT `+itemColumns+` FROM media_items WHERE `+where+` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
}

// PrivateItemsOf returns every private item of owner.
func (Store) PrivateItemsOf(ctx context.Context, q db.Querier, owner string) ([]Item, error) {
	return queryItems(ctx, q, `SELECT `+itemColumns+` FROM media_items WHERE owner_id = ? AND visibility = ? ORDER BY created_at, id`,
		owner, string(Private))
}

func queryItems(ctx context.Context, q db.Querier, query string, args ...any) ([]Item, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select media items: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("scan media item: %w", err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// DeleteItem removes the item row; it reports whether there was one.
func (Store) DeleteItem(ctx context.Context, tx *db.Tx, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM media_items WHERE id = ?`, id)
	if err != nil {
		return false, fmt.Errorf("delete media item: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// References counts the items whose bytes, or whose thumbnail, are the blob sha.
func (Store) References(ctx context.Context, q db.Querier, sha string) (int, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM media_items WHERE sha256 = ?)
		+ (SELECT count(*) FROM media_items WHERE thumb_sha256 = ?)`, sha, sha).Scan(&n); err != nil {
		return 0, fmt.Errorf("count blob references: %w", err)
	}
	return n, nil
}

// MarkForGC records that blob sha may have lost its last item.
func (Store) MarkForGC(ctx context.Context, tx *db.Tx, sha string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO media_blob_gc (sha256, created_at) VALUES (?, ?) ON CONFLICT (sha256) DO NOTHING`,
		sha, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("mark blob for gc: %w", err)
	}
	return nil
}

// GCCandidates returns up to limit blobs marked by [Store.MarkForGC].
func (Store) GCCandidates(ctx context.Context, q db.Querier, limit int) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT sha256 FROM media_blob_gc ORDER BY created_at, sha256 LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("select blob gc: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// UnmarkGC forgets a swept blob.
func (Store) UnmarkGC(ctx context.Context, q db.Querier, sha string) error {
	if _, err := q.ExecContext(ctx, `DELETE FROM media_blob_gc WHERE sha256 = ?`, sha); err != nil {
		return fmt.Errorf("unmark blob gc: %w", err)
	}
	return nil
}
