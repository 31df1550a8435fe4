package notification

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the notification service's persistence. Writes take the
// transaction they run in; reads take a db.Querier so that they run inside or
// outside one.
type Store struct{}

// Notification is one stored notification.
type Notification struct {
	ID            string
	UserID        string
	Seq           int64 // the learner's own order of creation (and commit)
	Type          Type
	Title         string
	Body          string
	Data          map[string]string
	CreatedAt     time.Time
	ReadAt        time.Time // zero while unread
	SourceEventID string    // "" for the streak reminder
	Silent        bool      // created during quiet hours: not pushed live
}

// Learner is a learner's row: profile, preferences and reminder state.
type Learner struct {
	UserID           string
	Prefs            Prefs
	ProfileAt        time.Time
	LastActivityDate string
	StreakDays       int32
	StreakDate       string
	LastReminderDate string
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// Erased reports whether the user was deleted.
func (Store) Erased(ctx context.Context, q db.Querier, userID string) (bool, error) {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM erased_learners WHERE user_id = ?`, userID).Scan(&n); err != nil {
		return false, fmt.Errorf("select erased learner: %w", err)
	}
	return n > 0, nil
}

// EnsureLearner creates the learner's row with the defaults if missing.
func (Store) EnsureLearner(ctx context.Context, tx *db.Tx, userID string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO learners (user_id, timezone, reminder_time) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO NOTHING`, userID, DefaultTimezone, DefaultReminderTime); err != nil {
		return fmt.Errorf("insert learner: %w", err)
	}
	return nil
}

// Learner returns the learner; found is false (and the defaults are returned)
// when the service has not heard of them.
func (Store) Learner(ctx context.Context, q db.Querier, userID string) (l Learner, found bool, err error) {
	l = Learner{UserID: userID, Prefs: DefaultPrefs()}
	var profileAt, prefsAt int64
	err = q.QueryRowContext(ctx, `SELECT timezone, profile_at, reminder_time, quiet_start, quiet_end, prefs_updated_at,
		last_activity_date, streak_days, streak_date, last_reminder_date FROM learners WHERE user_id = ?`, userID).Scan(
		&l.Prefs.Timezone, &profileAt, &l.Prefs.ReminderTime, &l.Prefs.Quiet.Start, &l.Prefs.Quiet.End, &prefsAt,
		&l.LastActivityDate, &l.StreakDays, &l.StreakDate, &l.LastReminderDate)
	if errors.Is(err, sql.ErrNoRows) {
		return l, false, nil
	}
	if err != nil {
		return Learner{}, false, fmt.Errorf("select learner: %w", err)
	}
	l.ProfileAt, l.Prefs.UpdatedAt = fromMS(profileAt), fromMS(prefsAt)
	rows, err := q.QueryContext(ctx, `SELECT type FROM muted_types WHERE user_id = ?`, userID)
	if err != nil {
		return Learner{}, false, fmt.Errorf("select muted types: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t int32
		if err := rows.Scan(&t); err != nil {
			return Learner{}, false, fmt.Errorf("scan muted type: %w", err)
		}
		l.Prefs.Muted[Type(t)] = true
	}
	return l, true, rows.Err()
}

// SetTimezone records the learner's zone from a profile event at time at,
// unless a later profile event was applied already (replays, reordering).
func (Store) SetTimezone(ctx context.Context, tx *db.Tx, userID, tz string, at time.Time) error {
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET timezone = ?, profile_at = ? WHERE user_id = ? AND profile_at <= ?`,
		tz, ms(at), userID, ms(at)); err != nil {
		return fmt.Errorf("update learner zone: %w", err)
	}
	return nil
}

// NoteActivity records learning activity on a local day (the latest day wins).
func (Store) NoteActivity(ctx context.Context, tx *db.Tx, userID, date string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET last_activity_date = ? WHERE user_id = ? AND last_activity_date < ?`,
		date, userID, date); err != nil {
		return fmt.Errorf("update learner activity: %w", err)
	}
	return nil
}

