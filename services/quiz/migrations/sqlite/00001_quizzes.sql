-- +goose Up
-- The SQLite and PostgreSQL migrations are the same but for the byte type
-- (BLOB here, BYTEA there); keep them in step. Times are Unix milliseconds.

-- quizzes: one row per quiz. quiz_key is the stable key of an imported quiz
-- (NULL for a quiz created through the API); sort_key orders lists in course
-- order: "<course_id>/<unit_id>/<lesson_id or ~>" (a unit quiz after the
-- quizzes of its lessons).
CREATE TABLE quizzes (
    id                    TEXT PRIMARY KEY,
    quiz_key              TEXT UNIQUE,
    course_id             TEXT NOT NULL,
    unit_id               TEXT NOT NULL,
    lesson_id             TEXT NOT NULL DEFAULT '',
    title                 TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    time_limit_seconds    INTEGER NOT NULL DEFAULT 300,
    max_attempts          INTEGER NOT NULL DEFAULT 3,
    passing_score_percent INTEGER NOT NULL DEFAULT 70,
    sort_key              TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX quizzes_sort ON quizzes (sort_key, id);

-- quiz_covered_lessons: the lessons a learner must complete to unlock a quiz
-- (already resolved: a lesson quiz created without any covers its lesson).
CREATE TABLE quiz_covered_lessons (
    quiz_id   TEXT NOT NULL REFERENCES quizzes(id) ON DELETE CASCADE,
    lesson_id TEXT NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (quiz_id, lesson_id)
);
CREATE INDEX quiz_covered_lessons_lesson ON quiz_covered_lessons (lesson_id);

-- questions: a quiz's questions, in order; exercise is the binary protobuf
-- encoding of puchi.lesson.v1.Exercise, answers included.
CREATE TABLE questions (
    id       TEXT PRIMARY KEY,
    quiz_id  TEXT NOT NULL REFERENCES quizzes(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    exercise BLOB NOT NULL,
    UNIQUE (quiz_id, position)
);

-- attempts: one learner's go at a quiz. submitted_at, score_percent, passed
-- and result (the binary puchi.quiz.v1.QuizResult) are set on submission.
-- The unique (user_id, quiz_id, attempt_number) makes concurrent starts
-- produce one attempt.
CREATE TABLE attempts (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    quiz_id        TEXT NOT NULL REFERENCES quizzes(id) ON DELETE CASCADE,
    attempt_number INTEGER NOT NULL,
    started_at     BIGINT NOT NULL,
    deadline       BIGINT NOT NULL,
    submitted_at   BIGINT,
    score_percent  INTEGER,
    passed         BOOLEAN NOT NULL DEFAULT FALSE,
    result         BLOB,
    UNIQUE (user_id, quiz_id, attempt_number)
);

-- completed_lessons: lessons each learner has completed, from LessonCompleted
-- on lesson-events; it drives the unlock rule.
CREATE TABLE completed_lessons (
    user_id      TEXT NOT NULL,
    lesson_id    TEXT NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, lesson_id)
);

-- +goose Down
DROP TABLE completed_lessons;
DROP TABLE attempts;
DROP TABLE questions;
DROP TABLE quiz_covered_lessons;
DROP TABLE quizzes;
