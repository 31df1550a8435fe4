package apperr

import (
	"errors"
	"fmt"
	"testing"
)

func TestKindOfAndAsThroughWrapping(t *testing.T) {
	t.Parallel()
	base := Invalid("email", "EMAIL_BAD", "email is not valid")
	cases := []struct {
		name string
		err  error
		kind Kind
		ok   bool
	}{
		{"direct", base, KindInvalid, true},
		{"wrapped", fmt.Errorf("register: %w", base), KindInvalid, true},
		{"joined", errors.Join(errors.New("x"), NotFound("NOPE", "gone")), KindNotFound, true},
		{"plain error is internal", errors.New("disk on fire"), KindInternal, false},
		{"nil is internal", nil, KindInternal, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := KindOf(c.err); got != c.kind {
				t.Errorf("KindOf = %v, want %v", got, c.kind)
			}
			if _, ok := As(c.err); ok != c.ok {
				t.Errorf("As ok = %v, want %v", ok, c.ok)
			}
		})
	}
}

func TestErrorTextAndCause(t *testing.T) {
	t.Parallel()
	cause := errors.New("unique constraint users.email")
	e := &Error{Kind: KindConflict, Reason: "EMAIL_TAKEN", Message: "email taken", Cause: cause}
	if !errors.Is(e, cause) {
		t.Error("cause is not reachable through Unwrap")
	}
	if got := e.Error(); got != "EMAIL_TAKEN: email taken: unique constraint users.email" {
		t.Errorf("Error() = %q", got)
	}
	if got := Conflict("X", "y").Error(); got != "X: y" {
		t.Errorf("Error() without cause = %q", got)
	}
	for _, c := range []struct {
		e    *Error
		kind Kind
	}{{Unauthenticated("A", "b"), KindUnauthenticated}, {Forbidden("A", "b"), KindForbidden}, {New(KindTooMany, "A", "b"), KindTooMany}} {
		if c.e.Kind != c.kind {
			t.Errorf("%v has kind %v, want %v", c.e, c.e.Kind, c.kind)
		}
	}
}
