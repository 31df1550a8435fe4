-- +goose Up
-- Times are Unix milliseconds (BIGINT) so that one migration serves SQLite and PostgreSQL.
-- The bytes live in the blob store under their sha256 (content-addressed), and
-- so do thumbnails (thumb_sha256): several items may share one blob, which
-- goes when the last item naming it does.
CREATE TABLE media_items (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL,
    filename     TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    purpose      TEXT NOT NULL,
    visibility   TEXT NOT NULL,
    width        INTEGER NOT NULL DEFAULT 0,
    height       INTEGER NOT NULL DEFAULT 0,
    duration_ms  BIGINT NOT NULL DEFAULT 0,
    thumb_sha256 TEXT NOT NULL DEFAULT '',
    thumb_size   BIGINT NOT NULL DEFAULT 0,
    thumb_type   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    processed_at BIGINT
);
CREATE INDEX media_items_owner ON media_items (owner_id, created_at, id);
CREATE INDEX media_items_sha256 ON media_items (sha256);
CREATE INDEX media_items_thumb_sha256 ON media_items (thumb_sha256);

-- Blobs that may have lost their last item (deleted in a consumer's
-- transaction): swept after commit, deleted only if still unreferenced.
CREATE TABLE media_blob_gc (
    sha256     TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE media_blob_gc;
DROP TABLE media_items;
