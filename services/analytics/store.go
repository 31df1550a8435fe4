package analytics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the analytics service's persistence. Every projection query names
// its generation.
type Store struct{}

// State is the generation pointer row.
type State struct {
	Current, Building, BuildingRebuild string
}

// State reads the generation pointer.
func (Store) State(ctx context.Context, q db.Querier) (State, error) {
	var st State
	err := q.QueryRowContext(ctx, `SELECT current_generation, building_generation, building_rebuild FROM projection_state WHERE id = 1`).
		Scan(&st.Current, &st.Building, &st.BuildingRebuild)
	if err != nil {
		return State{}, fmt.Errorf("select projection state: %w", err)
	}
	return st, nil
}

// MarkApplied records that event id was applied to gen and reports whether it
// was new.
func (Store) MarkApplied(ctx context.Context, tx *db.Tx, gen, id string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO applied_events (generation, event_id) VALUES (?, ?)
		ON CONFLICT (generation, event_id) DO NOTHING`, gen, id)
	if err != nil {
		return false, fmt.Errorf("insert applied event: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Project applies f to generation gen; summary says whether the learner's
// summary is updated too.
func (Store) Project(ctx context.Context, tx *db.Tx, gen string, f Fact, summary bool) error {
	day, ms := Day(f.At), f.At.UnixMilli()
	exec := func(what, q string, args ...any) error {
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := exec("upsert generation info", `INSERT INTO generation_info (generation, as_of) VALUES (?, ?)
		ON CONFLICT (generation) DO UPDATE SET as_of = CASE WHEN excluded.as_of > generation_info.as_of
		THEN excluded.as_of ELSE generation_info.as_of END`, gen, ms); err != nil {
		return err
	}
	if err := exec("upsert event count", `INSERT INTO event_counts (generation, day, event_type, n) VALUES (?, ?, ?, 1)
		ON CONFLICT (generation, day, event_type) DO UPDATE SET n = event_counts.n + 1`, gen, day, f.Type); err != nil {
		return err
	}
	if f.UserID == "" {
		return nil
	}
	if f.Activity {
		if err := exec("insert active day", `INSERT INTO active_days (generation, user_id, day) VALUES (?, ?, ?)
			ON CONFLICT (generation, user_id, day) DO NOTHING`, gen, f.UserID, day); err != nil {
			return err
		}
	}
	if f.Registered {
		if err := exec("insert cohort", `INSERT INTO cohorts (generation, user_id, cohort_day) VALUES (?, ?, ?)
			ON CONFLICT (generation, user_id) DO NOTHING`, gen, f.UserID, day); err != nil {
			return err
		}
	}
	if f.LessonStarted != "" {
		if err := exec("upsert lesson attempt", `INSERT INTO lesson_attempts (generation, attempt_id, user_id, started_day)
			VALUES (?, ?, ?, ?) ON CONFLICT (generation, attempt_id) DO UPDATE SET started_day = excluded.started_day`,
			gen, f.LessonStarted, f.UserID, day); err != nil {
			return err
		}
	}
	if f.LessonCompleted != "" {
		if err := exec("upsert lesson attempt", `INSERT INTO lesson_attempts (generation, attempt_id, user_id, completed)
			VALUES (?, ?, ?, 1) ON CONFLICT (generation, attempt_id) DO UPDATE SET completed = 1`,
			gen, f.LessonCompleted, f.UserID); err != nil {
			return err
		}
	}
	var d struct{ submitted, passed, graded, correct int64 }
	if f.Exercise != nil {
		d.graded = 1
		if *f.Exercise {
			d.correct = 1
		}
	}
	if f.Quiz != nil {
		d.submitted, d.graded, d.correct = 1, f.Quiz.Questions, f.Quiz.Correct
		if f.Quiz.Passed {
			d.passed = 1
		}
	}
	if d != (struct{ submitted, passed, graded, correct int64 }{}) {
		if err := exec("upsert daily stats", `INSERT INTO daily_stats (generation, day, quizzes_submitted, quizzes_passed,
			answers_graded, answers_correct) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (generation, day) DO UPDATE SET
			quizzes_submitted = daily_stats.quizzes_submitted + excluded.quizzes_submitted,
			quizzes_passed = daily_stats.quizzes_passed + excluded.quizzes_passed,
			answers_graded = daily_stats.answers_graded + excluded.answers_graded,
			answers_correct = daily_stats.answers_correct + excluded.answers_correct`,
			gen, day, d.submitted, d.passed, d.graded, d.correct); err != nil {
			return err
		}
	}
	if !summary {
		return nil
	}
	var s Summary
	if f.LessonStarted != "" {
		s.LessonsStarted = 1
	}
	if f.LessonCompleted != "" {
		s.LessonsCompleted = 1
	}
	if f.Exercise != nil {
		s.ExercisesAnswered, s.ExercisesCorrect = 1, d.correct
	}
	if f.Quiz != nil {
		s.QuizQuestions, s.QuizCorrect, s.QuizzesSubmitted, s.QuizzesPassed = f.Quiz.Questions, f.Quiz.Correct, 1, d.passed
	}
	if f.Review {
		s.Reviews = 1
	}
	first, last := int64(0), int64(0)
	if f.Activity {
		first, last = ms, ms
	}
	if s == (Summary{}) && !f.Activity {
		return nil
	}
	return exec("upsert learner summary", `INSERT INTO learner_summaries (generation, user_id, lessons_started,
		lessons_completed, exercises_answered, exercises_correct, quiz_questions, quiz_correct, quizzes_submitted,
		quizzes_passed, reviews, first_active_at, last_active_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (generation, user_id) DO UPDATE SET
		lessons_started = learner_summaries.lessons_started + excluded.lessons_started,
		lessons_completed = learner_summaries.lessons_completed + excluded.lessons_completed,
		exercises_answered = learner_summaries.exercises_answered + excluded.exercises_answered,
		exercises_correct = learner_summaries.exercises_correct + excluded.exercises_correct,
		quiz_questions = learner_summaries.quiz_questions + excluded.quiz_questions,
		quiz_correct = learner_summaries.quiz_correct + excluded.quiz_correct,
		quizzes_submitted = learner_summaries.quizzes_submitted + excluded.quizzes_submitted,
		quizzes_passed = learner_summaries.quizzes_passed + excluded.quizzes_passed,
		reviews = learner_summaries.reviews + excluded.reviews,
		first_active_at = CASE WHEN excluded.first_active_at > 0 AND (learner_summaries.first_active_at = 0
			OR excluded.first_active_at < learner_summaries.first_active_at) THEN excluded.first_active_at
			ELSE learner_summaries.first_active_at END,
		last_active_at = CASE WHEN excluded.last_active_at > learner_summaries.last_active_at
			THEN excluded.last_active_at ELSE learner_summaries.last_active_at END`,
		gen, f.UserID, s.LessonsStarted, s.LessonsCompleted, s.ExercisesAnswered, s.ExercisesCorrect, s.QuizQuestions,
		s.QuizCorrect, s.QuizzesSubmitted, s.QuizzesPassed, s.Reviews, first, last)
}

// Summary is a learner's totals.
type Summary struct {
	LessonsStarted, LessonsCompleted    int64
	ExercisesAnswered, ExercisesCorrect int64
	QuizQuestions, QuizCorrect          int64
	QuizzesSubmitted, QuizzesPassed     int64
	Reviews                             int64
	FirstActiveAt, LastActiveAt         int64 // Unix ms; 0 none
	ActiveDays                          int32
}

// Accuracy is the share of correct answers over lesson exercises and quiz
// questions.
func (s Summary) Accuracy() float64 {
	return Ratio(s.ExercisesCorrect+s.QuizCorrect, s.ExercisesAnswered+s.QuizQuestions)
}

// Summary reads a learner's summary in gen (zero when none).
func (Store) Summary(ctx context.Context, q db.Querier, gen, userID string) (Summary, error) {
	var s Summary
	err := q.QueryRowContext(ctx, `SELECT lessons_started, lessons_completed, exercises_answered, exercises_correct,
		quiz_questions, quiz_correct, quizzes_submitted, quizzes_passed, reviews, first_active_at, last_active_at
		FROM learner_summaries WHERE generation = ? AND user_id = ?`, gen, userID).Scan(
		&s.LessonsStarted, &s.LessonsCompleted, &s.ExercisesAnswered, &s.ExercisesCorrect, &s.QuizQuestions,
		&s.QuizCorrect, &s.QuizzesSubmitted, &s.QuizzesPassed, &s.Reviews, &s.FirstActiveAt, &s.LastActiveAt)
	if errors.Is(err, sql.ErrNoRows) {
		return Summary{}, nil
	}
	if err != nil {
		return Summary{}, fmt.Errorf("select learner summary: %w", err)
	}
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM active_days WHERE generation = ? AND user_id = ?`, gen, userID).
		Scan(&s.ActiveDays); err != nil {
		return Summary{}, fmt.Errorf("count active days: %w", err)
	}
	return s, nil
}

