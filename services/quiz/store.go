package quiz

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
	"github.com/puchi-dev/puchi/platform/page"
)

// Store is the quiz service's persistence. Writes take the transaction they
// run in (service.go owns the boundaries, so that state and outbox rows commit
// together); reads take a db.Querier.
type Store struct{}

var errQuizNotFound = apperr.NotFound("QUIZ_NOT_FOUND", "quiz not found")

// errAttemptNotFound is also what another learner's attempt looks like.
var errAttemptNotFound = apperr.NotFound("QUIZ_ATTEMPT_NOT_FOUND", "quiz attempt not found")

const quizColumns = `id, quiz_key, course_id, unit_id, lesson_id, title, description, time_limit_seconds,
	max_attempts, passing_score_percent, created_at, updated_at`

// InsertQuiz stores a new quiz with its covered lessons and questions (whose
// ids must be set).
func (s Store) InsertQuiz(ctx context.Context, tx *db.Tx, q Quiz) error {
	var key any
	if q.Key != "" {
		key = q.Key
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO quizzes (`+quizColumns+`, sort_key) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		q.ID, key, q.CourseID, q.UnitID, q.LessonID, q.Title, q.Description, q.TimeLimitSeconds,
		q.MaxAttempts, q.PassingScorePercent, q.CreatedAt.UnixMilli(), q.UpdatedAt.UnixMilli(), q.SortKey())
	if db.IsUniqueViolation(err) {
		return &apperr.Error{Kind: apperr.KindConflict, Reason: "QUIZ_KEY_TAKEN", Message: "a quiz with this key already exists", Field: "key"}
	}
	if err != nil {
		return fmt.Errorf("insert quiz: %w", err)
	}
	if err := s.replaceCovered(ctx, tx, q); err != nil {
		return err
	}
	for _, ex := range q.Questions {
		if err := insertQuestion(ctx, tx, q.ID, ex); err != nil {
			return err
		}
	}
	return nil
}

// ReplaceQuiz overwrites an existing quiz's settings, covered lessons and
// questions. Questions are replaced position by position: a question at a
// position that existed keeps its id (set on q.Questions here), new positions
// get the ids already on q.Questions, positions beyond the new count go.
func (s Store) ReplaceQuiz(ctx context.Context, tx *db.Tx, q Quiz) error {
	_, err := tx.ExecContext(ctx, `UPDATE quizzes SET course_id = ?, unit_id = ?, lesson_id = ?, title = ?, description = ?,
		time_limit_seconds = ?, max_attempts = ?, passing_score_percent = ?, sort_key = ?, updated_at = ? WHERE id = ?`,
		q.CourseID, q.UnitID, q.LessonID, q.Title, q.Description, q.TimeLimitSeconds, q.MaxAttempts,
		q.PassingScorePercent, q.SortKey(), q.UpdatedAt.UnixMilli(), q.ID)
	if err != nil {
		return fmt.Errorf("update quiz: %w", err)
	}
	if err := s.replaceCovered(ctx, tx, q); err != nil {
		return err
	}
	existing, err := questionIDsByPosition(ctx, tx, q.ID)
	if err != nil {
		return err
	}
	for _, ex := range q.Questions {
		if id, ok := existing[ex.GetPosition()]; ok {
			ex.Id = id
			b, err := proto.Marshal(ex)
			if err != nil {
				return fmt.Errorf("encode question: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE questions SET exercise = ? WHERE id = ?`, b, id); err != nil {
				return fmt.Errorf("update question: %w", err)
			}
			continue
		}
		if err := insertQuestion(ctx, tx, q.ID, ex); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM questions WHERE quiz_id = ? AND position > ?`, q.ID, len(q.Questions)); err != nil {
		return fmt.Errorf("delete questions: %w", err)
	}
	return nil
}

func (Store) replaceCovered(ctx context.Context, tx *db.Tx, q Quiz) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM quiz_covered_lessons WHERE quiz_id = ?`, q.ID); err != nil {
		return fmt.Errorf("delete covered lessons: %w", err)
	}
	for i, id := range q.CoveredLessonIDs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO quiz_covered_lessons (quiz_id, lesson_id, position) VALUES (?,?,?)`,
			q.ID, id, i+1); err != nil {
			return fmt.Errorf("insert covered lesson: %w", err)
		}
	}
	return nil
}

func insertQuestion(ctx context.Context, tx *db.Tx, quizID string, ex *lessonv1.Exercise) error {
	b, err := proto.Marshal(ex)
	if err != nil {
		return fmt.Errorf("encode question: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO questions (id, quiz_id, position, exercise) VALUES (?,?,?,?)`,
		ex.GetId(), quizID, ex.GetPosition(), b); err != nil {
		return fmt.Errorf("insert question: %w", err)
	}
	return nil
}

