-- +goose Up
-- Event ids a consumer group has applied; written by platform/inbox in the same
-- transaction as the handler's effect.
CREATE TABLE processed_events (
    consumer_group TEXT      NOT NULL,
    event_id       TEXT      NOT NULL,
    processed_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP TABLE processed_events;