// Activity reads the (learner, day) pairs of gen from one day to another.
func (Store) Activity(ctx context.Context, q db.Querier, gen, from, to string) (Activity, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_id, day FROM active_days WHERE generation = ? AND day >= ? AND day <= ?`, gen, from, to)
	if err != nil {
		return nil, fmt.Errorf("select active days: %w", err)
	}
	defer rows.Close()
	a := Activity{}
	for rows.Next() {
		var u, d string
		if err := rows.Scan(&u, &d); err != nil {
			return nil, fmt.Errorf("scan active day: %w", err)
		}
		a.Add(u, d)
	}
	return a, rows.Err()
}

// EventCounts reads the event counts of gen per day and type.
func (Store) EventCounts(ctx context.Context, q db.Querier, gen, from, to string) (map[string]map[string]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT day, event_type, n FROM event_counts WHERE generation = ? AND day >= ? AND day <= ?`, gen, from, to)
	if err != nil {
		return nil, fmt.Errorf("select event counts: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int64{}
	for rows.Next() {
		var d, t string
		var n int64
		if err := rows.Scan(&d, &t, &n); err != nil {
			return nil, fmt.Errorf("scan event count: %w", err)
		}
		if out[d] == nil {
			out[d] = map[string]int64{}
		}
		out[d][t] = n
	}
	return out, rows.Err()
}

// Totals are the quiz and answer totals of a span.
type Totals struct{ QuizzesSubmitted, QuizzesPassed, AnswersGraded, AnswersCorrect int64 }

// Totals sums daily_stats of gen over a span.
func (Store) Totals(ctx context.Context, q db.Querier, gen, from, to string) (Totals, error) {
	var t Totals
	err := q.QueryRowContext(ctx, `SELECT COALESCE(SUM(quizzes_submitted), 0), COALESCE(SUM(quizzes_passed), 0),
		COALESCE(SUM(answers_graded), 0), COALESCE(SUM(answers_correct), 0) FROM daily_stats
		WHERE generation = ? AND day >= ? AND day <= ?`, gen, from, to).
		Scan(&t.QuizzesSubmitted, &t.QuizzesPassed, &t.AnswersGraded, &t.AnswersCorrect)
	if err != nil {
		return Totals{}, fmt.Errorf("sum daily stats: %w", err)
	}
	return t, nil
}

// Funnel counts the lesson attempts of gen started in a span, and of those
// the completed ones.
func (Store) Funnel(ctx context.Context, q db.Querier, gen, from, to string) (Funnel, error) {
	var f Funnel
	err := q.QueryRowContext(ctx, `SELECT count(*), COALESCE(SUM(completed), 0) FROM lesson_attempts
		WHERE generation = ? AND started_day >= ? AND started_day <= ? AND started_day <> ''`, gen, from, to).
		Scan(&f.Started, &f.Completed)
	if err != nil {
		return Funnel{}, fmt.Errorf("count lesson funnel: %w", err)
	}
	return f, nil
}

// Cohorts reads the learners of gen who registered in a span: user → day.
func (Store) Cohorts(ctx context.Context, q db.Querier, gen, from, to string) (map[string]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_id, cohort_day FROM cohorts WHERE generation = ? AND cohort_day >= ? AND cohort_day <= ?`, gen, from, to)
	if err != nil {
		return nil, fmt.Errorf("select cohorts: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var u, d string
		if err := rows.Scan(&u, &d); err != nil {
			return nil, fmt.Errorf("scan cohort: %w", err)
		}
		out[u] = d
	}
	return out, rows.Err()
}

// AsOf returns the newest event time of gen (zero when none).
func (Store) AsOf(ctx context.Context, q db.Querier, gen string) (time.Time, error) {
	var ms int64
	err := q.QueryRowContext(ctx, `SELECT as_of FROM generation_info WHERE generation = ?`, gen).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("select generation info: %w", err)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// Pseudonym returns the pseudonym of an erased learner ("" when not erased).
func (Store) Pseudonym(ctx context.Context, q db.Querier, userID string) (string, error) {
	var p string
	err := q.QueryRowContext(ctx, `SELECT pseudonym FROM erased_learners WHERE user_id = ?`, userID).Scan(&p)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("select erased learner: %w", err)
	}
	return p, nil
}

// MarkErased remembers userID as erased with a fresh random pseudonym (kept
// when already erased).
func (Store) MarkErased(ctx context.Context, tx *db.Tx, userID string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO erased_learners (user_id, pseudonym, erased_at) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO NOTHING`, userID, "erased:"+uuid.NewString(), at.UnixMilli()); err != nil {
		return fmt.Errorf("insert erased learner: %w", err)
	}
	return nil
}

