package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// Roles a token may carry.
const (
	RoleLearner = "learner" // uses lessons, reviews words, takes quizzes; sees only their own data
	RoleTeacher = "teacher" // manages content
	RoleAdmin   = "admin"   // manages content and users
)

// ValidRole reports whether role is one of [RoleLearner], [RoleTeacher], [RoleAdmin].
func ValidRole(role string) bool {
	switch role {
	case RoleLearner, RoleTeacher, RoleAdmin:
		return true
	}
	return false
}

// Reasons carried by the errors of this package (apperr.Error.Reason, and so
// the gRPC ErrorInfo reason).
const (
	ReasonTokenMissing = "TOKEN_MISSING" // no bearer token on a protected call
	ReasonTokenInvalid = "TOKEN_INVALID" // malformed, wrong signature, algorithm, key, issuer or audience
	ReasonTokenExpired = "TOKEN_EXPIRED" // well-formed but past its exp (client should refresh)
	ReasonForbidden    = "FORBIDDEN"     // authenticated but not allowed
)

// SigningMethod is the only JWT "alg" issued and accepted.
const SigningMethod = "EdDSA"

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat.
const DefaultLeeway = 5 * time.Second

// Claims is the verified identity of a caller.
type Claims struct {
	UserID    string    // the "sub" claim
	Role      string    // one of the Role constants
	ExpiresAt time.Time // the "exp" claim
	ID        string    // the "jti" claim, unique per token
}

// tokenClaims is the JWT body: the registered claims plus the role.
type tokenClaims struct {
	jwt.RegisteredClaims
	Role string `json:"role"`
}

// TokenConfig names who issues tokens and for whom. Issuer and verifier must
// agree on both values.
type TokenConfig struct {
	Issuer   string // "iss", e.g. "puchi-user"
	Audience string // "aud", e.g. "puchi"
	// Leeway is the tolerated clock skew; zero means DefaultLeeway.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

func (c TokenConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Issuer signs access tokens. It is safe for concurrent use.
type Issuer struct {
	key *KeyPair
	cfg TokenConfig
}

// NewIssuer returns an Issuer signing with key. Issuer and Audience must be
// set.
func NewIssuer(key *KeyPair, cfg TokenConfig) (*Issuer, error) {
	if key == nil || len(key.Private) != ed25519.PrivateKeySize {
		return nil, errors.New("auth: issuer needs an Ed25519 private key")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: issuer needs Issuer and Audience")
	}
	return &Issuer{key: key, cfg: cfg}, nil
}

// Issue signs a token for userID with role, valid from now for ttl. The token
// carries iss, aud, sub, exp, iat, nbf, a random jti and the role, with the
// key id in the "kid" header. It returns the compact token and its expiry.
func (i *Issuer) Issue(userID, role string, ttl time.Duration) (token string, exp time.Time, err error) {
	if userID == "" {
		return "", time.Time{}, errors.New("auth: issue: empty user id")
	}
	if !ValidRole(role) {
		return "", time.Time{}, fmt.Errorf("auth: issue: unknown role %q", role)
	}
	now := i.cfg.now().Truncate(time.Second)
	exp = now.Add(ttl)
	claims := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   userID,
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        rand.Text(),
		},
		Role: role,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	t.Header["kid"] = i.key.ID
	token, err = t.SignedString(i.key.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, exp, nil
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	keys   map[string]ed25519.PublicKey
	parser *jwt.Parser
}

// NewVerifier returns a Verifier accepting tokens signed by any of keys
// (several during a key rotation), selected by the "kid" header.
func NewVerifier(cfg TokenConfig, keys ...ed25519.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: verifier needs at least one public key")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: verifier needs Issuer and Audience")
	}
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("auth: verifier key is not an Ed25519 public key")
		}
		v.keys[KeyID(k)] = k
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{SigningMethod}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(cfg.now),
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Verify checks token and returns its claims. Failures are *apperr.Error of
// kind KindUnauthenticated with reason [ReasonTokenExpired] for an expired
// but otherwise valid token and [ReasonTokenInvalid] for anything else; the
// underlying jwt error is the Cause (logged, never sent to clients).
func (v *Verifier) Verify(token string) (Claims, error) {
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.key)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) && !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return Claims{}, invalid(ReasonTokenExpired, "access token expired", err)
		}
		return Claims{}, invalid(ReasonTokenInvalid, "invalid access token", err)
	}
	if tc.Subject == "" {
		return Claims{}, invalid(ReasonTokenInvalid, "invalid access token", errors.New("empty sub"))
	}
	if !ValidRole(tc.Role) {
		return Claims{}, invalid(ReasonTokenInvalid, "invalid access token", fmt.Errorf("unknown role %q", tc.Role))
	}
	return Claims{UserID: tc.Subject, Role: tc.Role, ExpiresAt: tc.ExpiresAt.Time, ID: tc.ID}, nil
}

// key is the jwt.Keyfunc: the algorithm was already checked against the
// allowlist by the parser; the key is chosen by kid only.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
		return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
	}
	kid, _ := t.Header["kid"].(string)
	k, ok := v.keys[kid]
	if !ok {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	return k, nil
}

func invalid(reason, msg string, cause error) *apperr.Error {
	return &apperr.Error{Kind: apperr.KindUnauthenticated, Reason: reason, Message: msg, Cause: cause}
}
