package grpcx

import (
	"context"
	"errors"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// ErrorDomain is the ErrorInfo domain of every error Puchi's services return.
const ErrorDomain = "puchi.dev"

// ReasonValidationFailed is the ErrorInfo reason of a request rejected by its
// protovalidate rules; the field violations are in a BadRequest detail.
const ReasonValidationFailed = "VALIDATION_FAILED"

// internalMessage is all a client learns about an unexpected failure.
const internalMessage = "internal error"

// kindCodes maps each apperr.Kind to its gRPC code and the reason used when
// the error has none.
var kindCodes = map[apperr.Kind]struct {
	code   codes.Code
	reason string
}{
	apperr.KindInternal:           {codes.Internal, "INTERNAL"},
	apperr.KindInvalid:            {codes.InvalidArgument, "INVALID_ARGUMENT"},
	apperr.KindNotFound:           {codes.NotFound, "NOT_FOUND"},
	apperr.KindConflict:           {codes.AlreadyExists, "ALREADY_EXISTS"},
	apperr.KindUnauthenticated:    {codes.Unauthenticated, "UNAUTHENTICATED"},
	apperr.KindForbidden:          {codes.PermissionDenied, "PERMISSION_DENIED"},
	apperr.KindFailedPrecondition: {codes.FailedPrecondition, "FAILED_PRECONDITION"},
	apperr.KindUnavailable:        {codes.Unavailable, "UNAVAILABLE"},
	apperr.KindTooMany:            {codes.ResourceExhausted, "RESOURCE_EXHAUSTED"},
}

// CodeOf returns the gRPC code an apperr.Kind maps to (codes.Internal for an
// unknown Kind).
func CodeOf(k apperr.Kind) codes.Code {
	if c, ok := kindCodes[k]; ok {
		return c.code
	}
	return codes.Internal
}

// ToStatus converts err into a gRPC status error, the one mapping from
// Puchi's error taxonomy to the wire:
//
//   - nil stays nil.
//   - An *apperr.Error anywhere in the chain becomes the code of its Kind with
//     its Message and a google.rpc.ErrorInfo{Reason, Domain: [ErrorDomain],
//     Metadata: {"field": Field}}; when Field is set a google.rpc.BadRequest
//     field violation is attached too. KindInternal (and unknown kinds) become
//     codes.Internal "internal error", keeping Reason but not Message.
//   - A *protovalidate.ValidationError becomes InvalidArgument with reason
//     [ReasonValidationFailed] and one BadRequest field violation per rule.
//   - context.Canceled and context.DeadlineExceeded become Canceled and
//     DeadlineExceeded.
//   - An error that carries a gRPC status (possibly wrapped, e.g. a downstream
//     call's error) passes through as that status, without the wrapping text.
//   - Anything else becomes codes.Internal "internal error".
//
// ToStatus never puts a Cause or an unexpected error's text on the wire; the
// server interceptor logs those.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if ae, ok := apperr.As(err); ok {
		return appStatus(ae).Err()
	}
	var ve *protovalidate.ValidationError
	if errors.As(err, &ve) {
		return validationStatus(ve).Err()
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	// A status anywhere in the chain (a downstream call's error, wrapped)
	// passes through as it was received, without the wrapping text.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) && se.GRPCStatus() != nil {
		return se.GRPCStatus().Err()
	}
	return status.Error(codes.Internal, internalMessage)
}

// isUnexpected reports whether err is a failure the client is told nothing
// about, so the server must log it in full.
func isUnexpected(err error) bool {
	if err == nil {
		return false
	}
	if ae, ok := apperr.As(err); ok {
		return CodeOf(ae.Kind) == codes.Internal
	}
	var ve *protovalidate.ValidationError
	if errors.As(err, &ve) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	_, isStatus := status.FromError(err)
	return !isStatus
}

func appStatus(ae *apperr.Error) *status.Status {
	m, known := kindCodes[ae.Kind]
	if !known {
		m = kindCodes[apperr.KindInternal]
	}
	reason := ae.Reason
	if reason == "" {
		reason = m.reason
	}
	msg := ae.Message
	if m.code == codes.Internal || msg == "" {
		msg = internalMessage
		if m.code != codes.Internal {
			msg = m.reason
		}
	}
	info := &errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}
	if ae.Field != "" {
		info.Metadata = map[string]string{"field": ae.Field}
	}
	var details []*errdetails.BadRequest_FieldViolation
	if ae.Field != "" && m.code != codes.Internal {
		details = append(details, &errdetails.BadRequest_FieldViolation{
			Field: ae.Field, Description: msg, Reason: reason,
		})
	}
	return withDetails(status.New(m.code, msg), info, details)
}

func validationStatus(ve *protovalidate.ValidationError) *status.Status {
	violations := make([]*errdetails.BadRequest_FieldViolation, 0, len(ve.Violations))
	for _, v := range ve.Violations {
		if v == nil || v.Proto == nil {
			continue
		}
		desc := v.Proto.GetMessage()
		if desc == "" {
			desc = v.Proto.GetRuleId()
		}
		violations = append(violations, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: desc,
			Reason:      v.Proto.GetRuleId(),
		})
	}
	msg := "invalid request"
	if len(violations) > 0 {
		f := violations[0]
		msg = "invalid request: " + f.Description
		if f.Field != "" {
			msg = "invalid request: " + f.Field + ": " + f.Description
		}
	}
	info := &errdetails.ErrorInfo{Reason: ReasonValidationFailed, Domain: ErrorDomain}
	return withDetails(status.New(codes.InvalidArgument, msg), info, violations)
}

func withDetails(st *status.Status, info *errdetails.ErrorInfo, fvs []*errdetails.BadRequest_FieldViolation) *status.Status {
	ds := []protoadapt.MessageV1{info}
	if len(fvs) > 0 {
		ds = append(ds, &errdetails.BadRequest{FieldViolations: fvs})
	}
	withD, err := st.WithDetails(ds...)
	if err != nil {
		return st // details are best effort; the code and message stand
	}
	return withD
}
