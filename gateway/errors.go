package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorBody is the JSON every error response carries:
//
//	{"error":{"code":400,"status":"INVALID_ARGUMENT","reason":"EMAIL_TAKEN",
//	          "message":"...","fields":[{"field":"email","description":"..."}]}}
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the payload of [ErrorBody].
type ErrorDetail struct {
	Code    int          `json:"code"`
	Status  string       `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Message string       `json:"message"`
	Fields  []FieldError `json:"fields,omitempty"`
}

// FieldError names one invalid request field.
type FieldError struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// writeError writes an error response. retryAfter > 0 adds a Retry-After header.
func writeError(w http.ResponseWriter, httpCode int, st, reason, msg string, fields []FieldError, retryAfter int) {
	w.Header().Set("Content-Type", "application/json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(httpCode)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(ErrorBody{Error: ErrorDetail{Code: httpCode, Status: st, Reason: reason, Message: msg, Fields: fields}})
}

// errorFromStatus turns a gRPC status into the error body, reading the ErrorInfo
// reason and BadRequest field violations that platform/grpcx attaches.
func errorFromStatus(st *status.Status) (int, ErrorDetail) {
	code := runtime.HTTPStatusFromCode(st.Code())
	d := ErrorDetail{Code: code, Status: statusName(st.Code()), Message: st.Message()}
	for _, det := range st.Details() {
		switch v := det.(type) {
		case *errdetails.ErrorInfo:
			d.Reason = v.GetReason()
		case *errdetails.BadRequest:
			for _, fv := range v.GetFieldViolations() {
				d.Fields = append(d.Fields, FieldError{Field: fv.GetField(), Description: fv.GetDescription()})
			}
		}
	}
	return code, d
}

// statusNames spell codes the way google.rpc.Code does (INVALID_ARGUMENT).
var statusNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
	codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
	codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// statusName spells a code the way google.rpc.Code does.
func statusName(c codes.Code) string {
	if n, ok := statusNames[c]; ok {
		return n
	}
	return c.String()
}

// grpcErrorHandler is the grpc-gateway error handler: every error leaves as [ErrorBody].
func grpcErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		writeError(w, hse.HTTPStatus, statusName(status.Code(hse.Err)), "", status.Convert(hse.Err).Message(), nil, 0)
		return
	}
	st := status.Convert(err)
	if st.Code() == codes.Unknown {
		writeError(w, http.StatusInternalServerError, "INTERNAL", "", "internal error", nil, 0)
		return
	}
	if st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "request body too large") {
		writeError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "BODY_TOO_LARGE", "request body is larger than the limit", nil, 0)
		return
	}
	code, d := errorFromStatus(st)
	if st.Code() == codes.Unavailable {
		writeError(w, code, d.Status, d.Reason, "service unavailable, try again shortly", d.Fields, retryAfterSeconds(st))
		return
	}
	writeError(w, code, d.Status, d.Reason, d.Message, d.Fields, 0)
}

// routingErrorHandler answers unknown paths (404) and wrong methods (405) in the same shape.
func routingErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeError(w, httpStatus, "METHOD_NOT_ALLOWED", "", r.Method+" is not allowed on "+r.URL.Path, nil, 0)
	case http.StatusNotFound:
		writeError(w, httpStatus, "NOT_FOUND", "", "no route for "+r.Method+" "+r.URL.Path, nil, 0)
	default:
		writeError(w, httpStatus, http.StatusText(httpStatus), "", http.StatusText(httpStatus), nil, 0)
	}
}