// NoteStreak records the streak length reached on a local day (the latest day wins).
func (Store) NoteStreak(ctx context.Context, tx *db.Tx, userID string, days int32, date string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET streak_days = ?, streak_date = ? WHERE user_id = ? AND streak_date <= ?`,
		days, date, userID, date); err != nil {
		return fmt.Errorf("update learner streak: %w", err)
	}
	return nil
}

// SavePrefs writes the learner's preferences (their row exists).
func (Store) SavePrefs(ctx context.Context, tx *db.Tx, userID string, p Prefs) error {
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET reminder_time = ?, quiet_start = ?, quiet_end = ?, prefs_updated_at = ?
		WHERE user_id = ?`, p.ReminderTime, p.Quiet.Start, p.Quiet.End, ms(p.UpdatedAt), userID); err != nil {
		return fmt.Errorf("update preferences: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM muted_types WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("delete muted types: %w", err)
	}
	muted := make([]int, 0, len(p.Muted))
	for t, m := range p.Muted {
		if m {
			muted = append(muted, int(t))
		}
	}
	slices.Sort(muted)
	for _, t := range muted {
		if _, err := tx.ExecContext(ctx, `INSERT INTO muted_types (user_id, type) VALUES (?, ?)`, userID, t); err != nil {
			return fmt.Errorf("insert muted type: %w", err)
		}
	}
	return nil
}

// NextSeq takes the learner's next notification number. The UPDATE locks the
// learner's row until tx ends, so that the learner's notifications commit in
// seq order (what the streams rely on).
func (Store) NextSeq(ctx context.Context, tx *db.Tx, userID string) (int64, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET next_seq = next_seq + 1 WHERE user_id = ?`, userID); err != nil {
		return 0, fmt.Errorf("bump notification seq: %w", err)
	}
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT next_seq FROM learners WHERE user_id = ?`, userID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("select notification seq: %w", err)
	}
	return seq, nil
}

// InsertNotification adds n and reports false when the learner has a
// notification of its source event already.
func (Store) InsertNotification(ctx context.Context, tx *db.Tx, n Notification) (bool, error) {
	data, err := json.Marshal(n.Data)
	if err != nil {
		return false, fmt.Errorf("encode notification data: %w", err)
	}
	var source any
	if n.SourceEventID != "" {
		source = n.SourceEventID
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO notifications (id, user_id, seq, type, title, body, data, created_at,
		source_event_id, silent) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (source_event_id, user_id) DO NOTHING`,
		n.ID, n.UserID, n.Seq, int32(n.Type), n.Title, n.Body, string(data), ms(n.CreatedAt), source, b2i(n.Silent))
	if err != nil {
		return false, fmt.Errorf("insert notification: %w", err)
	}
	k, err := res.RowsAffected()
	return k == 1, err
}

const notificationColumns = `id, user_id, seq, type, title, body, data, created_at, read_at, source_event_id, silent`

func scanNotification(sc interface{ Scan(...any) error }) (Notification, error) {
	var n Notification
	var typ int32
	var data string
	var created int64
	var read sql.NullInt64
	var source sql.NullString
	var silent int
	if err := sc.Scan(&n.ID, &n.UserID, &n.Seq, &typ, &n.Title, &n.Body, &data, &created, &read, &source, &silent); err != nil {
		return Notification{}, err
	}
	n.Type, n.CreatedAt, n.SourceEventID, n.Silent = Type(typ), fromMS(created), source.String, silent != 0
	if read.Valid {
		n.ReadAt = fromMS(read.Int64)
	}
	if err := json.Unmarshal([]byte(data), &n.Data); err != nil {
		return Notification{}, fmt.Errorf("decode notification data: %w", err)
	}
	return n, nil
}

func (Store) queryNotifications(ctx context.Context, q db.Querier, query string, args ...any) ([]Notification, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+notificationColumns+` FROM notifications WHERE `+query, args...)
	if err != nil {
		return nil, fmt.Errorf("select notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		n, err := scanNotification(rows)
		if err != nil {
			return nil, fmt.Errorf("scan notification: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// List returns up to limit of the learner's notifications with seq below
// beforeSeq (0: no bound), newest first.
func (s Store) List(ctx context.Context, q db.Querier, userID string, unreadOnly bool, beforeSeq int64, limit int) ([]Notification, error) {
	query := `user_id = ?`
	args := []any{userID}
	if unreadOnly {
		query += ` AND read_at IS NULL`
	}
	if beforeSeq > 0 {
		query += ` AND seq < ?`
		args = append(args, beforeSeq)
	}
	return s.queryNotifications(ctx, q, query+` ORDER BY seq DESC LIMIT ?`, append(args, limit)...)
}

// After returns up to limit of the learner's notifications with seq above
// afterSeq, oldest first.
func (s Store) After(ctx context.Context, q db.Querier, userID string, afterSeq int64, limit int) ([]Notification, error) {
	return s.queryNotifications(ctx, q, `user_id = ? AND seq > ? ORDER BY seq LIMIT ?`, userID, afterSeq, limit)
}

// CreatedAfter returns the learner's notifications created after t with seq
// at most maxSeq: the newest limit of them, oldest first.
func (s Store) CreatedAfter(ctx context.Context, q db.Querier, userID string, t time.Time, maxSeq int64, limit int) ([]Notification, error) {
	out, err := s.queryNotifications(ctx, q, `user_id = ? AND created_at > ? AND seq <= ? ORDER BY seq DESC LIMIT ?`,
		userID, ms(t), maxSeq, limit)
	slices.Reverse(out)
	return out, err
}

// Get returns the learner's notification id; found is false when the learner
// has none with that id (another learner's included).
func (Store) Get(ctx context.Context, q db.Querier, userID, id string) (Notification, bool, error) {
	n, err := scanNotification(q.QueryRowContext(ctx, `SELECT `+notificationColumns+` FROM notifications
		WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return Notification{}, false, nil
	}
	if err != nil {
		return Notification{}, false, fmt.Errorf("select notification: %w", err)
	}
	return n, true, nil
}

