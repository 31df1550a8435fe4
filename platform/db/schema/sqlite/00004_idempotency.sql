-- +goose Up
-- Responses of requests that carried an Idempotency-Key; written by
-- platform/idempotency in the same transaction as the request's effect.
CREATE TABLE idempotency_keys (
    scope      TEXT      NOT NULL,
    user_id    TEXT      NOT NULL,
    idem_key   TEXT      NOT NULL,
    response   BLOB      NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (scope, user_id, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