// Erase deletes the learner's summary in gen and replaces their id with the
// pseudonym in every other row of gen (aggregates keep their counts).
func (Store) Erase(ctx context.Context, tx *db.Tx, gen, userID, pseudo string) error {
	stmts := []string{
		`DELETE FROM learner_summaries WHERE generation = ? AND user_id = ?`,
		`INSERT INTO active_days (generation, user_id, day) SELECT generation, CAST(? AS TEXT), day FROM active_days
			WHERE generation = ? AND user_id = ? ON CONFLICT (generation, user_id, day) DO NOTHING`,
		`DELETE FROM active_days WHERE generation = ? AND user_id = ?`,
		`INSERT INTO cohorts (generation, user_id, cohort_day) SELECT generation, CAST(? AS TEXT), cohort_day FROM cohorts
			WHERE generation = ? AND user_id = ? ON CONFLICT (generation, user_id) DO NOTHING`,
		`DELETE FROM cohorts WHERE generation = ? AND user_id = ?`,
		`UPDATE lesson_attempts SET user_id = CAST(? AS TEXT) WHERE generation = ? AND user_id = ?`,
	}
	for _, q := range stmts {
		args := []any{gen, userID}
		if strings.Contains(q, "CAST(?") {
			args = []any{pseudo, gen, userID}
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("erase learner: %w", err)
		}
	}
	return nil
}

