package auth_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
)

var testCfg = auth.TokenConfig{Issuer: "puchi-user", Audience: "puchi"}

func mustKey(t *testing.T) *auth.KeyPair {
	t.Helper()
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustIssue(t *testing.T, k *auth.KeyPair, cfg auth.TokenConfig, ttl time.Duration) string {
	t.Helper()
	iss, err := auth.NewIssuer(k, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.Issue("user-1", auth.RoleLearner, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forge signs claims with an arbitrary method and key, bypassing Issuer.
func forge(t *testing.T, m jwt.SigningMethod, key any, kid string) string {
	t.Helper()
	now := time.Now()
	tok := jwt.NewWithClaims(m, jwt.MapClaims{
		"iss": testCfg.Issuer, "aud": testCfg.Audience, "sub": "user-1", "role": auth.RoleAdmin,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "nbf": now.Unix(), "jti": "x",
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	t.Parallel()
	key, other := mustKey(t), mustKey(t)
	verifier, err := auth.NewVerifier(testCfg, key.Public)
	if err != nil {
		t.Fatal(err)
	}
	valid := mustIssue(t, key, testCfg, time.Hour)
	parts := strings.Split(valid, ".")
	tamperedPayload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"iss":"puchi-user","aud":["puchi"],"sub":"someone-else","role":"admin","exp":9999999999,"iat":1,"nbf":1,"jti":"x"}`))

	tests := []struct {
		name       string
		token      string
		wantReason string // "" means valid
	}{
		{"valid", valid, ""},
		{"expired", mustIssue(t, key, testCfg, -time.Minute), auth.ReasonTokenExpired},
		{"within leeway", mustIssue(t, key, testCfg, -2*time.Second), ""},
		{"not yet valid", mustIssue(t, key, auth.TokenConfig{Issuer: "puchi-user", Audience: "puchi",
			Now: func() time.Time { return time.Now().Add(time.Hour) }}, 2*time.Hour), auth.ReasonTokenInvalid},
		{"wrong audience", mustIssue(t, key, auth.TokenConfig{Issuer: "puchi-user", Audience: "other"}, time.Hour), auth.ReasonTokenInvalid},
		{"wrong issuer", mustIssue(t, key, auth.TokenConfig{Issuer: "evil", Audience: "puchi"}, time.Hour), auth.ReasonTokenInvalid},
		{"unknown key", mustIssue(t, other, testCfg, time.Hour), auth.ReasonTokenInvalid},
		{"wrong key with our kid", forge(t, jwt.SigningMethodEdDSA, other.Private, key.ID), auth.ReasonTokenInvalid},
		{"HS256 keyed with public key", forge(t, jwt.SigningMethodHS256, []byte(key.Public), key.ID), auth.ReasonTokenInvalid},
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, key.ID), auth.ReasonTokenInvalid},
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], auth.ReasonTokenInvalid},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), auth.ReasonTokenInvalid},
		{"garbage", "not-a-jwt", auth.ReasonTokenInvalid},
		{"empty", "", auth.ReasonTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := verifier.Verify(tt.token)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Verify() = %v", err)
				}
				if c.UserID != "user-1" || c.Role != auth.RoleLearner || c.ID == "" || c.ExpiresAt.IsZero() {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			ae, ok := apperr.As(err)
			if !ok {
				t.Fatalf("Verify() = %v, want *apperr.Error", err)
			}
			if ae.Kind != apperr.KindUnauthenticated || ae.Reason != tt.wantReason {
				t.Errorf("Verify() = kind %v reason %q, want Unauthenticated %q (%v)", ae.Kind, ae.Reason, tt.wantReason, err)
			}
		})
	}
}

func TestIssueHeaderAndClaims(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := auth.TokenConfig{Issuer: "puchi-user", Audience: "puchi", Now: func() time.Time { return now }}
	iss, err := auth.NewIssuer(key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	tok, exp, err := iss.Issue("u-9", auth.RoleTeacher, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(now.Add(15 * time.Minute)) {
		t.Errorf("exp = %v", exp)
	}
	parsed, _, err := jwt.NewParser().ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header["alg"] != "EdDSA" || parsed.Header["kid"] != key.ID {
		t.Errorf("header = %v", parsed.Header)
	}
	mc := parsed.Claims.(jwt.MapClaims)
	for _, name := range []string{"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role"} {
		if _, ok := mc[name]; !ok {
			t.Errorf("claim %q missing in %v", name, mc)
		}
	}
	v, err := auth.NewVerifier(cfg, key.Public)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "u-9" || c.Role != auth.RoleTeacher || !c.ExpiresAt.Equal(exp) {
		t.Errorf("claims = %+v", c)
	}
	if _, _, err := iss.Issue("u-9", "superuser", time.Minute); err == nil {
		t.Error("Issue with unknown role succeeded")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys", "jwt.pem")
	first, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}
	second, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || !second.Private.Equal(first.Private) {
		t.Error("second load returned a different key")
	}
	pub, err := auth.LoadPublicKey(path)
	if err != nil || !pub.Equal(first.Public) {
		t.Errorf("LoadPublicKey() = %v, %v", pub, err)
	}
	pubPEM, err := first.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	pub2, err := auth.ParsePublicKeyPEM(pubPEM)
	if err != nil || !pub2.Equal(first.Public) {
		t.Errorf("ParsePublicKeyPEM() = %v, %v", pub2, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateKey(bad); err == nil {
		t.Error("LoadOrCreateKey overwrote or accepted a corrupt key file")
	}
	if data, _ := os.ReadFile(bad); string(data) != "garbage" {
		t.Error("corrupt key file was modified")
	}
}

func TestRequire(t *testing.T) {
	t.Parallel()
	learner := auth.WithClaims(context.Background(), auth.Claims{UserID: "u1", Role: auth.RoleLearner})
	admin := auth.WithClaims(context.Background(), auth.Claims{UserID: "a1", Role: auth.RoleAdmin})
	tests := []struct {
		name     string
		call     func() error
		wantKind apperr.Kind
		wantOK   bool
	}{
		{"anonymous", func() error { _, err := auth.Require(context.Background()); return err }, apperr.KindUnauthenticated, false},
		{"any role", func() error { _, err := auth.Require(learner); return err }, 0, true},
		{"wrong role", func() error { _, err := auth.Require(learner, auth.RoleTeacher, auth.RoleAdmin); return err }, apperr.KindForbidden, false},
		{"right role", func() error { _, err := auth.Require(admin, auth.RoleTeacher, auth.RoleAdmin); return err }, 0, true},
		{"owner", func() error { _, err := auth.RequireOwner(learner, "u1"); return err }, 0, true},
		{"not owner", func() error { _, err := auth.RequireOwner(learner, "u2"); return err }, apperr.KindForbidden, false},
		{"admin not owner", func() error { _, err := auth.RequireOwner(admin, "u2"); return err }, 0, true},
		{"user", func() error {
			id, err := auth.RequireUser(learner)
			if err == nil && id != "u1" {
				return fmt.Errorf("RequireUser = %q, want u1", id)
			}
			return err
		}, 0, true},
		{"anonymous user", func() error { _, err := auth.RequireUser(context.Background()); return err }, apperr.KindUnauthenticated, false},
		{"no user id", func() error {
			_, err := auth.RequireUser(auth.WithClaims(context.Background(), auth.Claims{Role: auth.RoleLearner}))
			return err
		}, apperr.KindUnauthenticated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			if tt.wantOK {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if got := apperr.KindOf(err); err == nil || got != tt.wantKind {
				t.Errorf("err = %v (kind %v), want kind %v", err, got, tt.wantKind)
			}
		})
	}
}
