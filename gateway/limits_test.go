package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestClientLimiterBurstThenRefuse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rps   float64
		burst int
		wait  time.Duration // expected wait after the burst is spent
	}{
		{rps: 1, burst: 3, wait: time.Second},
		{rps: 10, burst: 1, wait: 100 * time.Millisecond},
		{rps: 0.5, burst: 5, wait: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(strconv.FormatFloat(tt.rps, 'g', -1, 64)+"x"+strconv.Itoa(tt.burst), func(t *testing.T) {
			t.Parallel()
			l := newClientLimiter(tt.rps, tt.burst)
			for i := range tt.burst {
				if ok, wait := l.allow("198.51.100.1", t0); !ok || wait != 0 {
					t.Fatalf("request %d of the burst: allow = %v, %v", i+1, ok, wait)
				}
			}
			// Refusals must not consume tokens: the wait stays the same however
			// often the client knocks.
			for i := range 5 {
				ok, wait := l.allow("198.51.100.1", t0)
				if ok {
					t.Fatalf("refusal %d: allowed beyond the burst", i+1)
				}
				if wait <= 0 || wait > tt.wait+time.Millisecond {
					t.Fatalf("refusal %d: wait = %v, want in (0, ~%v]", i+1, wait, tt.wait)
				}
			}
			// After waiting as told, exactly one request passes.
			_, wait := l.allow("198.51.100.1", t0)
			later := t0.Add(wait)
			if ok, _ := l.allow("198.51.100.1", later); !ok {
				t.Fatalf("refused after waiting %v", wait)
			}
			if ok, w := l.allow("198.51.100.1", later); ok || w <= 0 {
				t.Fatalf("second request after the wait: allow = %v, %v; want refused", ok, w)
			}
			// A long pause refills the bucket to the burst, not beyond.
			much := later.Add(time.Hour)
			for i := range tt.burst {
				if ok, _ := l.allow("198.51.100.1", much); !ok {
					t.Fatalf("refill: request %d refused", i+1)
				}
			}
			if ok, _ := l.allow("198.51.100.1", much); ok {
				t.Fatal("refill: bucket holds more than the burst")
			}
		})
	}
}

func TestClientLimiterClientsAreIndependent(t *testing.T) {
	t.Parallel()
	l := newClientLimiter(1, 1)
	if ok, _ := l.allow("a", t0); !ok {
		t.Fatal("a: first request refused")
	}
	if ok, _ := l.allow("a", t0); ok {
		t.Fatal("a: second request allowed")
	}
	for _, k := range []string{"b", "c", "2001:db8::1"} {
		if ok, _ := l.allow(k, t0); !ok {
			t.Errorf("%s: refused because a spent its budget", k)
		}
	}
	if ok, _ := l.allow("a", t0); ok {
		t.Error("a: allowed again after other clients passed")
	}
}

func TestClientLimiterForgetsIdleClients(t *testing.T) {
	t.Parallel()
	l := newClientLimiter(1, 1)
	l.idleTTL = 30 * time.Second
	clients := func() []string {
		l.mu.Lock()
		defer l.mu.Unlock()
		ks := keys(l.clients)
		slices.Sort(ks)
		return ks
	}
	steps := []struct {
		at   time.Duration // since t0
		key  string
		want []string // buckets remembered afterwards
	}{
		{0, "a", []string{"a"}},
		{61 * time.Second, "b", []string{"b"}},                  // sweep: a idle 61s > 30s
		{62 * time.Second, "c", []string{"b", "c"}},             // no sweep within a minute of the last
		{100 * time.Second, "d", []string{"b", "c", "d"}},       // b is idle 39s but no sweep yet
		{122 * time.Second, "e", []string{"d", "e"}},            // sweep: b (61s) and c (60s) go, d (22s) stays
		{122 * time.Second, "d", []string{"d", "e"}},            // touching d again
		{10 * time.Minute, "e", []string{"e"}},                  // sweep: d idle; e is touched now
		{10*time.Minute + time.Second, "a", []string{"a", "e"}}, // a forgotten one comes back fresh
	}
	for _, s := range steps {
		l.allow(s.key, t0.Add(s.at))
		if got := clients(); !slices.Equal(got, s.want) {
			t.Fatalf("after %s at +%v: buckets = %v, want %v", s.key, s.at, got, s.want)
		}
	}
	// A client that was forgotten starts with a full bucket.
	l2 := newClientLimiter(0.001, 2)
	l2.idleTTL = time.Minute
	l2.allow("x", t0)
	l2.allow("x", t0)
	if ok, _ := l2.allow("x", t0); ok {
		t.Fatal("x: burst not enforced")
	}
	l2.allow("y", t0.Add(2*time.Minute)) // sweeps x
	for i := range 2 {
		if ok, _ := l2.allow("x", t0.Add(2*time.Minute)); !ok {
			t.Fatalf("x after being forgotten: request %d refused", i+1)
		}
	}
}

