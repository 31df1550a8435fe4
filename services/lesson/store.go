package lesson

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the lesson service's persistence. Writes take the transaction they
// run in (service.go owns transaction boundaries, so that state and outbox rows
// commit together); reads take a db.Querier.
type Store struct{}

var (
	errCourseNotFound  = apperr.NotFound("COURSE_NOT_FOUND", "course not found")
	errUnitNotFound    = apperr.NotFound("UNIT_NOT_FOUND", "unit not found")
	errLessonNotFound  = apperr.NotFound("LESSON_NOT_FOUND", "lesson not found")
	errAttemptNotFound = apperr.NotFound("ATTEMPT_NOT_FOUND", "attempt not found")
)

func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMs(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMs(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMs(v.Int64)
	return &t
}

func nullMs(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

// ---- courses ----

const courseColumns = `id, slug, title, description, source_language, target_language, created_at, updated_at`

func scanCourse(sc interface{ Scan(...any) error }) (Course, error) {
	var c Course
	var slug sql.NullString
	var created, updated int64
	err := sc.Scan(&c.ID, &slug, &c.Title, &c.Description, &c.SourceLanguage, &c.TargetLanguage, &created, &updated)
	c.Slug, c.CreatedAt, c.UpdatedAt = slug.String, fromMs(created), fromMs(updated)
	return c, err
}

// InsertCourse stores a new course; a taken slug is a Conflict.
func (Store) InsertCourse(ctx context.Context, tx *db.Tx, c Course) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO courses (`+courseColumns+`) VALUES (?,?,?,?,?,?,?,?)`,
		c.ID, nullable(c.Slug), c.Title, c.Description, c.SourceLanguage, c.TargetLanguage, ms(c.CreatedAt), ms(c.UpdatedAt))
	if db.IsUniqueViolation(err) {
		return &apperr.Error{Kind: apperr.KindConflict, Reason: "COURSE_SLUG_TAKEN", Message: "a course with this slug already exists", Field: "slug", Cause: err}
	}
	if err != nil {
		return fmt.Errorf("insert course: %w", err)
	}
	return nil
}

// UpdateCourse writes the mutable fields of c.
func (Store) UpdateCourse(ctx context.Context, tx *db.Tx, c Course) error {
	_, err := tx.ExecContext(ctx, `UPDATE courses SET title = ?, description = ?, source_language = ?, target_language = ?,
		updated_at = ? WHERE id = ?`, c.Title, c.Description, c.SourceLanguage, c.TargetLanguage, ms(c.UpdatedAt), c.ID)
	if err != nil {
		return fmt.Errorf("update course: %w", err)
	}
	return nil
}

// CourseByID returns NotFound when there is no such course.
func (Store) CourseByID(ctx context.Context, q db.Querier, id string) (Course, error) {
	c, err := scanCourse(q.QueryRowContext(ctx, `SELECT `+courseColumns+` FROM courses WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Course{}, errCourseNotFound
	}
	if err != nil {
		return Course{}, fmt.Errorf("select course: %w", err)
	}
	return c, nil
}

// CourseBySlug returns NotFound when no course has that slug.
func (Store) CourseBySlug(ctx context.Context, q db.Querier, slug string) (Course, error) {
	c, err := scanCourse(q.QueryRowContext(ctx, `SELECT `+courseColumns+` FROM courses WHERE slug = ?`, slug))
	if errors.Is(err, sql.ErrNoRows) {
		return Course{}, errCourseNotFound
	}
	if err != nil {
		return Course{}, fmt.Errorf("select course by slug: %w", err)
	}
	return c, nil
}

// CourseSummary is a course as a learner lists it.
type CourseSummary struct {
	Course
	UnitCount, LessonCount, CompletedCount int32
}

