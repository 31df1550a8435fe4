package vocabulary

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the vocabulary service's persistence. Writes take the transaction they
// run in; the caller (service.go, events.go) owns transaction boundaries so that
// state and outbox rows commit together.
type Store struct{}

// errConcurrentReview means the card changed between its read and its update:
// another review of it committed first. The whole review is retried.
var errConcurrentReview = errors.New("vocabulary: card reviewed concurrently")

const cardColumns = `id, user_id, term, translation, part_of_speech, example, example_translation, audio_media_id,
	source, lesson_id, state, due, stability, difficulty, elapsed_days, scheduled_days, reps, lapses, step,
	last_review, mastered_at, created_at`

func cardArgs(c Card) []any {
	m := c.Memory
	return []any{c.ID, c.UserID, c.Term, c.Translation, c.PartOfSpeech, c.Example, c.ExampleTranslation, c.AudioMediaID,
		string(c.Source), c.LessonID, m.State.String(), m.Due.UnixMilli(), m.Stability, m.Difficulty, m.ElapsedDays,
		m.ScheduledDays, m.Reps, m.Lapses, m.Step, nullMillis(m.LastReview), nullMillisPtr(c.MasteredAt), c.CreatedAt.UnixMilli()}
}

const cardInsert = `INSERT INTO cards (` + cardColumns + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// InsertCard adds c by hand. A term already in the learner's deck is a Conflict
// (ALREADY_EXISTS) naming the term.
func (Store) InsertCard(ctx context.Context, tx *db.Tx, c Card) error {
	_, err := tx.ExecContext(ctx, cardInsert, cardArgs(c)...)
	if db.IsUniqueViolation(err) {
		return &apperr.Error{Kind: apperr.KindConflict, Reason: "TERM_ALREADY_IN_DECK", Field: "term",
			Message: fmt.Sprintf("%q is already in your deck", c.Term)}
	}
	if err != nil {
		return fmt.Errorf("insert card: %w", err)
	}
	return nil
}

// InsertCardIfNew adds c unless the learner's deck already has its term; it
// reports whether it was added.
func (Store) InsertCardIfNew(ctx context.Context, tx *db.Tx, c Card) (bool, error) {
	res, err := tx.ExecContext(ctx, cardInsert+` ON CONFLICT (user_id, term) DO NOTHING`, cardArgs(c)...)
	if err != nil {
		return false, fmt.Errorf("insert card: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert card: %w", err)
	}
	return n == 1, nil
}

// CardOf returns the card id of the learner userID; NotFound when there is no
// such card in that learner's deck (another learner's card included).
func (Store) CardOf(ctx context.Context, q db.Querier, userID, id string) (Card, error) {
	c, err := scanCard(q.QueryRowContext(ctx, `SELECT `+cardColumns+` FROM cards WHERE id = ? AND user_id = ?`, id, userID))
	if errors.Is(err, sql.ErrNoRows) {
		return Card{}, apperr.NotFound("CARD_NOT_FOUND", fmt.Sprintf("card %s is not in your deck", id))
	}
	return c, err
}

// UpdateMemory writes c's memory and mastered_at, only if the card still has
// prevReps reviews (optimistic concurrency); otherwise errConcurrentReview.
func (Store) UpdateMemory(ctx context.Context, tx *db.Tx, c Card, prevReps int) error {
	m := c.Memory
	res, err := tx.ExecContext(ctx, `UPDATE cards SET state = ?, due = ?, stability = ?, difficulty = ?, elapsed_days = ?,
		scheduled_days = ?, reps = ?, lapses = ?, step = ?, last_review = ?, mastered_at = ? WHERE id = ? AND reps = ?`,
		m.State.String(), m.Due.UnixMilli(), m.Stability, m.Difficulty, m.ElapsedDays, m.ScheduledDays, m.Reps, m.Lapses,
		m.Step, nullMillis(m.LastReview), nullMillisPtr(c.MasteredAt), c.ID, prevReps)
	if err != nil {
		return fmt.Errorf("update card: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update card: %w", err)
	} else if n != 1 {
		return errConcurrentReview
	}
	return nil
}

// InsertReview appends one review to the log.
func (Store) InsertReview(ctx context.Context, tx *db.Tx, id, userID, cardID string, l ReviewLog, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO reviews (id, user_id, card_id, rating, state_before, state_after, elapsed_days,
		scheduled_days, stability_before, difficulty_before, stability, difficulty, reps, lapses, step, due, reviewed_at, created_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		id, userID, cardID, int(l.Rating), l.Before.State.String(), l.After.State.String(), l.ElapsedDays, l.After.ScheduledDays,
		l.Before.Stability, l.Before.Difficulty, l.After.Stability, l.After.Difficulty, l.After.Reps, l.After.Lapses, l.After.Step,
		l.After.Due.UnixMilli(), l.ReviewedAt.UnixMilli(), now.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert review: %w", err)
	}
	return nil
}