// MaxSeq is the seq of the learner's latest committed notification (0: none).
func (Store) MaxSeq(ctx context.Context, q db.Querier, userID string) (int64, error) {
	var seq sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT max(seq) FROM notifications WHERE user_id = ?`, userID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("select max seq: %w", err)
	}
	return seq.Int64, nil
}

// UnreadCount counts the learner's unread notifications.
func (Store) UnreadCount(ctx context.Context, q db.Querier, userID string) (int32, error) {
	var n int32
	if err := q.QueryRowContext(ctx, `SELECT count(*) FROM notifications WHERE user_id = ? AND read_at IS NULL`, userID).Scan(&n); err != nil {
		return 0, fmt.Errorf("count unread: %w", err)
	}
	return n, nil
}

// MarkRead marks the learner's notification read at t and reports whether it
// was unread.
func (Store) MarkRead(ctx context.Context, tx *db.Tx, userID, id string, t time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE notifications SET read_at = ? WHERE id = ? AND user_id = ? AND read_at IS NULL`,
		ms(t), id, userID)
	if err != nil {
		return false, fmt.Errorf("mark read: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// MarkAllRead marks the learner's unread notifications read at t, those
// created at or before createdBefore only when it is not zero, and returns
// how many.
func (Store) MarkAllRead(ctx context.Context, tx *db.Tx, userID string, t, createdBefore time.Time) (int64, error) {
	query := `UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL`
	args := []any{ms(t), userID}
	if !createdBefore.IsZero() {
		query += ` AND created_at <= ?`
		args = append(args, ms(createdBefore))
	}
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("mark all read: %w", err)
	}
	return res.RowsAffected()
}

// Follow records that the learner follows a course.
func (Store) Follow(ctx context.Context, tx *db.Tx, userID, courseID string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO follows (user_id, course_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		userID, courseID); err != nil {
		return fmt.Errorf("insert follow: %w", err)
	}
	return nil
}

// StartLesson records that the learner started a lesson.
func (Store) StartLesson(ctx context.Context, tx *db.Tx, userID, lessonID string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO started_lessons (user_id, lesson_id) VALUES (?, ?) ON CONFLICT DO NOTHING`,
		userID, lessonID); err != nil {
		return fmt.Errorf("insert started lesson: %w", err)
	}
	return nil
}

// SetLessonCourse records the course of a lesson.
func (Store) SetLessonCourse(ctx context.Context, tx *db.Tx, lessonID, courseID string) error {
	if _, err := tx.ExecContext(ctx, `INSERT INTO lesson_courses (lesson_id, course_id) VALUES (?, ?)
		ON CONFLICT (lesson_id) DO UPDATE SET course_id = excluded.course_id`, lessonID, courseID); err != nil {
		return fmt.Errorf("upsert lesson course: %w", err)
	}
	return nil
}

// Followers returns the learners who follow a course, sorted (the order rows
// are locked in, so that concurrent fan-outs never deadlock).
func (Store) Followers(ctx context.Context, q db.Querier, courseID string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT user_id FROM follows WHERE course_id = ?
		UNION SELECT s.user_id FROM started_lessons s JOIN lesson_courses c ON c.lesson_id = s.lesson_id WHERE c.course_id = ?
		ORDER BY 1`, courseID, courseID)
	if err != nil {
		return nil, fmt.Errorf("select followers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("scan follower: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// ReminderLearners returns every learner with what deciding on their
// reminder needs, skipping those active or reminded on or after latestToday
// (the latest local "today" of any zone: nobody of them can be due).
func (Store) ReminderLearners(ctx context.Context, q db.Querier, latestToday string) ([]ReminderLearner, error) {
	rows, err := q.QueryContext(ctx, `SELECT l.user_id, l.timezone, l.reminder_time, l.quiet_start, l.quiet_end,
		l.last_activity_date, l.last_reminder_date,
		EXISTS (SELECT 1 FROM muted_types m WHERE m.user_id = l.user_id AND m.type = ?)
		FROM learners l WHERE l.last_reminder_date < ? AND l.last_activity_date < ? ORDER BY l.user_id`,
		int32(typeReminder), latestToday, latestToday)
	if err != nil {
		return nil, fmt.Errorf("select reminder learners: %w", err)
	}
	defer rows.Close()
	var out []ReminderLearner
	for rows.Next() {
		var l ReminderLearner
		var muted any
		if err := rows.Scan(&l.UserID, &l.Timezone, &l.ReminderTime, &l.Quiet.Start, &l.Quiet.End,
			&l.LastActivityDate, &l.LastReminderDate, &muted); err != nil {
			return nil, fmt.Errorf("scan reminder learner: %w", err)
		}
		l.ReminderMuted = truthy(muted)
		out = append(out, l)
	}
	return out, rows.Err()
}

// truthy reads a boolean expression's value: PostgreSQL returns bool, SQLite
// an integer.
func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case int64:
		return x != 0
	case int:
		return x != 0
	case []byte:
		return len(x) > 0 && x[0] != '0' && x[0] != 'f'
	case string:
		return x != "" && x != "0" && x != "f" && x != "false"
	}
	return false
}

// InsertReminder records the learner's reminder of a local day and reports
// false when one was sent that day already.
func (Store) InsertReminder(ctx context.Context, tx *db.Tx, userID, date, notificationID string, at time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO reminders (user_id, local_date, notification_id, sent_at) VALUES (?,?,?,?)
		ON CONFLICT (user_id, local_date) DO NOTHING`, userID, date, notificationID, ms(at))
	if err != nil {
		return false, fmt.Errorf("insert reminder: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil || n != 1 {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE learners SET last_reminder_date = ? WHERE user_id = ? AND last_reminder_date < ?`,
		date, userID, date); err != nil {
		return false, fmt.Errorf("update last reminder: %w", err)
	}
	return true, nil
}

// Erase deletes every row about the learner and remembers their id as erased.
func (Store) Erase(ctx context.Context, tx *db.Tx, userID string, at time.Time) error {
	for _, table := range []string{"notifications", "reminders", "muted_types", "follows", "started_lessons", "learners"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user_id = ?`, userID); err != nil {
			return fmt.Errorf("erase %s: %w", table, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO erased_learners (user_id, erased_at) VALUES (?, ?)
		ON CONFLICT (user_id) DO NOTHING`, userID, ms(at)); err != nil {
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