// ListCourses returns up to limit courses holding at least one published lesson,
// by id after afterID, with userID's count of completed published lessons.
func (Store) ListCourses(ctx context.Context, q db.Querier, userID, afterID string, limit int) ([]CourseSummary, error) {
	rows, err := q.QueryContext(ctx, `SELECT c.id, c.slug, c.title, c.description, c.source_language, c.target_language,
			c.created_at, c.updated_at,
			(SELECT COUNT(DISTINCT l.unit_id) FROM lessons l WHERE l.course_id = c.id AND l.state = 'published'),
			(SELECT COUNT(*) FROM lessons l WHERE l.course_id = c.id AND l.state = 'published'),
			(SELECT COUNT(*) FROM completions k JOIN lessons l ON l.id = k.lesson_id
				WHERE k.user_id = ? AND l.course_id = c.id AND l.state = 'published')
		FROM courses c
		WHERE c.id > ? AND EXISTS (SELECT 1 FROM lessons l WHERE l.course_id = c.id AND l.state = 'published')
		ORDER BY c.id LIMIT ?`, userID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list courses: %w", err)
	}
	defer rows.Close()
	var out []CourseSummary
	for rows.Next() {
		var s CourseSummary
		var slug sql.NullString
		var created, updated int64
		if err := rows.Scan(&s.ID, &slug, &s.Title, &s.Description, &s.SourceLanguage, &s.TargetLanguage, &created, &updated,
			&s.UnitCount, &s.LessonCount, &s.CompletedCount); err != nil {
			return nil, fmt.Errorf("scan course: %w", err)
		}
		s.Slug, s.CreatedAt, s.UpdatedAt = slug.String, fromMs(created), fromMs(updated)
		out = append(out, s)
	}
	return out, rows.Err()
}

// ---- units ----

const unitColumns = `id, course_id, import_key, title, description, position, created_at, updated_at`

func scanUnit(sc interface{ Scan(...any) error }) (Unit, error) {
	var u Unit
	var key sql.NullString
	var created, updated int64
	err := sc.Scan(&u.ID, &u.CourseID, &key, &u.Title, &u.Description, &u.Position, &created, &updated)
	u.Key, u.CreatedAt, u.UpdatedAt = key.String, fromMs(created), fromMs(updated)
	return u, err
}

// InsertUnit stores a new unit.
func (Store) InsertUnit(ctx context.Context, tx *db.Tx, u Unit) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO units (`+unitColumns+`) VALUES (?,?,?,?,?,?,?,?)`,
		u.ID, u.CourseID, nullable(u.Key), u.Title, u.Description, u.Position, ms(u.CreatedAt), ms(u.UpdatedAt))
	if err != nil {
		return fmt.Errorf("insert unit: %w", err)
	}
	return nil
}

// UpdateUnit writes the mutable fields of u (its position included).
func (Store) UpdateUnit(ctx context.Context, tx *db.Tx, u Unit) error {
	_, err := tx.ExecContext(ctx, `UPDATE units SET title = ?, description = ?, position = ?, updated_at = ? WHERE id = ?`,
		u.Title, u.Description, u.Position, ms(u.UpdatedAt), u.ID)
	if err != nil {
		return fmt.Errorf("update unit: %w", err)
	}
	return nil
}

// UnitByID returns NotFound when there is no such unit.
func (Store) UnitByID(ctx context.Context, q db.Querier, id string) (Unit, error) {
	u, err := scanUnit(q.QueryRowContext(ctx, `SELECT `+unitColumns+` FROM units WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Unit{}, errUnitNotFound
	}
	if err != nil {
		return Unit{}, fmt.Errorf("select unit: %w", err)
	}
	return u, nil
}

