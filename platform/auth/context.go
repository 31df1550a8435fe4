package auth

import (
	"context"
	"slices"

	"github.com/puchi-dev/puchi/platform/apperr"
)

type claimsKey struct{}

// WithClaims returns a copy of ctx carrying the verified caller. The gRPC
// server's authentication interceptor calls it; handlers read it back with
// [FromContext].
func WithClaims(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// FromContext returns the caller placed by [WithClaims], if any.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(Claims)
	return c, ok
}

// Require returns the caller's claims if the caller is authenticated and,
// when roles are given, holds one of them. It fails with an *apperr.Error:
// KindUnauthenticated ([ReasonTokenMissing]) without a caller, KindForbidden
// ([ReasonForbidden]) with the wrong role.
func Require(ctx context.Context, roles ...string) (Claims, error) {
	c, ok := FromContext(ctx)
	if !ok {
		return Claims{}, apperr.Unauthenticated(ReasonTokenMissing, "authentication required")
	}
	if len(roles) > 0 && !slices.Contains(roles, c.Role) {
		return Claims{}, apperr.Forbidden(ReasonForbidden, "not allowed for role "+c.Role)
	}
	return c, nil
}

// RequireOwner returns the caller's claims if the caller is the user ownerID
// or an admin: the ownership rule for per-user data (a learner reads only
// their own). Errors are as for [Require].
func RequireOwner(ctx context.Context, ownerID string) (Claims, error) {
	c, err := Require(ctx)
	if err != nil {
		return Claims{}, err
	}
	if c.UserID != ownerID && c.Role != RoleAdmin {
		return Claims{}, apperr.Forbidden(ReasonForbidden, "not the owner of this resource")
	}
	return c, nil
}

// RequireUser returns the id of the signed-in caller. It fails with an
// *apperr.Error of KindUnauthenticated ([ReasonTokenMissing]) without a caller
// (as [Require]) or when the caller's claims carry no user id.
func RequireUser(ctx context.Context) (string, error) {
	c, err := Require(ctx)
	if err != nil {
		return "", err
	}
	if c.UserID == "" {
		return "", apperr.Unauthenticated(ReasonTokenMissing, "sign in first")
	}
	return c.UserID, nil
}
