package progress

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the progress service's persistence. Writes take the transaction they
// run in (the inbox transaction of the event being applied); reads take a
// db.Querier so that they run inside or outside one.
type Store struct{}

// Item kinds of learner_items: things counted once per learner.
const (
	itemLesson   = "lesson"
	itemQuiz     = "quiz"
	itemLearned  = "learned"
	itemMastered = "mastered"
)

const learnerColumns = `user_id, timezone, daily_goal_xp, total_xp, streak_current, streak_longest, streak_freezes,
	streak_last_date, lessons, quizzes_passed, perfect_quizzes, words_learned, words_mastered, goals_reached,
	correct_answers, graded_answers`

// Learner returns the learner, or a fresh [NewLearner] (found false) when no
// event about them has been applied yet.
func (Store) Learner(ctx context.Context, q db.Querier, id string) (l Learner, found bool, err error) {
	l = NewLearner(id)
	err = q.QueryRowContext(ctx, `SELECT `+learnerColumns+` FROM learners WHERE user_id = ?`, id).Scan(
		&l.UserID, &l.Timezone, &l.DailyGoalXP, &l.TotalXP, &l.Streak.Current, &l.Streak.Longest, &l.Streak.Freezes,
		&l.Streak.LastDate, &l.Lessons, &l.QuizzesPass, &l.Perfect, &l.WordsLearned, &l.Mastered, &l.GoalsReached,
		&l.Correct, &l.Graded)
	if errors.Is(err, sql.ErrNoRows) {
		return NewLearner(id), false, nil
	}
	if err != nil {
		return Learner{}, false, fmt.Errorf("select learner: %w", err)
	}
	return l, true, nil
}

// LockLearner creates the learner's row if missing and locks it for the rest of
// tx (a no-op UPDATE takes the row lock on PostgreSQL; SQLite serialises writers),
// so that two events of one learner never interleave their read-modify-write.
func (s Store) LockLearner(ctx context.Context, tx *db.Tx, id string) (Learner, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO learners (user_id, timezone, daily_goal_xp) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO NOTHING`, id, DefaultTimezone, DefaultDailyGoalXP); err != nil {
		return Learner{}, fmt.Errorf("insert learner: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET user_id = user_id WHERE user_id = ?`, id); err != nil {
		return Learner{}, fmt.Errorf("lock learner: %w", err)
	}
	l, _, err := s.Learner(ctx, tx, id)
	return l, err
}

// SaveLearner writes every column of l (its row exists: see [Store.LockLearner]).
func (Store) SaveLearner(ctx context.Context, tx *db.Tx, l Learner) error {
	_, err := tx.ExecContext(ctx, `UPDATE learners SET timezone = ?, daily_goal_xp = ?, total_xp = ?, streak_current = ?,
		streak_longest = ?, streak_freezes = ?, streak_last_date = ?, lessons = ?, quizzes_passed = ?, perfect_quizzes = ?,
		words_learned = ?, words_mastered = ?, goals_reached = ?, correct_answers = ?, graded_answers = ?
		WHERE user_id = ?`,
		l.Timezone, l.DailyGoalXP, l.TotalXP, l.Streak.Current, l.Streak.Longest, l.Streak.Freezes, l.Streak.LastDate,
		l.Lessons, l.QuizzesPass, l.Perfect, l.WordsLearned, l.Mastered, l.GoalsReached, l.Correct, l.Graded, l.UserID)
	if err != nil {
		return fmt.Errorf("update learner: %w", err)
	}
	return nil
}

// LedgerRow is one row of the XP ledger.
type LedgerRow struct {
	SourceEventID string
	UserID        string
	Amount        int32
	Reason        string
	SourceID      string
	At            time.Time
	LocalDate     string
	WeekStart     string
}