func questionIDsByPosition(ctx context.Context, q db.Querier, quizID string) (map[int32]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT position, id FROM questions WHERE quiz_id = ?`, quizID)
	if err != nil {
		return nil, fmt.Errorf("select question ids: %w", err)
	}
	defer rows.Close()
	out := map[int32]string{}
	for rows.Next() {
		var pos int32
		var id string
		if err := rows.Scan(&pos, &id); err != nil {
			return nil, fmt.Errorf("scan question id: %w", err)
		}
		out[pos] = id
	}
	return out, rows.Err()
}

// QuizIDByKey returns the id of the quiz with key, or "" when there is none.
func (Store) QuizIDByKey(ctx context.Context, q db.Querier, key string) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM quizzes WHERE quiz_key = ?`, key).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("select quiz by key: %w", err)
	}
	return id, nil
}

// QuizByID returns a quiz with its covered lessons and questions, or NotFound.
func (s Store) QuizByID(ctx context.Context, q db.Querier, id string) (Quiz, error) {
	row := q.QueryRowContext(ctx, `SELECT `+quizColumns+` FROM quizzes WHERE id = ?`, id)
	qz, err := scanQuiz(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Quiz{}, errQuizNotFound
	}
	if err != nil {
		return Quiz{}, err
	}
	covered, err := s.CoveredLessons(ctx, q, []string{id})
	if err != nil {
		return Quiz{}, err
	}
	qz.CoveredLessonIDs = covered[id]
	if qz.CoveredLessonIDs == nil {
		qz.CoveredLessonIDs = []string{}
	}
	if qz.Questions, err = questions(ctx, q, id); err != nil {
		return Quiz{}, err
	}
	qz.QuestionCount = int32(len(qz.Questions))
	return qz, nil
}

func scanQuiz(scan func(...any) error, extra ...any) (Quiz, error) {
	var qz Quiz
	var key sql.NullString
	var created, updated int64
	dest := append([]any{&qz.ID, &key, &qz.CourseID, &qz.UnitID, &qz.LessonID, &qz.Title, &qz.Description,
		&qz.TimeLimitSeconds, &qz.MaxAttempts, &qz.PassingScorePercent, &created, &updated}, extra...)
	if err := scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Quiz{}, err
		}
		return Quiz{}, fmt.Errorf("scan quiz: %w", err)
	}
	qz.Key = key.String
	qz.CreatedAt, qz.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return qz, nil
}

func questions(ctx context.Context, q db.Querier, quizID string) ([]*lessonv1.Exercise, error) {
	rows, err := q.QueryContext(ctx, `SELECT id, position, exercise FROM questions WHERE quiz_id = ? ORDER BY position`, quizID)
	if err != nil {
		return nil, fmt.Errorf("select questions: %w", err)
	}
	defer rows.Close()
	var out []*lessonv1.Exercise
	for rows.Next() {
		var id string
		var pos int32
		var b []byte
		if err := rows.Scan(&id, &pos, &b); err != nil {
			return nil, fmt.Errorf("scan question: %w", err)
		}
		ex := &lessonv1.Exercise{}
		if err := proto.Unmarshal(b, ex); err != nil {
			return nil, fmt.Errorf("decode question %s: %w", id, err)
		}
		ex.Id, ex.Position = id, pos
		out = append(out, ex)
	}
	return out, rows.Err()
}

// ListFilter selects quizzes; empty fields match any.
type ListFilter struct{ CourseID, UnitID, LessonID string }