// ListCards returns a page of the learner's cards, newest first (created_at, id
// descending), after the cursor (created_at millis, id) when given; state 0 is
// any state.
func (Store) ListCards(ctx context.Context, q db.Querier, userID string, state State, afterCreated int64, afterID string, limit int) ([]Card, error) {
	where, args := `user_id = ?`, []any{userID}
	if state != 0 {
		where += ` AND state = ?`
		args = append(args, state.String())
	}
	if afterID != "" {
		where += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, afterCreated, afterCreated, afterID)
	}
	args = append(args, limit)
	return queryCards(ctx, q, `SELECT `+cardColumns+` FROM cards WHERE `+where+` ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
}

// CountCards counts the learner's cards, in one state or (state 0) all.
func (Store) CountCards(ctx context.Context, q db.Querier, userID string, state State) (int, error) {
	where, args := `user_id = ?`, []any{userID}
	if state != 0 {
		where += ` AND state = ?`
		args = append(args, state.String())
	}
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM cards WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count cards: %w", err)
	}
	return n, nil
}

// DueReviews returns up to limit studied cards due at or before now, earliest first.
func (Store) DueReviews(ctx context.Context, q db.Querier, userID string, now time.Time, limit int) ([]Card, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryCards(ctx, q, `SELECT `+cardColumns+` FROM cards WHERE user_id = ? AND state <> 'new' AND due <= ?
		ORDER BY due, id LIMIT ?`, userID, now.UnixMilli(), limit)
}

// NewCards returns up to limit new cards, oldest first (the order lessons added them).
func (Store) NewCards(ctx context.Context, q db.Querier, userID string, limit int) ([]Card, error) {
	if limit <= 0 {
		return nil, nil
	}
	return queryCards(ctx, q, `SELECT `+cardColumns+` FROM cards WHERE user_id = ? AND state = 'new'
		ORDER BY created_at, id LIMIT ?`, userID, limit)
}

// DeckCounts are the counts of a learner's deck at a moment.
type DeckCounts struct {
	Total, New, Learning, Review, Relearning, Mastered int
	DueNow, DueToday                                   int // studied cards due by now / by the end of today
}

// CountDeck counts the learner's deck; dueNow and dayEnd bound DueNow and DueToday.
func (Store) CountDeck(ctx context.Context, q db.Querier, userID string, now, dayEnd time.Time) (DeckCounts, error) {
	var c DeckCounts
	err := q.QueryRowContext(ctx, `SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN state = 'new' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = 'learning' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = 'review' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state = 'relearning' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN mastered_at IS NOT NULL THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state <> 'new' AND due <= ? THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state <> 'new' AND due < ? THEN 1 ELSE 0 END), 0)
		FROM cards WHERE user_id = ?`, now.UnixMilli(), dayEnd.UnixMilli(), userID).Scan(
		&c.Total, &c.New, &c.Learning, &c.Review, &c.Relearning, &c.Mastered, &c.DueNow, &c.DueToday)
	if err != nil {
		return DeckCounts{}, fmt.Errorf("count deck: %w", err)
	}
	return c, nil
}

// CountReviews counts the learner's reviews made in [from, to): first reviews of
// new cards, the others, and those rated again.
func (Store) CountReviews(ctx context.Context, q db.Querier, userID string, from, to time.Time) (newCards, others, again int, err error) {
	err = q.QueryRowContext(ctx, `SELECT
		COALESCE(SUM(CASE WHEN state_before = 'new' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN state_before <> 'new' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN rating = 1 THEN 1 ELSE 0 END), 0)
		FROM reviews WHERE user_id = ? AND reviewed_at >= ? AND reviewed_at < ?`,
		userID, from.UnixMilli(), to.UnixMilli()).Scan(&newCards, &others, &again)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("count reviews: %w", err)
	}
	return newCards, others, again, nil
}

// DeleteUser erases the learner's reviews, cards and stored idempotent responses
// (which hold cards too).
func (Store) DeleteUser(ctx context.Context, tx *db.Tx, userID string) error {
	for _, q := range []string{
		`DELETE FROM reviews WHERE user_id = ?`,
		`DELETE FROM cards WHERE user_id = ?`,
		`DELETE FROM idempotency_keys WHERE user_id = ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, userID); err != nil {
			return fmt.Errorf("erase user: %w", err)
		}
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanCard(r rowScanner) (Card, error) {
	var c Card
	var source, state string
	var due, created int64
	var last, mastered sql.NullInt64
	m := &c.Memory
	err := r.Scan(&c.ID, &c.UserID, &c.Term, &c.Translation, &c.PartOfSpeech, &c.Example, &c.ExampleTranslation,
		&c.AudioMediaID, &source, &c.LessonID, &state, &due, &m.Stability, &m.Difficulty, &m.ElapsedDays,
		&m.ScheduledDays, &m.Reps, &m.Lapses, &m.Step, &last, &mastered, &created)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Card{}, err
		}
		return Card{}, fmt.Errorf("scan card: %w", err)
	}
	if m.State, err = ParseState(state); err != nil {
		return Card{}, err
	}
	c.Source = Source(source)
	m.Due, c.CreatedAt = time.UnixMilli(due).UTC(), time.UnixMilli(created).UTC()
	if last.Valid {
		m.LastReview = time.UnixMilli(last.Int64).UTC()
	}
	if mastered.Valid {
		t := time.UnixMilli(mastered.Int64).UTC()
		c.MasteredAt = &t
	}
	return c, nil
}

func queryCards(ctx context.Context, q db.Querier, query string, args ...any) ([]Card, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("select cards: %w", err)
	}
	defer rows.Close()
	var out []Card
	for rows.Next() {
		c, err := scanCard(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select cards: %w", err)
	}
	return out, nil
}

func nullMillis(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func nullMillisPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

// cursorKey and parseCursorKey encode created_at millis in a page cursor.
func cursorKey(c Card) string { return strconv.FormatInt(c.CreatedAt.UnixMilli(), 10) }

func parseCursorKey(k string) (int64, error) {
	n, err := strconv.ParseInt(k, 10, 64)
	if err != nil {
		return 0, apperr.Invalid("page_token", "PAGE_TOKEN_INVALID", "page_token is not a token this API returned")
	}
	return n, nil
}