// projectionTables are the tables with a generation column.
var projectionTables = []string{"applied_events", "generation_info", "event_counts", "active_days", "daily_stats",
	"lesson_attempts", "cohorts", "learner_summaries"}

// DeleteOtherGenerations deletes every projection row of a generation other
// than keep... (the current and the building one).
func (Store) DeleteOtherGenerations(ctx context.Context, d *db.DB, keep ...string) error {
	for len(keep) < 2 {
		keep = append(keep, "")
	}
	for _, t := range projectionTables {
		if _, err := d.ExecContext(ctx, `DELETE FROM `+t+` WHERE generation <> ? AND generation <> ?`, keep[0], keep[1]); err != nil {
			return fmt.Errorf("delete old generation rows of %s: %w", t, err)
		}
	}
	return nil
}

// Rebuild is a row of rebuilds.
type Rebuild struct {
	ID, Generation string
	State          int32
	Since          *time.Time
	Consumed, Lag  int64
	StartedAt      time.Time
	FinishedAt     time.Time // zero while running
	HeartbeatAt    time.Time
	Error          string
}

// StartRebuild makes gen the building generation of rebuild r unless another
// rebuild is building; a building rebuild whose heartbeat is older than stale
// is failed first (its process died). It reports false when one is running.
func (s Store) StartRebuild(ctx context.Context, tx *db.Tx, r Rebuild, requestedBy string, staleBefore time.Time) (bool, error) {
	st, err := s.State(ctx, tx)
	if err != nil {
		return false, err
	}
	if st.Building != "" {
		old, found, err := s.Rebuild(ctx, tx, st.BuildingRebuild)
		if err != nil {
			return false, err
		}
		if found && old.State == stateRunning && !old.HeartbeatAt.Before(staleBefore) {
			return false, nil
		}
		if err := s.FinishRebuild(ctx, tx, st.BuildingRebuild, stateFailed, "abandoned: no progress reported (its process stopped?)", r.StartedAt); err != nil {
			return false, err
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE projection_state SET building_generation = ?, building_rebuild = ?
		WHERE id = 1 AND building_generation = ?`, r.Generation, r.ID, st.Building)
	if err != nil {
		return false, fmt.Errorf("update projection state: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return false, err
	}
	var since int64
	if r.Since != nil {
		since = r.Since.UnixMilli()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO rebuilds (id, generation, state, since, has_since, started_at, heartbeat_at,
		requested_by) VALUES (?,?,?,?,?,?,?,?)`, r.ID, r.Generation, stateRunning, since, b2i(r.Since != nil),
		r.StartedAt.UnixMilli(), r.StartedAt.UnixMilli(), requestedBy); err != nil {
		return false, fmt.Errorf("insert rebuild: %w", err)
	}
	return true, nil
}

// Rebuild reads a rebuild.
func (Store) Rebuild(ctx context.Context, q db.Querier, id string) (Rebuild, bool, error) {
	var r Rebuild
	var since, started, finished, beat int64
	var hasSince int
	err := q.QueryRowContext(ctx, `SELECT id, generation, state, since, has_since, consumed, lag, started_at, finished_at,
		heartbeat_at, error FROM rebuilds WHERE id = ?`, id).Scan(&r.ID, &r.Generation, &r.State, &since, &hasSince,
		&r.Consumed, &r.Lag, &started, &finished, &beat, &r.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return Rebuild{}, false, nil
	}
	if err != nil {
		return Rebuild{}, false, fmt.Errorf("select rebuild: %w", err)
	}
	if hasSince != 0 {
		t := time.UnixMilli(since).UTC()
		r.Since = &t
	}
	r.StartedAt, r.HeartbeatAt = time.UnixMilli(started).UTC(), time.UnixMilli(beat).UTC()
	if finished > 0 {
		r.FinishedAt = time.UnixMilli(finished).UTC()
	}
	return r, true, nil
}

// Progress records a running rebuild's counters and heartbeat.
func (Store) Progress(ctx context.Context, d *db.DB, id string, consumed, lag int64, at time.Time) error {
	if _, err := d.ExecContext(ctx, `UPDATE rebuilds SET consumed = ?, lag = ?, heartbeat_at = ? WHERE id = ? AND state = ?`,
		consumed, lag, at.UnixMilli(), id, stateRunning); err != nil {
		return fmt.Errorf("update rebuild progress: %w", err)
	}
	return nil
}

// FinishRebuild sets a running rebuild's final state and, when it is the
// building one, clears the building generation (failed) or swaps it in as
// the current one (swapped), in tx.
func (s Store) FinishRebuild(ctx context.Context, tx *db.Tx, id string, state int32, msg string, at time.Time) error {
	r, found, err := s.Rebuild(ctx, tx, id)
	if err != nil || !found {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rebuilds SET state = ?, error = ?, finished_at = ?,
		lag = CASE WHEN ? = 2 THEN 0 ELSE lag END WHERE id = ? AND state = ?`,
		state, msg, at.UnixMilli(), state, id, stateRunning); err != nil {
		return fmt.Errorf("update rebuild: %w", err)
	}
	set := `building_generation = '', building_rebuild = ''`
	if state == stateSwapped {
		set = `current_generation = building_generation, ` + set
	}
	if _, err := tx.ExecContext(ctx, `UPDATE projection_state SET `+set+` WHERE id = 1 AND building_rebuild = ?`, r.ID); err != nil {
		return fmt.Errorf("update projection state: %w", err)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