// ListQuizzes returns up to limit quizzes after cursor in course order (see
// [Quiz.SortKey]), without their questions but with QuestionCount.
func (Store) ListQuizzes(ctx context.Context, q db.Querier, f ListFilter, after page.Cursor, limit int) ([]Quiz, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{{"course_id", f.CourseID}, {"unit_id", f.UnitID}, {"lesson_id", f.LessonID}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if after.Key != "" || after.ID != "" {
		where = append(where, "(sort_key > ? OR (sort_key = ? AND id > ?))")
		args = append(args, after.Key, after.Key, after.ID)
	}
	query := `SELECT ` + quizColumns + `, (SELECT count(*) FROM questions qs WHERE qs.quiz_id = quizzes.id) FROM quizzes`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY sort_key, id LIMIT ?`
	args = append(args, limit)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list quizzes: %w", err)
	}
	defer rows.Close()
	var out []Quiz
	for rows.Next() {
		var n int64
		qz, err := scanQuiz(rows.Scan, &n)
		if err != nil {
			return nil, err
		}
		qz.QuestionCount = int32(n)
		out = append(out, qz)
	}
	return out, rows.Err()
}

// CoveredLessons returns quiz id → covered lesson ids, in order.
func (Store) CoveredLessons(ctx context.Context, q db.Querier, quizIDs []string) (map[string][]string, error) {
	out := make(map[string][]string, len(quizIDs))
	if len(quizIDs) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT quiz_id, lesson_id FROM quiz_covered_lessons WHERE quiz_id IN (`+placeholders(len(quizIDs))+`)
		ORDER BY quiz_id, position`, anys(quizIDs)...)
	if err != nil {
		return nil, fmt.Errorf("select covered lessons: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var quiz, lesson string
		if err := rows.Scan(&quiz, &lesson); err != nil {
			return nil, fmt.Errorf("scan covered lesson: %w", err)
		}
		out[quiz] = append(out[quiz], lesson)
	}
	return out, rows.Err()
}

// CompletedAmong returns which of lessonIDs the user has completed.
func (Store) CompletedAmong(ctx context.Context, q db.Querier, userID string, lessonIDs []string) (map[string]bool, error) {
	out := make(map[string]bool, len(lessonIDs))
	if len(lessonIDs) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT lesson_id FROM completed_lessons WHERE user_id = ? AND lesson_id IN (`+
		placeholders(len(lessonIDs))+`)`, append([]any{userID}, anys(lessonIDs)...)...)
	if err != nil {
		return nil, fmt.Errorf("select completed lessons: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan completed lesson: %w", err)
		}
		out[id] = true
	}
	return out, rows.Err()
}

// Stats is a learner's record at one quiz.
type Stats struct {
	Used          int32  // attempts started
	BestScore     int32  // best score of the submitted attempts, 0 when none
	Passed        bool   // some attempt passed
	OpenAttemptID string // an attempt neither submitted nor past its deadline
}

// AttemptStats returns quiz id → the user's stats, for the quizzes they have
// attempted among quizIDs.
func (Store) AttemptStats(ctx context.Context, q db.Querier, userID string, quizIDs []string, now time.Time) (map[string]Stats, error) {
	out := make(map[string]Stats, len(quizIDs))
	if len(quizIDs) == 0 {
		return out, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT quiz_id, id, deadline, submitted_at, score_percent, passed FROM attempts
		WHERE user_id = ? AND quiz_id IN (`+placeholders(len(quizIDs))+`) ORDER BY quiz_id, attempt_number`,
		append([]any{userID}, anys(quizIDs)...)...)
	if err != nil {
		return nil, fmt.Errorf("select attempt stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var quiz, id string
		var deadline int64
		var submitted, score sql.NullInt64
		var passed bool
		if err := rows.Scan(&quiz, &id, &deadline, &submitted, &score, &passed); err != nil {
			return nil, fmt.Errorf("scan attempt stats: %w", err)
		}
		st := out[quiz]
		st.Used++
		st.Passed = st.Passed || passed
		if score.Valid && int32(score.Int64) > st.BestScore {
			st.BestScore = int32(score.Int64)
		}
		if !submitted.Valid && !Expired(now, time.UnixMilli(deadline)) {
			st.OpenAttemptID = id
		}
		out[quiz] = st
	}
	return out, rows.Err()
}

const attemptColumns = `id, user_id, quiz_id, attempt_number, started_at, deadline, submitted_at, score_percent, passed, result`

// InsertAttempt stores a new attempt. A concurrent start that took the same
// attempt number fails with a unique violation (the caller retries).
func (Store) InsertAttempt(ctx context.Context, tx *db.Tx, a Attempt) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO attempts (id, user_id, quiz_id, attempt_number, started_at, deadline)
		VALUES (?,?,?,?,?,?)`, a.ID, a.UserID, a.QuizID, a.Number, a.StartedAt.UnixMilli(), a.Deadline.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert attempt: %w", err)
	}
	return nil
}

// AttemptByID returns an attempt or NotFound.
func (Store) AttemptByID(ctx context.Context, q db.Querier, id string) (Attempt, error) {
	a, err := scanAttempt(q.QueryRowContext(ctx, `SELECT `+attemptColumns+` FROM attempts WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Attempt{}, errAttemptNotFound
	}
	return a, err
}

