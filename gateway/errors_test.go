package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
)

// decodeError checks that a response is a JSON error in the [ErrorBody] shape and
// returns its payload. It fails the test on anything else.
func decodeError(t *testing.T, rec *httptest.ResponseRecorder) ErrorDetail {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json (body %q)", ct, rec.Body.String())
	}
	// The envelope has exactly one key, "error".
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatalf("body is not a JSON object: %v (%q)", err, rec.Body.String())
	}
	if len(raw) != 1 || raw["error"] == nil {
		t.Fatalf("body keys = %v, want only \"error\" (%q)", keys(raw), rec.Body.String())
	}
	var body ErrorBody
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body does not decode strictly into ErrorBody: %v (%q)", err, rec.Body.String())
	}
	if body.Error.Code != rec.Code {
		t.Errorf("error.code = %d, HTTP status = %d; they must agree", body.Error.Code, rec.Code)
	}
	return body.Error
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mustDetails(t *testing.T, c codes.Code, msg string, details ...protoadapt.MessageV1) *status.Status {
	t.Helper()
	st, err := status.New(c, msg).WithDetails(details...)
	if err != nil {
		t.Fatalf("WithDetails: %v", err)
	}
	return st
}

func TestErrorFromStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		st   *status.Status
		code int
		want ErrorDetail
	}{
		{
			name: "plain not found",
			st:   status.New(codes.NotFound, "user not found"),
			code: http.StatusNotFound,
			want: ErrorDetail{Code: 404, Status: "NOT_FOUND", Message: "user not found"},
		},
		{
			name: "error info reason",
			st: mustDetails(t, codes.AlreadyExists, "email already registered",
				&errdetails.ErrorInfo{Reason: "EMAIL_TAKEN", Domain: "puchi.user", Metadata: map[string]string{"k": "v"}}),
			code: http.StatusConflict,
			want: ErrorDetail{Code: 409, Status: "ALREADY_EXISTS", Reason: "EMAIL_TAKEN", Message: "email already registered"},
		},
		{
			name: "bad request field violations in order",
			st: mustDetails(t, codes.InvalidArgument, "invalid request", &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "email", Description: "must be an email address"},
				{Field: "password", Description: "at least 8 characters"},
			}}),
			code: http.StatusBadRequest,
			want: ErrorDetail{Code: 400, Status: "INVALID_ARGUMENT", Message: "invalid request", Fields: []FieldError{
				{Field: "email", Description: "must be an email address"},
				{Field: "password", Description: "at least 8 characters"},
			}},
		},
		{
			name: "reason and fields together, unrelated details ignored",
			st: mustDetails(t, codes.InvalidArgument, "bad",
				&errdetails.RetryInfo{},
				&errdetails.ErrorInfo{Reason: "VALIDATION_FAILED"},
				&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "username", Description: "taken"}}},
				&errdetails.DebugInfo{Detail: "stack"}),
			code: http.StatusBadRequest,
			want: ErrorDetail{Code: 400, Status: "INVALID_ARGUMENT", Reason: "VALIDATION_FAILED", Message: "bad",
				Fields: []FieldError{{Field: "username", Description: "taken"}}},
		},
		{
			name: "unauthenticated",
			st:   mustDetails(t, codes.Unauthenticated, "token expired", &errdetails.ErrorInfo{Reason: "TOKEN_EXPIRED"}),
			code: http.StatusUnauthorized,
			want: ErrorDetail{Code: 401, Status: "UNAUTHENTICATED", Reason: "TOKEN_EXPIRED", Message: "token expired"},
		},
		{
			name: "code outside google.rpc.Code",
			st:   status.New(codes.Code(42), "odd"),
			code: http.StatusInternalServerError,
			want: ErrorDetail{Code: 500, Status: codes.Code(42).String(), Message: "odd"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gotCode, got := errorFromStatus(tt.st)
			if gotCode != tt.code {
				t.Errorf("http code = %d, want %d", gotCode, tt.code)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("detail = %+v\nwant     %+v", got, tt.want)
			}
		})
	}
}

