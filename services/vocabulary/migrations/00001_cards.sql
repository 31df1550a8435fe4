-- +goose Up
-- Times are Unix milliseconds (BIGINT) so that one migration serves SQLite and PostgreSQL.
-- A learner's deck: one card per (learner, term), whichever lesson or hand added it first.
CREATE TABLE cards (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL,
    term                TEXT NOT NULL,
    translation         TEXT NOT NULL,
    part_of_speech      TEXT NOT NULL DEFAULT '',
    example             TEXT NOT NULL DEFAULT '',
    example_translation TEXT NOT NULL DEFAULT '',
    audio_media_id      TEXT NOT NULL DEFAULT '',
    source              TEXT NOT NULL,            -- 'lesson' or 'manual'
    lesson_id           TEXT NOT NULL DEFAULT '', -- '' for a word added by hand
    -- FSRS memory state
    state               TEXT NOT NULL,            -- 'new', 'learning', 'review', 'relearning'
    due                 BIGINT NOT NULL,
    stability           DOUBLE PRECISION NOT NULL DEFAULT 0,
    difficulty          DOUBLE PRECISION NOT NULL DEFAULT 0,
    elapsed_days        INTEGER NOT NULL DEFAULT 0,
    scheduled_days      INTEGER NOT NULL DEFAULT 0,
    reps                INTEGER NOT NULL DEFAULT 0,
    lapses              INTEGER NOT NULL DEFAULT 0,
    step                INTEGER NOT NULL DEFAULT 0,
    last_review         BIGINT,
    mastered_at         BIGINT,
    created_at          BIGINT NOT NULL,
    UNIQUE (user_id, term)
);
CREATE INDEX cards_user_due ON cards (user_id, state, due);
CREATE INDEX cards_user_created ON cards (user_id, created_at, id);

-- The full FSRS log of every review, for history and daily counters (by the UTC
-- day of reviewed_at).
CREATE TABLE reviews (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL,
    card_id           TEXT NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
    rating            INTEGER NOT NULL,
    state_before      TEXT NOT NULL,
    state_after       TEXT NOT NULL,
    elapsed_days      INTEGER NOT NULL,
    scheduled_days    INTEGER NOT NULL,
    stability_before  DOUBLE PRECISION NOT NULL,
    difficulty_before DOUBLE PRECISION NOT NULL,
    stability         DOUBLE PRECISION NOT NULL,
    difficulty        DOUBLE PRECISION NOT NULL,
    reps              INTEGER NOT NULL,
    lapses            INTEGER NOT NULL,
    step              INTEGER NOT NULL,
    due               BIGINT NOT NULL,
    reviewed_at       BIGINT NOT NULL,
    created_at        BIGINT NOT NULL
);
CREATE INDEX reviews_user_time ON reviews (user_id, reviewed_at);
CREATE INDEX reviews_card ON reviews (card_id, reviewed_at);

-- +goose Down
DROP TABLE reviews;
DROP TABLE cards;