// InsertLedger adds r and reports false when a row for its source event exists
// already (a replay): the caller then applies nothing.
func (Store) InsertLedger(ctx context.Context, tx *db.Tx, r LedgerRow) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO xp_ledger (source_event_id, user_id, amount, reason, source_id, awarded_at,
		local_date, week_start) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (source_event_id) DO NOTHING`,
		r.SourceEventID, r.UserID, r.Amount, r.Reason, r.SourceID, r.At.UnixMilli(), r.LocalDate, r.WeekStart)
	if err != nil {
		return false, fmt.Errorf("insert ledger row: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// SetLedgerAmount corrects the amount of a ledger row written in the same tx.
func (Store) SetLedgerAmount(ctx context.Context, tx *db.Tx, sourceEventID string, amount int32) error {
	if _, err := tx.ExecContext(ctx, `UPDATE xp_ledger SET amount = ? WHERE source_event_id = ?`, amount, sourceEventID); err != nil {
		return fmt.Errorf("update ledger row: %w", err)
	}
	return nil
}

// AddItem records item of kind for the learner and reports whether it is new.
func (Store) AddItem(ctx context.Context, tx *db.Tx, userID, kind, item string) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO learner_items (user_id, kind, item_id) VALUES (?,?,?)
		ON CONFLICT (user_id, kind, item_id) DO NOTHING`, userID, kind, item)
	if err != nil {
		return false, fmt.Errorf("insert learner item: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Day returns the learner's activity on a local day (zero when none).
func (Store) Day(ctx context.Context, q db.Querier, userID, date string) (Day, error) {
	d := Day{Date: date}
	var goal int
	err := q.QueryRowContext(ctx, `SELECT xp, lessons, reviews, quizzes, goal_reached FROM daily_activity
		WHERE user_id = ? AND local_date = ?`, userID, date).Scan(&d.XP, &d.Lessons, &d.Reviews, &d.Quizzes, &goal)
	if errors.Is(err, sql.ErrNoRows) {
		return d, nil
	}
	if err != nil {
		return Day{}, fmt.Errorf("select daily activity: %w", err)
	}
	d.GoalReached = goal != 0
	return d, nil
}

// SaveDay writes the learner's activity on d.Date.
func (Store) SaveDay(ctx context.Context, tx *db.Tx, userID string, d Day) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO daily_activity (user_id, local_date, xp, lessons, reviews, quizzes, goal_reached)
		VALUES (?,?,?,?,?,?,?) ON CONFLICT (user_id, local_date) DO UPDATE SET xp = excluded.xp, lessons = excluded.lessons,
		reviews = excluded.reviews, quizzes = excluded.quizzes, goal_reached = excluded.goal_reached`,
		userID, d.Date, d.XP, d.Lessons, d.Reviews, d.Quizzes, b2i(d.GoalReached))
	if err != nil {
		return fmt.Errorf("upsert daily activity: %w", err)
	}
	return nil
}

// Days returns the learner's activity from one local day to another, inclusive,
// oldest first; days without activity are absent.
func (Store) Days(ctx context.Context, q db.Querier, userID, from, to string) ([]Day, error) {
	rows, err := q.QueryContext(ctx, `SELECT local_date, xp, lessons, reviews, quizzes, goal_reached FROM daily_activity
		WHERE user_id = ? AND local_date >= ? AND local_date <= ? ORDER BY local_date`, userID, from, to)
	if err != nil {
		return nil, fmt.Errorf("select daily activity: %w", err)
	}
	defer rows.Close()
	var out []Day
	for rows.Next() {
		var d Day
		var goal int
		if err := rows.Scan(&d.Date, &d.XP, &d.Lessons, &d.Reviews, &d.Quizzes, &goal); err != nil {
			return nil, fmt.Errorf("scan daily activity: %w", err)
		}
		d.GoalReached = goal != 0
		out = append(out, d)
	}
	return out, rows.Err()
}

// AddWeeklyXP adds xp to the learner's week; reached_at keeps the latest time.
func (Store) AddWeeklyXP(ctx context.Context, tx *db.Tx, userID, week string, xp int32, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO weekly_xp (user_id, week_start, xp, reached_at) VALUES (?,?,?,?)
		ON CONFLICT (user_id, week_start) DO UPDATE SET xp = weekly_xp.xp + excluded.xp,
		reached_at = CASE WHEN excluded.reached_at > weekly_xp.reached_at THEN excluded.reached_at ELSE weekly_xp.reached_at END`,
		userID, week, int64(xp), at.UnixMilli())
	if err != nil {
		return fmt.Errorf("upsert weekly xp: %w", err)
	}
	return nil
}