// statusName must spell every code exactly as google.rpc.Code does.
func TestStatusNameMatchesGoogleRPCCode(t *testing.T) {
	t.Parallel()
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		want, ok := code.Code_name[int32(c)]
		if !ok {
			t.Fatalf("google.rpc.Code has no name for %d", c)
		}
		if got := statusName(c); got != want {
			t.Errorf("statusName(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestGRPCErrorHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		code       int
		status     string
		reason     string
		message    string
		fields     []FieldError
		retryAfter string
	}{
		{
			name:    "invalid argument with field violation",
			err:     mustDetails(t, codes.InvalidArgument, "invalid email", &errdetails.ErrorInfo{Reason: "VALIDATION_FAILED"}, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "email", Description: "not an address"}}}).Err(),
			code:    400,
			status:  "INVALID_ARGUMENT",
			reason:  "VALIDATION_FAILED",
			message: "invalid email",
			fields:  []FieldError{{Field: "email", Description: "not an address"}},
		},
		{
			name:    "not found with reason",
			err:     mustDetails(t, codes.NotFound, "no such user", &errdetails.ErrorInfo{Reason: "USER_NOT_FOUND"}).Err(),
			code:    404,
			status:  "NOT_FOUND",
			reason:  "USER_NOT_FOUND",
			message: "no such user",
		},
		{
			name:    "body too large from the decoder",
			err:     status.Errorf(codes.InvalidArgument, "%v", &http.MaxBytesError{Limit: 10}),
			code:    413,
			status:  "PAYLOAD_TOO_LARGE",
			reason:  "BODY_TOO_LARGE",
			message: "request body is larger than the limit",
		},
		{
			name:    "other invalid argument is not mistaken for body too large",
			err:     status.Error(codes.InvalidArgument, "proto: syntax error (line 1:2): unexpected token"),
			code:    400,
			status:  "INVALID_ARGUMENT",
			message: "proto: syntax error (line 1:2): unexpected token",
		},
		{
			name:       "unavailable hides the cause and asks to retry",
			err:        status.Error(codes.Unavailable, "connection error: dial tcp 10.0.0.7:9001: connect: connection refused"),
			code:       503,
			status:     "UNAVAILABLE",
			message:    "service unavailable, try again shortly",
			retryAfter: "1",
		},
		{
			name:       "unavailable keeps its reason",
			err:        mustDetails(t, codes.Unavailable, "db down", &errdetails.ErrorInfo{Reason: "DB_DOWN"}).Err(),
			code:       503,
			status:     "UNAVAILABLE",
			reason:     "DB_DOWN",
			message:    "service unavailable, try again shortly",
			retryAfter: "1",
		},
		{
			name:    "non-status error is internal and does not leak its text",
			err:     errors.New("boom"),
			code:    500,
			status:  "INTERNAL",
			message: "internal error",
		},
		{name: "permission denied", err: status.Error(codes.PermissionDenied, "nope"), code: 403, status: "PERMISSION_DENIED", message: "nope"},
		{name: "resource exhausted", err: status.Error(codes.ResourceExhausted, "quota"), code: 429, status: "RESOURCE_EXHAUSTED", message: "quota"},
		{name: "failed precondition", err: status.Error(codes.FailedPrecondition, "state"), code: 400, status: "FAILED_PRECONDITION", message: "state"},
		{name: "deadline exceeded", err: status.Error(codes.DeadlineExceeded, "slow"), code: 504, status: "DEADLINE_EXCEEDED", message: "slow"},
		{name: "internal", err: status.Error(codes.Internal, "oops"), code: 500, status: "INTERNAL", message: "oops"},
		{name: "unimplemented", err: status.Error(codes.Unimplemented, "later"), code: 501, status: "UNIMPLEMENTED", message: "later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/v1/users/x", nil)
			grpcErrorHandler(context.Background(), nil, &runtime.JSONPb{}, rec, req, tt.err)
			if rec.Code != tt.code {
				t.Fatalf("HTTP status = %d, want %d (body %q)", rec.Code, tt.code, rec.Body.String())
			}
			d := decodeError(t, rec)
			want := ErrorDetail{Code: tt.code, Status: tt.status, Reason: tt.reason, Message: tt.message, Fields: tt.fields}
			if !reflect.DeepEqual(d, want) {
				t.Errorf("error = %+v\nwant    %+v", d, want)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
		})
	}
}

// The JSON spelling is part of the API: snake-case keys, reason and fields omitted
// when empty.
func TestErrorJSONShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		keys []string
	}{
		{"minimal", status.Error(codes.NotFound, "x"), []string{"code", "message", "status"}},
		{"full", mustDetails(t, codes.InvalidArgument, "x", &errdetails.ErrorInfo{Reason: "R"},
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "f", Description: "d"}}}).Err(),
			[]string{"code", "fields", "message", "reason", "status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			grpcErrorHandler(context.Background(), nil, nil, rec, httptest.NewRequest(http.MethodGet, "/", nil), tt.err)
			var body struct {
				Error map[string]json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			got := keys(body.Error)
			if len(got) != len(tt.keys) {
				t.Fatalf("keys = %v, want %v (%s)", got, tt.keys, rec.Body.String())
			}
			for _, k := range tt.keys {
				if _, ok := body.Error[k]; !ok {
					t.Errorf("key %q missing in %s", k, rec.Body.String())
				}
			}
			if f, ok := body.Error["fields"]; ok {
				var fields []map[string]string
				if err := json.Unmarshal(f, &fields); err != nil {
					t.Fatal(err)
				}
				if len(fields) != 1 || fields[0]["field"] != "f" || fields[0]["description"] != "d" {
					t.Errorf("fields = %s", f)
				}
			}
		})
	}
}

func TestRoutingErrorHandler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path string
		httpStatus         int
		status, message    string
	}{
		{"not found", http.MethodGet, "/v1/nope", 404, "NOT_FOUND", "no route for GET /v1/nope"},
		{"method not allowed", http.MethodPut, "/v1/users/me", 405, "METHOD_NOT_ALLOWED", "PUT is not allowed on /v1/users/me"},
		{"bad request", http.MethodGet, "/x", 400, "Bad Request", "Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			routingErrorHandler(context.Background(), nil, nil, rec, httptest.NewRequest(tt.method, tt.path, nil), tt.httpStatus)
			if rec.Code != tt.httpStatus {
				t.Fatalf("HTTP status = %d, want %d", rec.Code, tt.httpStatus)
			}
			d := decodeError(t, rec)
			want := ErrorDetail{Code: tt.httpStatus, Status: tt.status, Message: tt.message}
			if !reflect.DeepEqual(d, want) {
				t.Errorf("error = %+v, want %+v", d, want)
			}
			if ra := rec.Header().Get("Retry-After"); ra != "" {
				t.Errorf("unexpected Retry-After %q", ra)
			}
		})
	}
}

func TestWriteErrorRetryAfter(t *testing.T) {
	t.Parallel()
	for _, secs := range []int{-1, 0, 1, 30} {
		t.Run(strconv.Itoa(secs), func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			writeError(rec, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "RATE_LIMITED", "slow down", nil, secs)
			want := ""
			if secs > 0 {
				want = strconv.Itoa(secs)
			}
			if got := rec.Header().Get("Retry-After"); got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			d := decodeError(t, rec)
			if d.Reason != "RATE_LIMITED" || d.Fields != nil {
				t.Errorf("detail = %+v", d)
			}
		})
	}
}
