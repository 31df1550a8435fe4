package gateway

import (
	"net/http"
	"strings"

	"github.com/puchi-dev/puchi/platform/apperr"
)

// publicRoute reports whether a request may pass without a bearer token. Everything
// else is checked here, early, and again by the service's own interceptor.
func publicRoute(r *http.Request) bool {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/auth/"):
		return true
	case p == "/health" || p == "/ready" || p == "/metrics" || p == "/openapi.json" || p == "/docs" || p == "/":
		return true
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/users/") && p != "/v1/users/me":
		return true // public profiles
	}
	return false
}

// requireToken answers 401 with the error JSON when a protected route has no valid
// "Authorization: Bearer <token>" header.
func requireToken(verify func(token string) error, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if publicRoute(r) {
			next.ServeHTTP(w, r)
			return
		}
		h := r.Header.Get("Authorization")
		var token string
		ok := len(h) > 7 && strings.EqualFold(h[:7], "Bearer ")
		if ok {
			token = h[7:]
		}
		if !ok || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="puchi"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "TOKEN_MISSING", "missing bearer token: send Authorization: Bearer <access_token>", nil, 0)
			return
		}
		if err := verify(strings.TrimSpace(token)); err != nil {
			reason, msg := "TOKEN_INVALID", "access token is invalid"
			if e, ok := apperr.As(err); ok && e.Reason == "TOKEN_EXPIRED" {
				reason, msg = e.Reason, "access token expired: get a new one from /v1/auth/refresh"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="puchi", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHENTICATED", reason, msg, nil, 0)
			return
		}
		next.ServeHTTP(w, r)
	})
}
