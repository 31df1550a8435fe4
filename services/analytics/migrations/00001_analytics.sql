-- +goose Up
-- Projections of every topic. Each projection row carries the generation it
-- belongs to: reads use the current generation (projection_state), a rebuild
-- fills a fresh one and swaps the pointer in one transaction, then deletes the
-- rows of the old one. Times are Unix milliseconds; days are UTC (YYYY-MM-DD).

-- The one row saying which generation serves reads, and which one a running
-- rebuild is filling ('' when none).
CREATE TABLE projection_state (
    id                  INTEGER PRIMARY KEY,
    current_generation  TEXT NOT NULL,
    building_generation TEXT NOT NULL DEFAULT '',
    building_rebuild    TEXT NOT NULL DEFAULT ''
);
INSERT INTO projection_state (id, current_generation) VALUES (1, 'g0');

-- Rebuilds: state 1 running, 2 swapped, 3 failed (RebuildState numbers).
CREATE TABLE rebuilds (
    id           TEXT PRIMARY KEY,
    generation   TEXT NOT NULL,
    state        INTEGER NOT NULL,
    since        BIGINT NOT NULL DEFAULT 0,
    has_since    INTEGER NOT NULL DEFAULT 0,
    consumed     BIGINT NOT NULL DEFAULT 0,
    lag          BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT NOT NULL DEFAULT 0,
    heartbeat_at BIGINT NOT NULL,
    error        TEXT NOT NULL DEFAULT '',
    requested_by TEXT NOT NULL
);

-- Events applied to a generation: the per-generation replay guard (the live
-- consumer and a rebuild both write a building generation).
CREATE TABLE applied_events (
    generation TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (generation, event_id)
);

-- Newest event time applied to a generation.
CREATE TABLE generation_info (
    generation TEXT PRIMARY KEY,
    as_of      BIGINT NOT NULL
);

CREATE TABLE event_counts (
    generation TEXT NOT NULL,
    day        TEXT NOT NULL,
    event_type TEXT NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (generation, day, event_type)
);

-- Learner activity per day (DAU/WAU/MAU, retention, active days).
CREATE TABLE active_days (
    generation TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    day        TEXT NOT NULL,
    PRIMARY KEY (generation, user_id, day)
);
CREATE INDEX active_days_day ON active_days (generation, day);

-- Per-day quiz and answer totals (pass rate, accuracy).
CREATE TABLE daily_stats (
    generation        TEXT NOT NULL,
    day               TEXT NOT NULL,
    quizzes_submitted BIGINT NOT NULL DEFAULT 0,
    quizzes_passed    BIGINT NOT NULL DEFAULT 0,
    answers_graded    BIGINT NOT NULL DEFAULT 0,
    answers_correct   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (generation, day)
);

-- Lesson attempts for the funnel: started_day '' until LessonStarted is seen
-- (LessonCompleted travels on another topic and may arrive first).
CREATE TABLE lesson_attempts (
    generation  TEXT NOT NULL,
    attempt_id  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    started_day TEXT NOT NULL DEFAULT '',
    completed   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (generation, attempt_id)
);
CREATE INDEX lesson_attempts_started ON lesson_attempts (generation, started_day);

-- Registration cohorts.
CREATE TABLE cohorts (
    generation TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    cohort_day TEXT NOT NULL,
    PRIMARY KEY (generation, user_id)
);
CREATE INDEX cohorts_day ON cohorts (generation, cohort_day);

CREATE TABLE learner_summaries (
    generation         TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    lessons_started    BIGINT NOT NULL DEFAULT 0,
    lessons_completed  BIGINT NOT NULL DEFAULT 0,
    exercises_answered BIGINT NOT NULL DEFAULT 0,
    exercises_correct  BIGINT NOT NULL DEFAULT 0,
    quiz_questions     BIGINT NOT NULL DEFAULT 0,
    quiz_correct       BIGINT NOT NULL DEFAULT 0,
    quizzes_submitted  BIGINT NOT NULL DEFAULT 0,
    quizzes_passed     BIGINT NOT NULL DEFAULT 0,
    reviews            BIGINT NOT NULL DEFAULT 0,
    first_active_at    BIGINT NOT NULL DEFAULT 0,
    last_active_at     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (generation, user_id)
);

-- Deleted users (not per generation): their rows carry a random pseudonym
-- instead of their id, so aggregates keep their counts, and their late or
-- replayed events are projected under the pseudonym, never under the id.
CREATE TABLE erased_learners (
    user_id   TEXT PRIMARY KEY,
    pseudonym TEXT NOT NULL,
    erased_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE erased_learners;
DROP TABLE learner_summaries;
DROP TABLE cohorts;
DROP TABLE lesson_attempts;
DROP TABLE daily_stats;
DROP TABLE active_days;
DROP TABLE event_counts;
DROP TABLE generation_info;
DROP TABLE applied_events;
DROP TABLE rebuilds;
DROP TABLE projection_state;
