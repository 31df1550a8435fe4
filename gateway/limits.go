package gateway

import (
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clientLimiter is a per-client token bucket keyed by the remote IP. Idle buckets
// are forgotten after idleTTL so that memory stays bounded. Safe for concurrent use.
type clientLimiter struct {
	rps     rate.Limit
	burst   int
	idleTTL time.Duration

	mu      sync.Mutex
	clients map[string]*clientBucket
	lastGC  time.Time
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimiter(rps float64, burst int) *clientLimiter {
	return &clientLimiter{rps: rate.Limit(rps), burst: burst, idleTTL: 10 * time.Minute, clients: map[string]*clientBucket{}}
}

// allow reports whether key may proceed now, and if not, how long until it may.
func (l *clientLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastGC) > time.Minute {
		for k, b := range l.clients {
			if now.Sub(b.seen) > l.idleTTL {
				delete(l.clients, k)
			}
		}
		l.lastGC = now
	}
	b, ok := l.clients[key]
	if !ok {
		b = &clientBucket{lim: rate.NewLimiter(l.rps, l.burst)}
		l.clients[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateLimit answers 429 with Retry-After (whole seconds, at least 1) when a client
// exceeds its budget. rps <= 0 disables it.
func rateLimit(l *clientLimiter, next http.Handler) http.Handler {
	if l == nil || l.rps <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, wait := l.allow(clientKey(r), time.Now())
		if !ok {
			secs := int(math.Ceil(wait.Seconds()))
			writeError(w, http.StatusTooManyRequests, "RESOURCE_EXHAUSTED", "RATE_LIMITED", "too many requests, slow down", nil, max(secs, 1))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authRateLimit applies l only to the requests that check a password —
// /v1/auth/* (sign-in, registration, refresh) and account deletion — whose
// password hashing costs far more than other requests and which are what a
// password guesser would call.
func authRateLimit(l *clientLimiter, next http.Handler) http.Handler {
	limited := rateLimit(l, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/auth/") || (r.Method == http.MethodDelete && r.URL.Path == "/v1/users/me") {
			limited.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientKey is the client's IP address; forwarded headers are not trusted.
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// limitBody caps request bodies at n bytes: a declared larger body is refused at
// once with 413, a body that turns out larger fails while being read.
func limitBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "BODY_TOO_LARGE", "request body is larger than the limit", nil, 0)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}