// Run with -race: concurrent callers share buckets safely and exactly the burst passes.
func TestClientLimiterConcurrent(t *testing.T) {
	t.Parallel()
	const burst = 20
	l := newClientLimiter(0.001, burst)
	var allowed [3]atomic.Int32
	var wg sync.WaitGroup
	for g := range 60 {
		wg.Go(func() {
			key := strconv.Itoa(g % 3)
			for range 5 {
				if ok, _ := l.allow(key, t0); ok {
					allowed[g%3].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for i := range allowed {
		if n := allowed[i].Load(); n != burst {
			t.Errorf("client %d: %d requests allowed, want exactly %d", i, n, burst)
		}
	}
}

func TestRateLimitMiddleware(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	// 0.01 rps: one token per 100 s, so nothing refills during the test.
	h := rateLimit(newClientLimiter(0.01, 2), next)
	do := func(remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/v1/users/alice", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "203.0.113.99") // must not be trusted
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		if rec := do("192.0.2.1:1000"); rec.Code != http.StatusNoContent {
			t.Fatalf("request %d: status %d, want 204", i+1, rec.Code)
		}
	}
	// Same IP, other port: same client.
	rec := do("192.0.2.1:2000")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("third request: status %d, want 429", rec.Code)
	}
	d := decodeError(t, rec)
	if d.Status != "RESOURCE_EXHAUSTED" || d.Reason != "RATE_LIMITED" || d.Message == "" {
		t.Errorf("429 body = %+v", d)
	}
	ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || ra < 1 || ra > 100 {
		t.Errorf("Retry-After = %q, want whole seconds in [1, 100]", rec.Header().Get("Retry-After"))
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("next called %d times, want 2 (never for a refused request)", n)
	}
	// Other clients, including IPv6, are unaffected.
	for _, remote := range []string{"198.51.100.7:5", "[2001:db8::1]:443"} {
		if rec := do(remote); rec.Code != http.StatusNoContent {
			t.Errorf("%s: status %d, want 204", remote, rec.Code)
		}
	}
}

func TestRateLimitDisabled(t *testing.T) {
	t.Parallel()
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, l := range []*clientLimiter{nil, newClientLimiter(0, 0), newClientLimiter(-1, 5)} {
		h := rateLimit(l, next)
		for i := range 50 {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
			if rec.Code != http.StatusNoContent {
				t.Fatalf("limiter %+v, request %d: status %d", l, i, rec.Code)
			}
		}
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ remote, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[::1]:80", "::1"},
		{"not-an-addr", "not-an-addr"},
		{"", ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.RemoteAddr = tt.remote
		req.Header.Set("X-Forwarded-For", "10.9.9.9")
		req.Header.Set("X-Real-IP", "10.9.9.9")
		if got := clientKey(req); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}

// unsized hides the length of a reader so that the request looks chunked.
type unsized struct{ io.Reader }

func TestLimitBody(t *testing.T) {
	t.Parallel()
	const limit = 10
	tests := []struct {
		name     string
		body     io.Reader
		want413  bool // refused before the handler runs
		readErr  bool // the handler's read fails with *http.MaxBytesError
		wantRead string
	}{
		{name: "no body", body: nil},
		{name: "declared, under the cap", body: strings.NewReader("123456789"), wantRead: "123456789"},
		{name: "declared, exactly the cap", body: strings.NewReader("1234567890"), wantRead: "1234567890"},
		{name: "declared, over the cap", body: strings.NewReader("12345678901"), want413: true},
		{name: "declared, far over the cap", body: bytes.NewReader(make([]byte, 1<<20)), want413: true},
		{name: "chunked, under the cap", body: unsized{strings.NewReader("12345")}, wantRead: "12345"},
		{name: "chunked, exactly the cap", body: unsized{strings.NewReader("1234567890")}, wantRead: "1234567890"},
		{name: "chunked, over the cap", body: unsized{strings.NewReader(strings.Repeat("x", 100))}, readErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var called bool
			var got []byte
			var readErr error
			h := limitBody(limit, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called = true
				got, readErr = io.ReadAll(r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			req := httptest.NewRequest(http.MethodPost, "/v1/auth/register", tt.body)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tt.want413 {
				if rec.Code != http.StatusRequestEntityTooLarge || called {
					t.Fatalf("status %d, handler called %v; want 413 without calling it", rec.Code, called)
				}
				d := decodeError(t, rec)
				if d.Status != "PAYLOAD_TOO_LARGE" || d.Reason != "BODY_TOO_LARGE" {
					t.Errorf("413 body = %+v", d)
				}
				return
			}
			if !called {
				t.Fatalf("handler not called (status %d)", rec.Code)
			}
			if tt.readErr {
				var mbe *http.MaxBytesError
				if !errors.As(readErr, &mbe) || mbe.Limit != limit {
					t.Fatalf("read error = %v, want *http.MaxBytesError{Limit: %d}", readErr, limit)
				}
				if len(got) > limit {
					t.Errorf("handler read %d bytes past a %d-byte cap", len(got), limit)
				}
				return
			}
			if readErr != nil || string(got) != tt.wantRead {
				t.Errorf("read %q, %v; want %q", got, readErr, tt.wantRead)
			}
		})
	}
}

func TestAuthRateLimitOnlyLimitsAuthRoutes(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	h := authRateLimit(newClientLimiter(0.01, 2), ok)
	codes := func(path string, n int) []int { return methodCodes(h, http.MethodPost, path, "203.0.113.9:4000", n) }
	if got := codes("/v1/auth/login", 3); got[0] != 204 || got[1] != 204 || got[2] != http.StatusTooManyRequests {
		t.Fatalf("auth route: %v, want burst of 2 then 429", got)
	}
	for _, c := range methodCodes(h, http.MethodGet, "/v1/users/me", "203.0.113.9:4000", 5) {
		if c != 204 {
			t.Fatalf("non-auth route limited: %d", c)
		}
	}
	// Account deletion checks the password: limited like sign-in (another client).
	if got := methodCodes(h, http.MethodDelete, "/v1/users/me", "203.0.113.10:4000", 3); got[0] != 204 || got[1] != 204 || got[2] != http.StatusTooManyRequests {
		t.Fatalf("DELETE /v1/users/me: %v, want burst of 2 then 429", got)
	}
}

// methodCodes sends n requests from addr through h and returns the status codes.
func methodCodes(h http.Handler, method, path, addr string, n int) []int {
	var out []int
	for range n {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = addr
		h.ServeHTTP(rec, req)
		out = append(out, rec.Code)
	}
	return out
}