// Attempts returns the user's attempts at a quiz, in order.
func (Store) Attempts(ctx context.Context, q db.Querier, userID, quizID string) ([]Attempt, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+attemptColumns+` FROM attempts WHERE user_id = ? AND quiz_id = ?
		ORDER BY attempt_number`, userID, quizID)
	if err != nil {
		return nil, fmt.Errorf("select attempts: %w", err)
	}
	defer rows.Close()
	var out []Attempt
	for rows.Next() {
		a, err := scanAttempt(rows.Scan)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func scanAttempt(scan func(...any) error) (Attempt, error) {
	var a Attempt
	var started, deadline int64
	var submitted, score sql.NullInt64
	if err := scan(&a.ID, &a.UserID, &a.QuizID, &a.Number, &started, &deadline, &submitted, &score, &a.Passed, &a.Result); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Attempt{}, err
		}
		return Attempt{}, fmt.Errorf("scan attempt: %w", err)
	}
	a.StartedAt, a.Deadline = time.UnixMilli(started).UTC(), time.UnixMilli(deadline).UTC()
	if submitted.Valid {
		t := time.UnixMilli(submitted.Int64).UTC()
		a.SubmittedAt = &t
	}
	a.ScorePercent = int32(score.Int64)
	return a, nil
}

// MarkSubmitted records the result of a still-unsubmitted attempt; it reports
// false when the attempt was submitted meanwhile (a concurrent submission won).
func (Store) MarkSubmitted(ctx context.Context, tx *db.Tx, a Attempt) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE attempts SET submitted_at = ?, score_percent = ?, passed = ?, result = ?
		WHERE id = ? AND submitted_at IS NULL`, a.SubmittedAt.UnixMilli(), a.ScorePercent, a.Passed, a.Result, a.ID)
	if err != nil {
		return false, fmt.Errorf("submit attempt: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RecordCompletedLesson notes that the user completed a lesson; a repeat
// changes nothing. It reports whether the row is new.
func (Store) RecordCompletedLesson(ctx context.Context, tx *db.Tx, userID, lessonID string, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO completed_lessons (user_id, lesson_id, completed_at) VALUES (?,?,?)
		ON CONFLICT DO NOTHING`, userID, lessonID, at.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("record completed lesson: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteLearner erases everything kept about a learner: attempts, completed
// lessons and stored idempotent responses (which hold their attempts).
func (Store) DeleteLearner(ctx context.Context, tx *db.Tx, userID string) error {
	for _, stmt := range []string{
		`DELETE FROM attempts WHERE user_id = ?`,
		`DELETE FROM completed_lessons WHERE user_id = ?`,
		`DELETE FROM idempotency_keys WHERE user_id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, stmt, userID); err != nil {
			return fmt.Errorf("erase learner: %w", err)
		}
	}
	return nil
}

func placeholders(n int) string { return "?" + strings.Repeat(",?", n-1) }

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
