// Package apperr is Puchi's one error taxonomy. Domain code returns these typed errors;
// platform/grpcx maps them once to gRPC status codes with an ErrorInfo reason, and the
// gateway maps those to HTTP. Call sites never build gRPC statuses themselves.
package apperr

import (
	"errors"
	"fmt"
)

// Kind classifies an error for clients; each Kind maps to one gRPC code.
type Kind int

const (
	KindInternal           Kind = iota // a bug or an unexpected failure: codes.Internal, no detail leaked
	KindInvalid                        // bad input: codes.InvalidArgument (400)
	KindNotFound                       // codes.NotFound (404)
	KindConflict                       // already exists: codes.AlreadyExists (409)
	KindUnauthenticated                // codes.Unauthenticated (401)
	KindForbidden                      // codes.PermissionDenied (403)
	KindFailedPrecondition             // codes.FailedPrecondition (400)
	KindUnavailable                    // codes.Unavailable (503)
	KindTooMany                        // codes.ResourceExhausted (429)
)

// Error is a domain error: a Kind, a stable machine-readable Reason
// (UPPER_SNAKE, e.g. "EMAIL_TAKEN"), a message safe to show to clients, an optional
// Field it concerns, and an optional wrapped cause that is logged but never sent.
type Error struct {
	Kind    Kind
	Reason  string
	Message string
	Field   string
	Cause   error
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.Reason, e.Message, e.Cause)
	}
	return e.Reason + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns an *Error of the given kind.
func New(kind Kind, reason, msg string) *Error {
	return &Error{Kind: kind, Reason: reason, Message: msg}
}

// Invalid reports bad input in field.
func Invalid(field, reason, msg string) *Error {
	return &Error{Kind: KindInvalid, Reason: reason, Message: msg, Field: field}
}

// NotFound, Conflict, Unauthenticated and Forbidden are shorthands for [New].
func NotFound(reason, msg string) *Error        { return New(KindNotFound, reason, msg) }
func Conflict(reason, msg string) *Error        { return New(KindConflict, reason, msg) }
func Unauthenticated(reason, msg string) *Error { return New(KindUnauthenticated, reason, msg) }
func Forbidden(reason, msg string) *Error       { return New(KindForbidden, reason, msg) }

// As returns the *Error in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// KindOf returns the Kind of err, KindInternal when err is not an *Error.
func KindOf(err error) Kind {
	if e, ok := As(err); ok {
		return e.Kind
	}
	return KindInternal
}