// UnitsOfCourse returns the course's units in order.
func (Store) UnitsOfCourse(ctx context.Context, q db.Querier, courseID string) ([]Unit, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+unitColumns+` FROM units WHERE course_id = ? ORDER BY position, id`, courseID)
	if err != nil {
		return nil, fmt.Errorf("select units: %w", err)
	}
	defer rows.Close()
	var out []Unit
	for rows.Next() {
		u, err := scanUnit(rows)
		if err != nil {
			return nil, fmt.Errorf("scan unit: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// SetUnitPositions numbers the units ids 1, 2, … in that order.
func (Store) SetUnitPositions(ctx context.Context, tx *db.Tx, ids []string) error {
	return setPositions(ctx, tx, "units", ids)
}

// SetLessonPositions numbers the lessons ids 1, 2, … in that order.
func (Store) SetLessonPositions(ctx context.Context, tx *db.Tx, ids []string) error {
	return setPositions(ctx, tx, "lessons", ids)
}

func setPositions(ctx context.Context, tx *db.Tx, table string, ids []string) error {
	for i, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE `+table+` SET position = ? WHERE id = ? AND position <> ?`, i+1, id, i+1); err != nil {
			return fmt.Errorf("renumber %s: %w", table, err)
		}
	}
	return nil
}

// ---- lessons ----

const lessonColumns = `id, course_id, unit_id, import_key, title, description, position, xp_reward, state,
	created_at, updated_at, published_at`

func scanLesson(sc interface{ Scan(...any) error }) (Lesson, error) {
	var l Lesson
	var key sql.NullString
	var state string
	var created, updated int64
	var published sql.NullInt64
	err := sc.Scan(&l.ID, &l.CourseID, &l.UnitID, &key, &l.Title, &l.Description, &l.Position, &l.XPReward, &state,
		&created, &updated, &published)
	l.Key, l.State, l.CreatedAt, l.UpdatedAt, l.PublishedAt = key.String, State(state), fromMs(created), fromMs(updated), fromNullMs(published)
	return l, err
}

// InsertLesson stores a new lesson with its words and exercises.
func (s Store) InsertLesson(ctx context.Context, tx *db.Tx, l Lesson) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO lessons (`+lessonColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		l.ID, l.CourseID, l.UnitID, nullable(l.Key), l.Title, l.Description, l.Position, l.XPReward, string(l.State),
		ms(l.CreatedAt), ms(l.UpdatedAt), nullMs(l.PublishedAt))
	if err != nil {
		return fmt.Errorf("insert lesson: %w", err)
	}
	if err := s.ReplaceWords(ctx, tx, l.ID, l.Words); err != nil {
		return err
	}
	return s.ReplaceExercises(ctx, tx, l.ID, l.Exercises)
}

// UpdateLesson writes the lesson row of l (not its words or exercises).
func (Store) UpdateLesson(ctx context.Context, tx *db.Tx, l Lesson) error {
	_, err := tx.ExecContext(ctx, `UPDATE lessons SET unit_id = ?, title = ?, description = ?, position = ?, xp_reward = ?,
		state = ?, updated_at = ?, published_at = ? WHERE id = ?`,
		l.UnitID, l.Title, l.Description, l.Position, l.XPReward, string(l.State), ms(l.UpdatedAt), nullMs(l.PublishedAt), l.ID)
	if err != nil {
		return fmt.Errorf("update lesson: %w", err)
	}
	return nil
}

// ReplaceWords makes words the lesson's words.
func (Store) ReplaceWords(ctx context.Context, tx *db.Tx, lessonID string, words []Word) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM lesson_words WHERE lesson_id = ?`, lessonID); err != nil {
		return fmt.Errorf("delete words: %w", err)
	}
	for i, w := range words {
		if _, err := tx.ExecContext(ctx, `INSERT INTO lesson_words (lesson_id, position, term, translation, part_of_speech,
			example, example_translation, audio_media_id) VALUES (?,?,?,?,?,?,?,?)`,
			lessonID, i+1, w.Term, w.Translation, w.PartOfSpeech, w.Example, w.ExampleTranslation, w.AudioMediaID); err != nil {
			return fmt.Errorf("insert word: %w", err)
		}
	}
	return nil
}

// ReplaceExercises makes exs (ids and positions set) the lesson's exercises.
// Exercises keep their ids, so learners' answers to them stay attached.
func (Store) ReplaceExercises(ctx context.Context, tx *db.Tx, lessonID string, exs []*lessonv1.Exercise) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM exercises WHERE lesson_id = ?`, lessonID); err != nil {
		return fmt.Errorf("delete exercises: %w", err)
	}
	for _, ex := range exs {
		body, err := proto.Marshal(ex)
		if err != nil {
			return fmt.Errorf("encode exercise: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO exercises (id, lesson_id, position, body) VALUES (?,?,?,?)`,
			ex.GetId(), lessonID, ex.GetPosition(), body); err != nil {
			return fmt.Errorf("insert exercise: %w", err)
		}
	}
	return nil
}

// LessonByID returns the lesson with its words and exercises, NotFound when there
// is no such lesson.
func (s Store) LessonByID(ctx context.Context, q db.Querier, id string) (Lesson, error) {
	l, err := scanLesson(q.QueryRowContext(ctx, `SELECT `+lessonColumns+` FROM lessons WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Lesson{}, errLessonNotFound
	}
	if err != nil {
		return Lesson{}, fmt.Errorf("select lesson: %w", err)
	}
	if l.Words, err = s.words(ctx, q, id); err != nil {
		return Lesson{}, err
	}
	if l.Exercises, err = s.exercises(ctx, q, id); err != nil {
		return Lesson{}, err
	}
	return l, nil
}

func (Store) words(ctx context.Context, q db.Querier, lessonID string) ([]Word, error) {
	rows, err := q.QueryContext(ctx, `SELECT term, translation, part_of_speech, example, example_translation, audio_media_id
		FROM lesson_words WHERE lesson_id = ? ORDER BY position`, lessonID)
	if err != nil {
		return nil, fmt.Errorf("select words: %w", err)
	}
	defer rows.Close()
	var out []Word
	for rows.Next() {
		var w Word
		if err := rows.Scan(&w.Term, &w.Translation, &w.PartOfSpeech, &w.Example, &w.ExampleTranslation, &w.AudioMediaID); err != nil {
			return nil, fmt.Errorf("scan word: %w", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

func (Store) exercises(ctx context.Context, q db.Querier, lessonID string) ([]*lessonv1.Exercise, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, position, body FROM exercises WHERE lesson_id = ? ORDER BY position`, lessonID)
	if err != nil {
		return nil, fmt.Errorf("select exercises: %w", err)
	}
	defer rows.Close()
	var out []*lessonv1.Exercise
	for rows.Next() {
		var id string
		var pos int32
		var body []byte
		if err := rows.Scan(&id, &pos, &body); err != nil {
			return nil, fmt.Errorf("scan exercise: %w", err)
		}
		ex := &lessonv1.Exercise{}
		if err := proto.Unmarshal(body, ex); err != nil {
			return nil, fmt.Errorf("decode exercise %s: %w", id, err)
		}
		ex.Id, ex.Position = id, pos
		out = append(out, ex)
	}
	return out, rows.Err()
}

// LessonIDsOfUnit returns the ids of every lesson of the unit, whatever its
// state, in order.
func (Store) LessonIDsOfUnit(ctx context.Context, q db.Querier, unitID string) ([]string, error) {
	return ids(ctx, q, `SELECT id FROM lessons WHERE unit_id = ? ORDER BY position, id`, unitID)
}

// LessonsOfCourse returns every lesson row of the course (without words or
// exercises), in no particular order.
func (Store) LessonsOfCourse(ctx context.Context, q db.Querier, courseID string) ([]Lesson, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+lessonColumns+` FROM lessons WHERE course_id = ?`, courseID)
	if err != nil {
		return nil, fmt.Errorf("select lessons: %w", err)
	}
	defer rows.Close()
	var out []Lesson
	for rows.Next() {
		l, err := scanLesson(rows)
		if err != nil {
			return nil, fmt.Errorf("scan lesson: %w", err)
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// ExerciseIDs returns the ids of the lesson's exercises, in order.
func (Store) ExerciseIDs(ctx context.Context, q db.Querier, lessonID string) ([]string, error) {
	return ids(ctx, q, `SELECT id FROM exercises WHERE lesson_id = ? ORDER BY position`, lessonID)
}

// PublishedOrder returns the ids of the course's published lessons in course
// order: unit position, then lesson position.
func (Store) PublishedOrder(ctx context.Context, q db.Querier, courseID string) ([]string, error) {
	return ids(ctx, q, `SELECT l.id FROM lessons l JOIN units u ON u.id = l.unit_id
		WHERE l.course_id = ? AND l.state = 'published' ORDER BY u.position, u.id, l.position, l.id`, courseID)
}

func ids(ctx context.Context, q db.Querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select ids: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan id: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// OutlineLesson is a published lesson in a course outline.
type OutlineLesson struct {
	ID, UnitID, Title, Description string
	Position, XPReward             int32
	WordCount, ExerciseCount       int32
}

// PublishedLessons returns the course's published lessons in course order, with
// their word and exercise counts.
func (Store) PublishedLessons(ctx context.Context, q db.Querier, courseID string) ([]OutlineLesson, error) {
	rows, err := q.QueryContext(ctx, `SELECT l.id, l.unit_id, l.title, l.description, l.position, l.xp_reward,
			(SELECT COUNT(*) FROM lesson_words w WHERE w.lesson_id = l.id),
			(SELECT COUNT(*) FROM exercises e WHERE e.lesson_id = l.id)
		FROM lessons l JOIN units u ON u.id = l.unit_id
		WHERE l.course_id = ? AND l.state = 'published' ORDER BY u.position, u.id, l.position, l.id`, courseID)
	if err != nil {
		return nil, fmt.Errorf("select outline: %w", err)
	}
	defer rows.Close()
	var out []OutlineLesson
	for rows.Next() {
		var o OutlineLesson
		if err := rows.Scan(&o.ID, &o.UnitID, &o.Title, &o.Description, &o.Position, &o.XPReward, &o.WordCount, &o.ExerciseCount); err != nil {
			return nil, fmt.Errorf("scan outline: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// LearnerState returns which lessons of the course userID has completed and
// which have an attempt in progress.
func (Store) LearnerState(ctx context.Context, q db.Querier, userID, courseID string) (completed, open map[string]bool, err error) {
	done, err := ids(ctx, q, `SELECT k.lesson_id FROM completions k JOIN lessons l ON l.id = k.lesson_id
		WHERE k.user_id = ? AND l.course_id = ?`, userID, courseID)
	if err != nil {
		return nil, nil, err
	}
	started, err := ids(ctx, q, `SELECT DISTINCT a.lesson_id FROM attempts a JOIN lessons l ON l.id = a.lesson_id
		WHERE a.user_id = ? AND l.course_id = ? AND a.completed_at IS NULL`, userID, courseID)
	if err != nil {
		return nil, nil, err
	}
	return set(done), set(started), nil
}

func set(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// ---- attempts ----

const attemptColumns = `id, user_id, lesson_id, started_at, completed_at, score, accuracy, correct_count,
	exercise_count, xp_awarded`

// InsertAttempt stores a new attempt in progress.
func (Store) InsertAttempt(ctx context.Context, tx *db.Tx, a Attempt) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO attempts (id, user_id, lesson_id, started_at, last_activity_at, exercise_count)
		VALUES (?,?,?,?,?,?)`, a.ID, a.UserID, a.LessonID, ms(a.StartedAt), ms(a.StartedAt), a.ExerciseCount)
	if err != nil {
		return fmt.Errorf("insert attempt: %w", err)
	}
	return nil
}

// AttemptByID returns NotFound when there is no such attempt.
func (Store) AttemptByID(ctx context.Context, q db.Querier, id string) (Attempt, error) {
	var a Attempt
	var started int64
	var completed sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT `+attemptColumns+` FROM attempts WHERE id = ?`, id).Scan(
		&a.ID, &a.UserID, &a.LessonID, &started, &completed, &a.Score, &a.Accuracy, &a.CorrectCount, &a.ExerciseCount, &a.XPAwarded)
	if errors.Is(err, sql.ErrNoRows) {
		return Attempt{}, errAttemptNotFound
	}
	if err != nil {
		return Attempt{}, fmt.Errorf("select attempt: %w", err)
	}
	a.StartedAt, a.CompletedAt = fromMs(started), fromNullMs(completed)
	return a, nil
}

// TouchOpenAttempt records activity on an attempt in progress and reports false
// when it is completed. On PostgreSQL the row stays locked until the transaction
// ends, so a concurrent completion waits for the answer being recorded.
func (Store) TouchOpenAttempt(ctx context.Context, tx *db.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE attempts SET last_activity_at = ? WHERE id = ? AND completed_at IS NULL`, ms(now), id)
	if err != nil {
		return false, fmt.Errorf("touch attempt: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ClaimCompletion marks the attempt completed at now, only if it was in progress;
// it reports false when another call completed it first.
func (Store) ClaimCompletion(ctx context.Context, tx *db.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE attempts SET completed_at = ?, last_activity_at = ? WHERE id = ? AND completed_at IS NULL`,
		ms(now), ms(now), id)
	if err != nil {
		return false, fmt.Errorf("complete attempt: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SaveOutcome writes the score and XP of a completed attempt.
func (Store) SaveOutcome(ctx context.Context, tx *db.Tx, a Attempt) error {
	_, err := tx.ExecContext(ctx, `UPDATE attempts SET score = ?, accuracy = ?, correct_count = ?, exercise_count = ?,
		xp_awarded = ? WHERE id = ?`, a.Score, a.Accuracy, a.CorrectCount, a.ExerciseCount, a.XPAwarded, a.ID)
	if err != nil {
		return fmt.Errorf("save attempt outcome: %w", err)
	}
	return nil
}

// InsertFirstAnswer records the grading of an answer unless the exercise was
// already answered in the attempt; it reports whether this was the first answer.
func (Store) InsertFirstAnswer(ctx context.Context, tx *db.Tx, attemptID string, r AnswerRecord, answer []byte) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO attempt_answers (attempt_id, exercise_id, correct, expected_answer, explanation,
		answer, answered_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (attempt_id, exercise_id) DO NOTHING`,
		attemptID, r.ExerciseID, r.Correct, r.Expected, r.Explanation, answer, ms(r.AnsweredAt))
	if err != nil {
		return false, fmt.Errorf("insert answer: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Answers returns the first answers of an attempt in exercise order (answers to
// exercises removed since come last).
func (Store) Answers(ctx context.Context, q db.Querier, attemptID string) ([]AnswerRecord, error) {
	rows, err := q.QueryContext(ctx, `SELECT a.exercise_id, a.correct, a.expected_answer, a.explanation, a.answered_at
		FROM attempt_answers a LEFT JOIN exercises e ON e.id = a.exercise_id
		WHERE a.attempt_id = ? ORDER BY CASE WHEN e.position IS NULL THEN 1 ELSE 0 END, e.position, a.answered_at, a.exercise_id`, attemptID)
	if err != nil {
		return nil, fmt.Errorf("select answers: %w", err)
	}
	defer rows.Close()
	var out []AnswerRecord
	for rows.Next() {
		var r AnswerRecord
		var at int64
		if err := rows.Scan(&r.ExerciseID, &r.Correct, &r.Expected, &r.Explanation, &at); err != nil {
			return nil, fmt.Errorf("scan answer: %w", err)
		}
		r.AnsweredAt = fromMs(at)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Tally counts the lesson's exercises and, among them, those the attempt
// answered and answered correctly first.
func (Store) Tally(ctx context.Context, q db.Querier, attemptID, lessonID string) (exercises, answered, correct int, err error) {
	err = q.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM exercises WHERE lesson_id = ?),
			(SELECT COUNT(*) FROM attempt_answers a JOIN exercises e ON e.id = a.exercise_id
				WHERE a.attempt_id = ? AND e.lesson_id = ?),
			(SELECT COUNT(*) FROM attempt_answers a JOIN exercises e ON e.id = a.exercise_id
				WHERE a.attempt_id = ? AND e.lesson_id = ? AND a.correct)`,
		lessonID, attemptID, lessonID, attemptID, lessonID).Scan(&exercises, &answered, &correct)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("tally attempt: %w", err)
	}
	return exercises, answered, correct, nil
}

// InsertCompletion records the learner's first completion of a lesson; it
// reports false when the learner had completed it before (or a concurrent
// completion did first), and nothing is written then.
func (Store) InsertCompletion(ctx context.Context, tx *db.Tx, a Attempt, xp int32, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO completions (user_id, lesson_id, attempt_id, xp_awarded, completed_at)
		VALUES (?,?,?,?,?) ON CONFLICT (user_id, lesson_id) DO NOTHING`, a.UserID, a.LessonID, a.ID, xp, ms(at))
	if err != nil {
		return false, fmt.Errorf("insert completion: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteLearner erases everything the service holds about a learner: attempts,
// answers, completions and stored responses of retried requests.
func (Store) DeleteLearner(ctx context.Context, tx *db.Tx, userID string) error {
	for _, q := range []string{
		`DELETE FROM attempt_answers WHERE attempt_id IN (SELECT id FROM attempts WHERE user_id = ?)`,
		`DELETE FROM attempts WHERE user_id = ?`,
		`DELETE FROM completions WHERE user_id = ?`,
		`DELETE FROM idempotency_keys WHERE user_id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, userID); err != nil {
			return fmt.Errorf("erase learner (%s): %w", strings.Fields(q)[2], err)
		}
	}
	return nil
}
