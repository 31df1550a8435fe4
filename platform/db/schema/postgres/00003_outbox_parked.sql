-- +goose Up
-- A row the relay gave up on (a permanent error, MaxAttempts times): parked rows are
-- not published, and no longer hold back later rows of their key, until
-- outbox.Retry clears parked_at.
ALTER TABLE outbox ADD COLUMN parked_at TIMESTAMPTZ;
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;

-- +goose Down
DROP INDEX outbox_parked;
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
ALTER TABLE outbox DROP COLUMN parked_at;
