package user

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
)

// Store is the user service's persistence. Every method takes the transaction it
// runs in; the caller (service.go) owns transaction boundaries so that state and
// outbox rows commit together.
type Store struct{}

const userColumns = `id, email, username, password_hash, display_name, native_language, target_language,
	timezone, daily_goal_xp, avatar_media_id, role, created_at, updated_at`

// CreateUser inserts u. A taken email or username is a Conflict naming the field.
func (Store) CreateUser(ctx context.Context, tx *db.Tx, u User) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		u.ID, u.Email, u.Username, u.PasswordHash, u.DisplayName, u.NativeLanguage, u.TargetLanguage,
		u.Timezone, u.DailyGoalXP, u.AvatarMediaID, string(u.Role), u.CreatedAt.UnixMilli(), u.UpdatedAt.UnixMilli())
	if db.IsUniqueViolation(err) {
		if strings.Contains(err.Error(), "username") {
			return &apperr.Error{Kind: apperr.KindConflict, Reason: "USERNAME_TAKEN", Message: "username is already taken", Field: "username"}
		}
		return &apperr.Error{Kind: apperr.KindConflict, Reason: "EMAIL_TAKEN", Message: "an account with this email already exists", Field: "email"}
	}
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	return nil
}

// UserByID, UserByEmail and UserByUsername return NotFound when there is no such user.
func (s Store) UserByID(ctx context.Context, q db.Querier, id string) (User, error) {
	return s.userWhere(ctx, q, "id = ?", id)
}

func (s Store) UserByEmail(ctx context.Context, q db.Querier, email string) (User, error) {
	return s.userWhere(ctx, q, "email = ?", email)
}

func (s Store) UserByUsername(ctx context.Context, q db.Querier, username string) (User, error) {
	return s.userWhere(ctx, q, "username = ?", strings.ToLower(username))
}

func (Store) userWhere(ctx context.Context, q db.Querier, where string, arg any) (User, error) {
	var u User
	var role string
	var created, updated int64
	err := q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE `+where, arg).Scan(
		&u.ID, &u.Email, &u.Username, &u.PasswordHash, &u.DisplayName, &u.NativeLanguage, &u.TargetLanguage,
		&u.Timezone, &u.DailyGoalXP, &u.AvatarMediaID, &role, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, apperr.NotFound("USER_NOT_FOUND", "user not found")
	}
	if err != nil {
		return User{}, fmt.Errorf("select user: %w", err)
	}
	u.Role = Role(role)
	u.CreatedAt, u.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return u, nil
}

// UpdateProfile writes the mutable profile fields of u.
func (Store) UpdateProfile(ctx context.Context, tx *db.Tx, u User) error {
	_, err := tx.ExecContext(ctx, `UPDATE users SET display_name = ?, native_language = ?, target_language = ?,
		timezone = ?, daily_goal_xp = ?, avatar_media_id = ?, updated_at = ? WHERE id = ?`,
		u.DisplayName, u.NativeLanguage, u.TargetLanguage, u.Timezone, u.DailyGoalXP, u.AvatarMediaID,
		u.UpdatedAt.UnixMilli(), u.ID)
	if err != nil {
		return fmt.Errorf("update user: %w", err)
	}
	return nil
}

// DeleteUser erases the user row and, by cascade and explicitly, their refresh tokens.
func (Store) DeleteUser(ctx context.Context, tx *db.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE user_id = ?`, id); err != nil {
		return fmt.Errorf("delete refresh tokens: %w", err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("delete user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return apperr.NotFound("USER_NOT_FOUND", "user not found")
	}
	return nil
}

// DisplayNames returns id → display name for the ids that exist.
func (Store) DisplayNames(ctx context.Context, q db.Querier, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.QueryContext(ctx, `SELECT id, display_name FROM users WHERE id IN (?`+strings.Repeat(",?", len(ids)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("select display names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("scan display name: %w", err)
		}
		out[id] = name
	}
	return out, rows.Err()
}

// InsertRefreshToken stores a new token (its hash only).
func (Store) InsertRefreshToken(ctx context.Context, tx *db.Tx, t RefreshToken) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at, created_at)
		VALUES (?,?,?,?,?,?)`, t.ID, t.FamilyID, t.UserID, t.Hash, t.ExpiresAt.UnixMilli(), t.CreatedAt.UnixMilli())
	if err != nil {
		return fmt.Errorf("insert refresh token: %w", err)
	}
	return nil
}

// RefreshTokenByHash returns Unauthenticated when no token has that hash.
func (Store) RefreshTokenByHash(ctx context.Context, tx *db.Tx, hash string) (RefreshToken, error) {
	var t RefreshToken
	var expires, created int64
	var rotated, revoked sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT id, family_id, user_id, token_hash, expires_at, created_at, rotated_at, revoked_at
		FROM refresh_tokens WHERE token_hash = ?`, hash).Scan(&t.ID, &t.FamilyID, &t.UserID, &t.Hash, &expires, &created, &rotated, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return RefreshToken{}, apperr.Unauthenticated("REFRESH_TOKEN_INVALID", "refresh token is not valid")
	}
	if err != nil {
		return RefreshToken{}, fmt.Errorf("select refresh token: %w", err)
	}
	t.ExpiresAt, t.CreatedAt = time.UnixMilli(expires), time.UnixMilli(created)
	if rotated.Valid {
		v := time.UnixMilli(rotated.Int64)
		t.RotatedAt = &v
	}
	if revoked.Valid {
		v := time.UnixMilli(revoked.Int64)
		t.RevokedAt = &v
	}
	return t, nil
}

// MarkRotated marks a token used, only if it was still fresh; it reports false when
// another request rotated it first (a concurrent reuse).
func (Store) MarkRotated(ctx context.Context, tx *db.Tx, id string, now time.Time) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET rotated_at = ? WHERE id = ? AND rotated_at IS NULL AND revoked_at IS NULL`,
		now.UnixMilli(), id)
	if err != nil {
		return false, fmt.Errorf("rotate refresh token: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// RevokeFamily revokes every token of a rotation family.
func (Store) RevokeFamily(ctx context.Context, tx *db.Tx, familyID string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL`,
		now.UnixMilli(), familyID)
	if err != nil {
		return fmt.Errorf("revoke refresh family: %w", err)
	}
	return nil
}
