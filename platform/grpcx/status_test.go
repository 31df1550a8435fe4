package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/grpcx"
)

func TestToStatus(t *testing.T) {
	t.Parallel()
	violation := func(field, rule, msg string) *protovalidate.Violation {
		return &protovalidate.Violation{Proto: validate.Violation_builder{
			Field: validate.FieldPath_builder{Elements: []*validate.FieldPathElement{
				validate.FieldPathElement_builder{FieldName: proto.String(field)}.Build(),
			}}.Build(),
			RuleId:  proto.String(rule),
			Message: proto.String(msg),
		}.Build()}
	}
	tests := []struct {
		name       string
		err        error
		wantCode   codes.Code
		wantMsg    string
		wantReason string
		wantFields []string
	}{
		{"nil", nil, codes.OK, "", "", nil},
		{"wrapped apperr", fmt.Errorf("store: %w", apperr.NotFound("WORD_NOT_FOUND", "word not found")), codes.NotFound, "word not found", "WORD_NOT_FOUND", nil},
		{"apperr without reason", apperr.New(apperr.KindConflict, "", "exists"), codes.AlreadyExists, "exists", "ALREADY_EXISTS", nil},
		{"unknown kind", apperr.New(apperr.Kind(99), "ODD", "odd"), codes.Internal, "internal error", "ODD", nil},
		{"field error", apperr.Invalid("goal", "GOAL_RANGE", "goal out of range"), codes.InvalidArgument, "goal out of range", "GOAL_RANGE", []string{"goal"}},
		{"validation", &protovalidate.ValidationError{Violations: []*protovalidate.Violation{
			violation("email", "string.email", "must be an email"), violation("name", "string.min_len", "too short"),
		}}, codes.InvalidArgument, "invalid request: email: must be an email", grpcx.ReasonValidationFailed, []string{"email", "name"}},
		{"canceled", fmt.Errorf("query: %w", context.Canceled), codes.Canceled, "request canceled", "", nil},
		{"deadline", context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded", "", nil},
		{"status passes", status.Error(codes.Aborted, "retry"), codes.Aborted, "retry", "", nil},
		{"wrapped status passes bare", fmt.Errorf("call user: %w", status.Error(codes.NotFound, "no user")), codes.NotFound, "no user", "", nil},
		{"raw error hidden", errors.New("sql: secret"), codes.Internal, "internal error", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := grpcx.ToStatus(tt.err)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("ToStatus(nil) = %v", err)
				}
				return
			}
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("status = %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			info, br := errorInfo(t, err)
			if info.GetReason() != tt.wantReason {
				t.Errorf("reason = %q, want %q", info.GetReason(), tt.wantReason)
			}
			var fields []string
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
			if fmt.Sprint(fields) != fmt.Sprint(tt.wantFields) {
				t.Errorf("fields = %v, want %v", fields, tt.wantFields)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind apperr.Kind
		want codes.Code
	}{
		{apperr.KindInternal, codes.Internal},
		{apperr.KindInvalid, codes.InvalidArgument},
		{apperr.KindNotFound, codes.NotFound},
		{apperr.KindConflict, codes.AlreadyExists},
		{apperr.KindUnauthenticated, codes.Unauthenticated},
		{apperr.KindForbidden, codes.PermissionDenied},
		{apperr.KindFailedPrecondition, codes.FailedPrecondition},
		{apperr.KindUnavailable, codes.Unavailable},
		{apperr.KindTooMany, codes.ResourceExhausted},
		{apperr.Kind(-1), codes.Internal},
	}
	for _, tt := range tests {
		t.Run(tt.want.String(), func(t *testing.T) {
			t.Parallel()
			if got := grpcx.CodeOf(tt.kind); got != tt.want {
				t.Errorf("CodeOf(%d) = %v, want %v", tt.kind, got, tt.want)
			}
		})
	}
}
