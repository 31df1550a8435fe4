-- +goose Up
-- Everything here is built from other services' events, plus the learners' own
-- preferences and read marks. Times are Unix milliseconds (BIGINT); dates are the
-- learner's local days (YYYY-MM-DD TEXT); times of day are "HH:MM" TEXT.

-- One row per learner the service has heard of: profile (user-events),
-- preferences, what the reminder needs, and the per-learner notification
-- counter. Every notification insert first bumps next_seq, which locks the row
-- until commit: a learner's notifications therefore commit in seq order, and a
-- stream that has sent seq n never misses a later commit with a smaller seq.
CREATE TABLE learners (
    user_id            TEXT PRIMARY KEY,
    timezone           TEXT NOT NULL DEFAULT 'UTC',
    profile_at         BIGINT NOT NULL DEFAULT 0,   -- time of the profile event applied last
    reminder_time      TEXT NOT NULL DEFAULT '19:00',
    quiet_start        TEXT NOT NULL DEFAULT '',
    quiet_end          TEXT NOT NULL DEFAULT '',
    prefs_updated_at   BIGINT NOT NULL DEFAULT 0,   -- 0: the defaults
    last_activity_date TEXT NOT NULL DEFAULT '',    -- latest local day with learning activity
    streak_days        INTEGER NOT NULL DEFAULT 0,  -- streak length on streak_date (StreakExtended)
    streak_date        TEXT NOT NULL DEFAULT '',
    last_reminder_date TEXT NOT NULL DEFAULT '',
    next_seq           BIGINT NOT NULL DEFAULT 0
);

-- Muted notification types (NotificationType numbers); absent means on.
CREATE TABLE muted_types (
    user_id TEXT NOT NULL,
    type    INTEGER NOT NULL,
    PRIMARY KEY (user_id, type)
);

-- The inbox. seq orders a learner's notifications (see learners.next_seq).
-- source_event_id is the triggering event's ce_id (NULL for the streak
-- reminder, which reminders dedupes): one notification per event and learner,
-- whichever consumer group delivers it and however often. A LessonPublished
-- fans out to every follower of the course, hence the pair.
-- silent: created during quiet hours, kept in the inbox but never pushed live.
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    type            INTEGER NOT NULL,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    read_at         BIGINT,
    source_event_id TEXT,
    silent          INTEGER NOT NULL DEFAULT 0,
    UNIQUE (source_event_id, user_id),
    UNIQUE (user_id, seq)
);
CREATE INDEX notifications_unread ON notifications (user_id, read_at);
CREATE INDEX notifications_created ON notifications (user_id, created_at);

-- One streak reminder per learner and local day, however many instances run
-- the reminder loop.
CREATE TABLE reminders (
    user_id         TEXT NOT NULL,
    local_date      TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    sent_at         BIGINT NOT NULL,
    PRIMARY KEY (user_id, local_date)
);

-- Courses a learner follows: they completed a lesson of it or took its quiz
-- (LessonCompleted, QuizSubmitted carry the course), or started one of its
-- lessons (LessonStarted carries the lesson; lesson_courses maps it).
CREATE TABLE follows (
    user_id   TEXT NOT NULL,
    course_id TEXT NOT NULL,
    PRIMARY KEY (user_id, course_id)
);
CREATE INDEX follows_course ON follows (course_id);

CREATE TABLE started_lessons (
    user_id   TEXT NOT NULL,
    lesson_id TEXT NOT NULL,
    PRIMARY KEY (user_id, lesson_id)
);
CREATE INDEX started_lessons_lesson ON started_lessons (lesson_id);

-- Lesson → course, from LessonPublished.
CREATE TABLE lesson_courses (
    lesson_id TEXT PRIMARY KEY,
    course_id TEXT NOT NULL
);
CREATE INDEX lesson_courses_course ON lesson_courses (course_id);

-- Ids of deleted users (the id only), so that their events still in flight do
-- not bring anything back after the erasure.
CREATE TABLE erased_learners (
    user_id   TEXT PRIMARY KEY,
    erased_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE erased_learners;
DROP TABLE lesson_courses;
DROP TABLE started_lessons;
DROP TABLE follows;
DROP TABLE reminders;
DROP TABLE notifications;
DROP TABLE muted_types;
DROP TABLE learners;
