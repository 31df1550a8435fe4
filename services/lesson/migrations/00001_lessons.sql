-- +goose Up
-- Portable between SQLite and PostgreSQL: TEXT ids (UUIDv7), BIGINT Unix-millisecond
-- times, BYTEA for binary protobuf (a BLOB in SQLite).

-- Content: courses → units → lessons → words and exercises.
CREATE TABLE courses (
    id              TEXT PRIMARY KEY,
    slug            TEXT UNIQUE,            -- set for imported courses only (NULLs do not collide)
    title           TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    source_language TEXT NOT NULL,
    target_language TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE TABLE units (
    id          TEXT PRIMARY KEY,
    course_id   TEXT NOT NULL REFERENCES courses(id),
    import_key  TEXT,                       -- the bundle key of an imported unit
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL,           -- from 1 within the course
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX units_course ON units (course_id, position);
CREATE UNIQUE INDEX units_import_key ON units (course_id, import_key);

CREATE TABLE lessons (
    id           TEXT PRIMARY KEY,
    course_id    TEXT NOT NULL REFERENCES courses(id),
    unit_id      TEXT NOT NULL REFERENCES units(id),
    import_key   TEXT,                      -- the bundle key of an imported lesson (unique in its course)
    title        TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    position     INTEGER NOT NULL,          -- from 1 within the unit
    xp_reward    INTEGER NOT NULL,
    state        TEXT NOT NULL,             -- draft | published | archived
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    published_at BIGINT
);
CREATE INDEX lessons_unit ON lessons (unit_id, position);
CREATE INDEX lessons_course_state ON lessons (course_id, state);
CREATE UNIQUE INDEX lessons_import_key ON lessons (course_id, import_key);

CREATE TABLE lesson_words (
    lesson_id           TEXT NOT NULL REFERENCES lessons(id) ON DELETE CASCADE,
    position            INTEGER NOT NULL,
    term                TEXT NOT NULL,
    translation         TEXT NOT NULL,
    part_of_speech      TEXT NOT NULL DEFAULT '',
    example             TEXT NOT NULL DEFAULT '',
    example_translation TEXT NOT NULL DEFAULT '',
    audio_media_id      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (lesson_id, position)
);

-- body is the puchi.lesson.v1.Exercise (with its answers) in binary protobuf; id and
-- position are kept outside it so that they stay the source of truth.
CREATE TABLE exercises (
    id        TEXT PRIMARY KEY,
    lesson_id TEXT NOT NULL REFERENCES lessons(id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    body      BYTEA NOT NULL
);
CREATE INDEX exercises_lesson ON exercises (lesson_id, position);

-- Learners: attempts, their first answers, and first completions.
CREATE TABLE attempts (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL,
    lesson_id        TEXT NOT NULL REFERENCES lessons(id),
    started_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    completed_at     BIGINT,                -- NULL while in progress
    score            INTEGER NOT NULL DEFAULT 0,
    accuracy         DOUBLE PRECISION NOT NULL DEFAULT 0,
    correct_count    INTEGER NOT NULL DEFAULT 0,
    exercise_count   INTEGER NOT NULL DEFAULT 0,
    xp_awarded       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attempts_user_lesson ON attempts (user_id, lesson_id);

-- Only the first answer to an exercise counts: the primary key refuses the others.
-- exercise_id has no foreign key: an exercise removed by its author keeps its answers.
CREATE TABLE attempt_answers (
    attempt_id      TEXT NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    exercise_id     TEXT NOT NULL,
    correct         BOOLEAN NOT NULL,
    expected_answer TEXT NOT NULL,
    explanation     TEXT NOT NULL,
    answer          BYTEA NOT NULL,         -- the puchi.lesson.v1.Answer given
    answered_at     BIGINT NOT NULL,
    PRIMARY KEY (attempt_id, exercise_id)
);

-- One row per learner and lesson: inserting it is what awards the lesson's XP, so
-- the XP is awarded once however many attempts complete, even concurrently.
CREATE TABLE completions (
    user_id      TEXT NOT NULL,
    lesson_id    TEXT NOT NULL REFERENCES lessons(id),
    attempt_id   TEXT NOT NULL,
    xp_awarded   INTEGER NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, lesson_id)
);

-- +goose Down
DROP TABLE completions;
DROP TABLE attempt_answers;
DROP TABLE attempts;
DROP TABLE exercises;
DROP TABLE lesson_words;
DROP TABLE lessons;
DROP TABLE units;
DROP TABLE courses;
