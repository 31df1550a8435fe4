package user

import (
	"strings"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/apperr"
)

func validRegistration() Registration {
	return Registration{
		Email: "  Lan@Example.COM ", Password: "correct horse", Username: "Lan_1", DisplayName: " Lan ",
		NativeLanguage: "vi", TargetLanguage: "en", Timezone: "Asia/Ho_Chi_Minh",
	}
}

func TestNewUserNormalisesAndDefaults(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	r := validRegistration()
	r.Timezone = ""
	u, err := NewUser("id-1", r, now)
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "lan@example.com" || u.Username != "lan_1" || u.DisplayName != "Lan" {
		t.Errorf("not normalised: %+v", u)
	}
	if u.Timezone != DefaultTimezone || u.DailyGoalXP != DefaultDailyGoalXP || u.Role != RoleLearner {
		t.Errorf("defaults not applied: tz=%q goal=%d role=%q", u.Timezone, u.DailyGoalXP, u.Role)
	}
	if !VerifyPassword(u.PasswordHash, "correct horse") || strings.Contains(u.PasswordHash, "correct") {
		t.Errorf("password hash wrong or reveals the password: %q", u.PasswordHash)
	}
}

func TestNewUserRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  func(*Registration)
		field string
	}{
		{"blank email", func(r *Registration) { r.Email = "   " }, "email"},
		{"blank password", func(r *Registration) { r.Password = "         " }, "password"},
		{"password is the email", func(r *Registration) { r.Password = "LAN@example.com" }, "password"},
		{"unknown timezone", func(r *Registration) { r.Timezone = "Mars/Olympus" }, "timezone"},
		{"Local is not a zone name", func(r *Registration) { r.Timezone = "Local" }, "timezone"},
		{"same languages", func(r *Registration) { r.TargetLanguage = "vi" }, "target_language"},
		{"NUL in display name", func(r *Registration) { r.DisplayName = "Lan\x00" }, "display_name"},
		{"bidi override in display name", func(r *Registration) { r.DisplayName = "\u202eLan" }, "display_name"},
		{"invalid UTF-8 in display name", func(r *Registration) { r.DisplayName = "Lan\xff" }, "display_name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := validRegistration()
			c.edit(&r)
			_, err := NewUser("id", r, time.Now())
			e, ok := apperr.As(err)
			if !ok || e.Kind != apperr.KindInvalid || e.Field != c.field {
				t.Fatalf("got %v, want an invalid-argument error on %q", err, c.field)
			}
		})
	}
}

func TestApplyReportsChangedFieldsOnly(t *testing.T) {
	t.Parallel()
	u, err := NewUser("id", validRegistration(), time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	same, other, goal := "Lan", "Chi", int32(50)
	later := time.Unix(100, 0)
	changed, err := u.Apply(Patch{DisplayName: &same}, later)
	if err != nil || len(changed) != 0 || !u.UpdatedAt.Equal(time.Unix(0, 0)) {
		t.Fatalf("no-op patch: changed=%v err=%v updated=%v", changed, err, u.UpdatedAt)
	}
	changed, err = u.Apply(Patch{DisplayName: &other, DailyGoalXP: &goal}, later)
	if err != nil || strings.Join(changed, ",") != "display_name,daily_goal_xp" || !u.UpdatedAt.Equal(later) {
		t.Fatalf("changed=%v err=%v updated=%v", changed, err, u.UpdatedAt)
	}
	zero := int32(0)
	if changed, err := u.Apply(Patch{DailyGoalXP: &zero}, later); err != nil || u.DailyGoalXP != DefaultDailyGoalXP || len(changed) != 1 {
		t.Fatalf("goal 0 should reset to the default: goal=%d changed=%v err=%v", u.DailyGoalXP, changed, err)
	}
	blank, vi, bad, nul, bidi := "  ", "vi", "Nowhere/City", "Lan\x00x", "Lan\u202eevil"
	for _, p := range []Patch{{DisplayName: &blank}, {TargetLanguage: &vi}, {Timezone: &bad}, {DisplayName: &nul}, {DisplayName: &bidi}} {
		if _, err := u.Apply(p, later); apperr.KindOf(err) != apperr.KindInvalid {
			t.Errorf("patch %+v: got %v, want invalid", p, err)
		}
	}
}

func TestVerifyPasswordRejectsMalformedAndWrong(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("s3cret-pass")
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("s3cret-pass")
	if h == h2 {
		t.Error("two hashes of one password are equal: salt is not random")
	}
	for _, enc := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AAAA$AAAA", strings.Replace(h, "m=19456", "m=0", 1), h[:len(h)-4]} {
		if VerifyPassword(enc, "s3cret-pass") {
			t.Errorf("malformed hash %q verified", enc)
		}
	}
	if VerifyPassword(h, "s3cret-pasS") {
		t.Error("wrong password verified")
	}
}

func TestRefreshTokenUsability(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	past := now.Add(-time.Second)
	tok, hash, err := NewRefreshToken()
	if err != nil || HashRefreshToken(tok) != hash || len(tok) < 40 {
		t.Fatalf("token %q hash %q err %v", tok, hash, err)
	}
	cases := []struct {
		name      string
		t         RefreshToken
		reuse     bool
		wantError string
	}{
		{"fresh", RefreshToken{ExpiresAt: now.Add(time.Hour)}, false, ""},
		{"expired", RefreshToken{ExpiresAt: now}, false, "REFRESH_TOKEN_EXPIRED"},
		{"rotated", RefreshToken{ExpiresAt: now.Add(time.Hour), RotatedAt: &past}, true, "REFRESH_TOKEN_REUSED"},
		{"revoked", RefreshToken{ExpiresAt: now.Add(time.Hour), RevokedAt: &past}, true, "REFRESH_TOKEN_REUSED"},
	}
	for _, c := range cases {
		reuse, err := c.t.CheckUsable(now)
		reason := ""
		if e, ok := apperr.As(err); ok {
			reason = e.Reason
		}
		if reuse != c.reuse || reason != c.wantError {
			t.Errorf("%s: reuse=%v err=%v, want reuse=%v reason=%q", c.name, reuse, err, c.reuse, c.wantError)
		}
	}
}
