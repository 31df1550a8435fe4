package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/puchi-dev/puchi/platform/apperr"
)

func TestPublicRoute(t *testing.T) {
	t.Parallel()
	allMethods := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	type tc struct {
		method, path string
		public       bool
	}
	var tests []tc
	// Auth routes are public for every method (the service decides).
	for _, p := range []string{"/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"} {
		for _, m := range allMethods {
			tests = append(tests, tc{m, p, true})
		}
	}
	// The caller's own account is protected for every method.
	for _, m := range allMethods {
		tests = append(tests, tc{m, "/v1/users/me", false})
	}
	tests = append(tests,
		// Operational endpoints.
		tc{http.MethodGet, "/health", true},
		tc{http.MethodGet, "/ready", true},
		tc{http.MethodGet, "/metrics", true},
		tc{http.MethodGet, "/openapi.json", true},
		tc{http.MethodGet, "/docs", true},
		tc{http.MethodGet, "/", true},
		// Public profiles: GET only.
		tc{http.MethodGet, "/v1/users/alice", true},
		tc{http.MethodGet, "/v1/users/x", true},
		tc{http.MethodGet, "/v1/users/meow", true},
		tc{http.MethodGet, "/v1/users/ME", true},
		tc{http.MethodHead, "/v1/users/x", false},
		tc{http.MethodPost, "/v1/users/x", false},
		tc{http.MethodPut, "/v1/users/x", false},
		tc{http.MethodPatch, "/v1/users/x", false},
		tc{http.MethodDelete, "/v1/users/x", false},
		// Everything else is protected by default.
		tc{http.MethodGet, "/v1/users", false},
		tc{http.MethodGet, "/v1/users/", true}, // prefix match; the router answers 404
		tc{http.MethodGet, "/v1/lessons", false},
		tc{http.MethodGet, "/v1/authx", false},
		tc{http.MethodGet, "/v1/auth", false},
		tc{http.MethodGet, "/v2/users/alice", false},
		tc{http.MethodGet, "/healthz", false},
		tc{http.MethodGet, "/docs/x", false},
		tc{http.MethodGet, "//v1/users/me", false},
	)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tt.method, "http://puchi.test"+tt.path, nil)
			if got := publicRoute(req); got != tt.public {
				t.Errorf("publicRoute(%s %s) = %v, want %v", tt.method, tt.path, got, tt.public)
			}
		})
	}
}

func TestPublicRouteIgnoresQuery(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/v1/users/me?x=/v1/auth/", "/v1/users/me?username=alice"} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		if publicRoute(req) {
			t.Errorf("GET %s treated as public", target)
		}
	}
}

func TestRequireToken(t *testing.T) {
	t.Parallel()
	errBad := errors.New("signature mismatch")
	tests := []struct {
		name       string
		method     string
		path       string
		auth       []string // Authorization header values; nil = absent
		verifyErr  error
		wantStatus int    // 0: next handler answers 204
		wantReason string // for 401s
		wantWWW    string
		wantToken  string // what verify must receive; "" = must not be called
	}{
		{name: "missing header", method: "GET", path: "/v1/users/me",
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "empty header", method: "PATCH", path: "/v1/users/me", auth: []string{""},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "bearer with empty token", method: "GET", path: "/v1/users/me", auth: []string{"Bearer "},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "bearer with blank token", method: "DELETE", path: "/v1/users/me", auth: []string{"Bearer  \t "},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "bare scheme", method: "GET", path: "/v1/users/me", auth: []string{"Bearer"},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "other scheme", method: "GET", path: "/v1/users/me", auth: []string{"Basic YWxpY2U6cHc="},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "token without scheme", method: "GET", path: "/v1/users/me", auth: []string{"abc.def.ghi"},
			wantStatus: 401, wantReason: "TOKEN_MISSING", wantWWW: `Bearer realm="puchi"`},
		{name: "verifier rejects", method: "GET", path: "/v1/users/me", auth: []string{"Bearer abc.def.ghi"}, verifyErr: errBad,
			wantStatus: 401, wantReason: "TOKEN_INVALID", wantWWW: `Bearer realm="puchi", error="invalid_token"`, wantToken: "abc.def.ghi"},
		{name: "verifier rejects on protected non-me route", method: "DELETE", path: "/v1/users/alice", auth: []string{"Bearer t"}, verifyErr: errBad,
			wantStatus: 401, wantReason: "TOKEN_INVALID", wantWWW: `Bearer realm="puchi", error="invalid_token"`, wantToken: "t"},
		{name: "valid token", method: "GET", path: "/v1/users/me", auth: []string{"Bearer good"}, wantToken: "good"},
		{name: "valid token, surrounding blanks trimmed", method: "PATCH", path: "/v1/users/me", auth: []string{"Bearer   good  "}, wantToken: "good"},
		{name: "only the first header counts", method: "GET", path: "/v1/users/me", auth: []string{"Bearer first", "Bearer second"}, wantToken: "first"},
		{name: "public route needs no token", method: "POST", path: "/v1/auth/login"},
		{name: "public route ignores a bad token", method: "GET", path: "/v1/users/alice", auth: []string{"Bearer junk"}, verifyErr: errBad},
		{name: "health is public", method: "GET", path: "/health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var verified []string
			var nextCalled bool
			verify := func(tok string) error {
				verified = append(verified, tok)
				return tt.verifyErr
			}
			h := requireToken(verify, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				nextCalled = true
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader("{}"))
			for _, v := range tt.auth {
				req.Header.Add("Authorization", v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			if tt.wantToken == "" && len(verified) > 0 {
				t.Errorf("verify called with %q, want not called", verified)
			}
			if tt.wantToken != "" && (len(verified) != 1 || verified[0] != tt.wantToken) {
				t.Errorf("verify got %q, want [%q]", verified, tt.wantToken)
			}
			if tt.wantStatus == 0 {
				if !nextCalled || rec.Code != http.StatusNoContent {
					t.Fatalf("next called %v, status %d; want the request to pass", nextCalled, rec.Code)
				}
				if www := rec.Header().Get("WWW-Authenticate"); www != "" {
					t.Errorf("WWW-Authenticate %q on a passed request", www)
				}
				return
			}
			if nextCalled {
				t.Error("next handler called for a refused request")
			}
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			d := decodeError(t, rec)
			if d.Status != "UNAUTHENTICATED" || d.Reason != tt.wantReason || d.Message == "" {
				t.Errorf("error = %+v, want UNAUTHENTICATED/%s", d, tt.wantReason)
			}
			if strings.Contains(d.Message, "signature mismatch") {
				t.Errorf("message leaks the verifier error: %q", d.Message)
			}
			if www := rec.Header().Get("WWW-Authenticate"); www != tt.wantWWW {
				t.Errorf("WWW-Authenticate = %q, want %q", www, tt.wantWWW)
			}
		})
	}
}

func TestRequireTokenSaysWhenTheTokenExpired(t *testing.T) {
	t.Parallel()
	expired := func(string) error {
		return &apperr.Error{Kind: apperr.KindUnauthenticated, Reason: "TOKEN_EXPIRED", Message: "access token expired"}
	}
	h := requireToken(expired, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("next called") }))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/users/me", nil)
	req.Header.Set("Authorization", "bearer old.token.here")
	h.ServeHTTP(rec, req)
	var body ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 401 || body.Error.Reason != "TOKEN_EXPIRED" || !strings.Contains(body.Error.Message, "refresh") {
		t.Fatalf("got %d %+v", rec.Code, body)
	}
}