// WeeklyXP returns the learner's XP per week from one week key to another,
// inclusive; weeks without XP are absent.
func (Store) WeeklyXP(ctx context.Context, q db.Querier, userID, from, to string) (map[string]int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT week_start, xp FROM weekly_xp WHERE user_id = ? AND week_start >= ? AND week_start <= ?`,
		userID, from, to)
	if err != nil {
		return nil, fmt.Errorf("select weekly xp: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var w string
		var xp int64
		if err := rows.Scan(&w, &xp); err != nil {
			return nil, fmt.Errorf("scan weekly xp: %w", err)
		}
		out[w] = xp
	}
	return out, rows.Err()
}

// Ranked is one leaderboard row.
type Ranked struct {
	Rank   int32
	UserID string
	XP     int64
}

// TopOfWeek returns the limit best learners of a week: most XP first, equal XP
// ranked by who reached it first, then by id.
func (Store) TopOfWeek(ctx context.Context, q db.Querier, week string, limit int) ([]Ranked, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_id, xp FROM weekly_xp WHERE week_start = ? AND xp > 0
		ORDER BY xp DESC, reached_at, user_id LIMIT ?`, week, limit)
	if err != nil {
		return nil, fmt.Errorf("select leaderboard: %w", err)
	}
	defer rows.Close()
	var out []Ranked
	for rows.Next() {
		r := Ranked{Rank: int32(len(out) + 1)}
		if err := rows.Scan(&r.UserID, &r.XP); err != nil {
			return nil, fmt.Errorf("scan leaderboard: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RankInWeek returns the learner's entry in a week; rank 0 and XP 0 when they
// earned nothing that week.
func (Store) RankInWeek(ctx context.Context, q db.Querier, week, userID string) (Ranked, error) {
	r := Ranked{UserID: userID}
	var reached int64
	err := q.QueryRowContext(ctx, `SELECT xp, reached_at FROM weekly_xp WHERE week_start = ? AND user_id = ?`, week, userID).
		Scan(&r.XP, &reached)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && r.XP <= 0) {
		return Ranked{UserID: userID}, nil
	}
	if err != nil {
		return Ranked{}, fmt.Errorf("select weekly xp: %w", err)
	}
	var ahead int32
	err = q.QueryRowContext(ctx, `SELECT count(*) FROM weekly_xp WHERE week_start = ? AND xp > 0 AND
		(xp > ? OR (xp = ? AND (reached_at < ? OR (reached_at = ? AND user_id < ?))))`,
		week, r.XP, r.XP, reached, reached, userID).Scan(&ahead)
	if err != nil {
		return Ranked{}, fmt.Errorf("count leaderboard: %w", err)
	}
	r.Rank = ahead + 1
	return r, nil
}

// Unlocked returns the learner's achievements: id → when unlocked.
func (Store) Unlocked(ctx context.Context, q db.Querier, userID string) (map[string]time.Time, error) {
	rows, err := q.QueryContext(ctx, `SELECT achievement_id, unlocked_at FROM achievements WHERE user_id = ?`, userID)
	if err != nil {
		return nil, fmt.Errorf("select achievements: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var id string
		var at int64
		if err := rows.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("scan achievement: %w", err)
		}
		out[id] = time.UnixMilli(at).UTC()
	}
	return out, rows.Err()
}

// Unlock records an achievement; a second unlock of the same one is ignored.
func (Store) Unlock(ctx context.Context, tx *db.Tx, userID, achievementID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO achievements (user_id, achievement_id, unlocked_at) VALUES (?,?,?)
		ON CONFLICT (user_id, achievement_id) DO NOTHING`, userID, achievementID, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert achievement: %w", err)
	}
	return nil
}

// Erased reports whether the user was deleted.
func (Store) Erased(ctx context.Context, q db.Querier, userID string) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM erased_learners WHERE user_id = ?`, userID).Scan(&n); err != nil {
		return false, fmt.Errorf("select erased learner: %w", err)
	}
	return n > 0, nil
}

// Erase deletes every row about the learner and remembers their id as erased.
func (Store) Erase(ctx context.Context, tx *db.Tx, userID string, at time.Time) error {
	for _, table := range []string{"xp_ledger", "learner_items", "daily_activity", "weekly_xp", "achievements", "learners"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = ?`, userID); err != nil {
			return fmt.Errorf("erase %s: %w", table, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO erased_learners (user_id, erased_at) VALUES (?, ?)
		ON CONFLICT (user_id) DO NOTHING`, userID, at.UnixMilli()); err != nil {
		return fmt.Errorf("insert erased learner: %w", err)
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
