package user

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// Role is what a user may do: learners learn, teachers and admins manage content.
type Role string

const (
	RoleLearner Role = "learner"
	RoleTeacher Role = "teacher"
	RoleAdmin   Role = "admin"
)

// Defaults applied at registration when the client leaves a field empty.
const (
	DefaultDailyGoalXP = 20
	DefaultTimezone    = "UTC"
)

// User is the account aggregate. Email is stored normalised (see [NormalizeEmail]).
type User struct {
	ID             string
	Email          string
	Username       string
	PasswordHash   string
	DisplayName    string
	NativeLanguage string
	TargetLanguage string
	Timezone       string
	DailyGoalXP    int32
	AvatarMediaID  string
	Role           Role
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Registration is the input of [NewUser]; shape rules (lengths, patterns) are checked
// by protovalidate before it gets here, the rules below are the domain's own.
type Registration struct {
	Email, Password, Username, DisplayName   string
	NativeLanguage, TargetLanguage, Timezone string
	DailyGoalXP                              int32
}

// NewUser applies the registration rules and returns the user to store, with its
// password hashed. id and now are given so that the function stays free of I/O.
func NewUser(id string, r Registration, now time.Time) (User, error) {
	email := NormalizeEmail(r.Email)
	if email == "" {
		return User{}, apperr.Invalid("email", "EMAIL_REQUIRED", "email is required")
	}
	if strings.TrimSpace(r.Password) == "" {
		return User{}, apperr.Invalid("password", "PASSWORD_BLANK", "password must not be blank")
	}
	if strings.EqualFold(r.Password, email) {
		return User{}, apperr.Invalid("password", "PASSWORD_IS_EMAIL", "password must differ from the email")
	}
	tz := r.Timezone
	if tz == "" {
		tz = DefaultTimezone
	}
	if err := CheckTimezone(tz); err != nil {
		return User{}, err
	}
	goal := r.DailyGoalXP
	if goal == 0 {
		goal = DefaultDailyGoalXP
	}
	if r.NativeLanguage == r.TargetLanguage {
		return User{}, apperr.Invalid("target_language", "SAME_LANGUAGE", "target_language must differ from native_language")
	}
	if err := CheckDisplayName(r.DisplayName); err != nil {
		return User{}, err
	}
	hash, err := HashPassword(r.Password)
	if err != nil {
		return User{}, err
	}
	return User{
		ID: id, Email: email, Username: strings.ToLower(r.Username), PasswordHash: hash,
		DisplayName: strings.TrimSpace(r.DisplayName), NativeLanguage: r.NativeLanguage,
		TargetLanguage: r.TargetLanguage, Timezone: tz, DailyGoalXP: goal, Role: RoleLearner,
		CreatedAt: now, UpdatedAt: now,
	}, nil
}

// CheckDisplayName refuses blank names and names carrying control or
// bidirectional-formatting characters (NUL, U+202E, ...), which would corrupt logs
// and spoof other users' names in leaderboards.
func CheckDisplayName(name string) error {
	if strings.TrimSpace(name) == "" {
		return apperr.Invalid("display_name", "DISPLAY_NAME_BLANK", "display_name must not be blank")
	}
	for _, r := range name {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == utf8.RuneError {
			return apperr.Invalid("display_name", "DISPLAY_NAME_INVALID_CHARACTER",
				fmt.Sprintf("display_name must not contain control or direction characters (found U+%04X)", r))
		}
	}
	return nil
}

// NormalizeEmail trims and lower-cases an address, so that one mailbox is one account.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// CheckTimezone accepts IANA zone names only ("Asia/Ho_Chi_Minh", "UTC").
func CheckTimezone(tz string) error {
	if tz == "Local" {
		return apperr.Invalid("timezone", "TIMEZONE_UNKNOWN", "timezone must be an IANA zone name such as Asia/Ho_Chi_Minh")
	}
	if _, err := time.LoadLocation(tz); err != nil {
		return apperr.Invalid("timezone", "TIMEZONE_UNKNOWN", fmt.Sprintf("unknown timezone %q: use an IANA zone name such as Asia/Ho_Chi_Minh", tz))
	}
	return nil
}

// Patch is a partial update of the profile: nil fields stay as they are.
type Patch struct {
	DisplayName, NativeLanguage, TargetLanguage, Timezone, AvatarMediaID *string
	DailyGoalXP                                                          *int32
}

// Apply changes u by p and returns the names of the fields that actually changed
// (proto field names, as carried by UserProfileUpdated).
func (u *User) Apply(p Patch, now time.Time) ([]string, error) {
	var changed []string
	set := func(name string, dst *string, v *string) {
		if v != nil && *v != *dst {
			*dst = *v
			changed = append(changed, name)
		}
	}
	if p.Timezone != nil {
		if err := CheckTimezone(*p.Timezone); err != nil {
			return nil, err
		}
	}
	if p.DisplayName != nil {
		if err := CheckDisplayName(*p.DisplayName); err != nil {
			return nil, err
		}
		trimmed := strings.TrimSpace(*p.DisplayName)
		p.DisplayName = &trimmed
	}
	if p.DailyGoalXP != nil && *p.DailyGoalXP == 0 {
		def := int32(DefaultDailyGoalXP)
		p.DailyGoalXP = &def // 0 means "back to the default"
	}
	set("display_name", &u.DisplayName, p.DisplayName)
	set("native_language", &u.NativeLanguage, p.NativeLanguage)
	set("target_language", &u.TargetLanguage, p.TargetLanguage)
	set("timezone", &u.Timezone, p.Timezone)
	set("avatar_media_id", &u.AvatarMediaID, p.AvatarMediaID)
	if p.DailyGoalXP != nil && *p.DailyGoalXP != u.DailyGoalXP {
		u.DailyGoalXP = *p.DailyGoalXP
		changed = append(changed, "daily_goal_xp")
	}
	if u.NativeLanguage == u.TargetLanguage {
		return nil, apperr.Invalid("target_language", "SAME_LANGUAGE", "target_language must differ from native_language")
	}
	if len(changed) > 0 {
		u.UpdatedAt = now
	}
	return changed, nil
}

// argon2id parameters: the OWASP 2023 minimum (19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// HashPassword hashes pw with argon2id into the PHC string format
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>".
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches the PHC-encoded argon2id hash, in
// constant time. A malformed hash never matches.
func VerifyPassword(encoded, pw string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem == 0 || t == 0 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, mem, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is verified against when the email is unknown, so that a login for a
// missing account costs the same time as one with a wrong password.
var dummyHash, _ = HashPassword("puchi-timing-equaliser")

// NewRefreshToken returns an opaque refresh token for the client and the hash to
// store. Only the hash is ever persisted.
func NewRefreshToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("refresh token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashRefreshToken(token), nil
}

// HashRefreshToken is the storage key of a refresh token: hex(sha256(token)).
func HashRefreshToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// RefreshToken is one link of a rotation family. A token is usable once: rotating
// it sets RotatedAt; presenting a rotated or revoked token again is reuse, and
// revokes the whole family (OAuth 2.0 Security BCP, refresh token rotation).
type RefreshToken struct {
	ID        string
	FamilyID  string
	UserID    string
	Hash      string
	ExpiresAt time.Time
	CreatedAt time.Time
	RotatedAt *time.Time
	RevokedAt *time.Time
}

// CheckUsable says why t cannot be exchanged, or nil. errReuse signals the caller
// must revoke the family.
func (t RefreshToken) CheckUsable(now time.Time) (reuse bool, err error) {
	switch {
	case t.RevokedAt != nil || t.RotatedAt != nil:
		return true, apperr.Unauthenticated("REFRESH_TOKEN_REUSED", "refresh token was already used; sign in again")
	case !now.Before(t.ExpiresAt):
		return false, apperr.Unauthenticated("REFRESH_TOKEN_EXPIRED", "refresh token expired; sign in again")
	}
	return false, nil
}
