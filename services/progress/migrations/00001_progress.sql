-- +goose Up
-- Everything here is built from other services' events. Times are Unix
-- milliseconds (BIGINT); dates are the learner's local days (YYYY-MM-DD TEXT);
-- weeks are keyed by their Monday (UTC, YYYY-MM-DD TEXT). Flags are INTEGER 0/1.

-- One row per learner: profile (from user-events) and running totals.
CREATE TABLE learners (
    user_id          TEXT PRIMARY KEY,
    timezone         TEXT NOT NULL,
    daily_goal_xp    INTEGER NOT NULL,
    total_xp         BIGINT NOT NULL DEFAULT 0,
    streak_current   INTEGER NOT NULL DEFAULT 0,
    streak_longest   INTEGER NOT NULL DEFAULT 0,
    streak_freezes   INTEGER NOT NULL DEFAULT 0,
    streak_last_date TEXT NOT NULL DEFAULT '',
    lessons          INTEGER NOT NULL DEFAULT 0,
    quizzes_passed   INTEGER NOT NULL DEFAULT 0,
    perfect_quizzes  INTEGER NOT NULL DEFAULT 0,
    words_learned    INTEGER NOT NULL DEFAULT 0,
    words_mastered   INTEGER NOT NULL DEFAULT 0,
    goals_reached    INTEGER NOT NULL DEFAULT 0,
    correct_answers  BIGINT NOT NULL DEFAULT 0,
    graded_answers   BIGINT NOT NULL DEFAULT 0
);

-- The XP ledger: one row per triggering event (lesson completed, quiz submitted,
-- word reviewed), amount 0 included. The primary key on the source event id makes
-- a replayed event a no-op even after the inbox has forgotten it.
CREATE TABLE xp_ledger (
    source_event_id TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    reason          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    awarded_at      BIGINT NOT NULL,
    local_date      TEXT NOT NULL,
    week_start      TEXT NOT NULL
);
CREATE INDEX xp_ledger_user ON xp_ledger (user_id, awarded_at);

-- Distinct things counted once: kind 'lesson' (completed), 'quiz' (passed),
-- 'learned' (card graduated), 'mastered' (card mastered).
CREATE TABLE learner_items (
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    item_id TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, item_id)
);

CREATE TABLE daily_activity (
    user_id      TEXT NOT NULL,
    local_date   TEXT NOT NULL,
    xp           INTEGER NOT NULL DEFAULT 0,
    lessons      INTEGER NOT NULL DEFAULT 0,
    reviews      INTEGER NOT NULL DEFAULT 0,
    quizzes      INTEGER NOT NULL DEFAULT 0,
    goal_reached INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, local_date)
);

-- Weekly XP for the leaderboard; reached_at is when the week's XP last grew
-- (equal XP: who reached it first ranks higher).
CREATE TABLE weekly_xp (
    user_id    TEXT NOT NULL,
    week_start TEXT NOT NULL,
    xp         BIGINT NOT NULL,
    reached_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, week_start)
);
CREATE INDEX weekly_xp_rank ON weekly_xp (week_start, xp DESC, reached_at, user_id);

CREATE TABLE achievements (
    user_id        TEXT NOT NULL,
    achievement_id TEXT NOT NULL,
    unlocked_at    BIGINT NOT NULL,
    PRIMARY KEY (user_id, achievement_id)
);

-- Ids of deleted users (the id only), so that their events still in flight on
-- other topics do not bring their progress back after the erasure.
CREATE TABLE erased_learners (
    user_id    TEXT PRIMARY KEY,
    erased_at  BIGINT NOT NULL
);

-- +goose Down
DROP TABLE erased_learners;
DROP TABLE achievements;
DROP TABLE weekly_xp;
DROP TABLE daily_activity;
DROP TABLE learner_items;
DROP TABLE xp_ledger;
DROP TABLE learners;
