// Package health serves a service's admin HTTP endpoints: liveness on
// /health, readiness on /ready and Prometheus metrics on /metrics.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// CheckTimeout bounds each readiness check.
const CheckTimeout = 2 * time.Second

// shutdownTimeout bounds the admin server's own graceful shutdown.
const shutdownTimeout = 5 * time.Second

// Admin is the admin HTTP server of one service. It is an app.Component:
// Run serves until its context is done. Safe for concurrent use.
type Admin struct {
	addr     string
	checks   map[string]func(context.Context) error
	names    []string
	handler  http.Handler
	draining atomic.Bool

	mu  sync.Mutex
	lis net.Listener // set by Listen or Run
}

// NewAdmin returns an admin server for addr (e.g. ":8002") with readiness
// checks by name and metrics served on /metrics (nil: 404). The checks map
// is copied. A check reports whether a dependency is usable (a DB ping, a
// Kafka metadata request); its ctx expires after [CheckTimeout], and a check
// that panics or overruns counts as failed.
//
//   - GET /health: liveness, always 200 {"status":"ok"} while the process serves.
//   - GET /ready: runs every check concurrently; 200 {"status":"ok","checks":{...}}
//     when all pass, 503 {"status":"unavailable",...} with each failing check's
//     error otherwise, or while draining (see [Admin.Drain]).
//   - /metrics: the given handler.
func NewAdmin(addr string, checks map[string]func(ctx context.Context) error, metrics http.Handler) *Admin {
	a := &Admin{addr: addr, checks: make(map[string]func(context.Context) error, len(checks))}
	for name, c := range checks {
		a.checks[name] = c
		a.names = append(a.names, name)
	}
	sort.Strings(a.names)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /ready", a.ready)
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	a.handler = mux
	return a
}

// Handler returns the admin routes, for tests or for mounting elsewhere.
func (a *Admin) Handler() http.Handler { return a.handler }

// Name returns "admin".
func (a *Admin) Name() string { return "admin" }

// Drain makes /ready answer 503 from now on, so orchestrators stop routing
// to this instance while it shuts down; /health keeps answering 200.
// Call it in the first shutdown phase, next to marking gRPC NOT_SERVING.
func (a *Admin) Drain(context.Context) error {
	a.draining.Store(true)
	return nil
}

// Addr returns the address the server listens on once [Admin.Listen] or
// [Admin.Run] has bound it (useful with port 0), and "" before.
func (a *Admin) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lis == nil {
		return ""
	}
	return a.lis.Addr().String()
}

// Listen binds the configured address now, so that a busy port fails at
// start-up and [Admin.Addr] is known before [Admin.Run] is called. Calling
// it is optional; Run binds if Listen was not called. Calling it twice is a
// no-op.
func (a *Admin) Listen(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lis != nil {
		return nil
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", a.addr)
	if err != nil {
		return fmt.Errorf("health: listen %s: %w", a.addr, err)
	}
	a.lis = lis
	return nil
}

// Run serves until ctx is done (binding the address first unless
// [Admin.Listen] did), then shuts down gracefully, bounded by a few seconds.
// It returns nil after such a stop and the error otherwise (a busy port, for
// example). Run must be called at most once.
func (a *Admin) Run(ctx context.Context) error {
	if err := a.Listen(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	lis := a.lis
	a.mu.Unlock()
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("health: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health: serve: %w", err)
	}
	return nil
}

type checkResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

type readyResponse struct {
	Status string                 `json:"status"`
	Checks map[string]checkResult `json:"checks,omitempty"`
}

func (a *Admin) ready(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, readyResponse{Status: "draining"})
		return
	}
	results := make([]checkResult, len(a.names))
	var wg sync.WaitGroup
	for i, name := range a.names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			defer cancel()
			results[i] = checkResult{Status: "ok"}
			if err := runCheck(ctx, a.checks[name]); err != nil {
				results[i] = checkResult{Status: "fail", Error: err.Error()}
			}
		})
	}
	wg.Wait()
	resp := readyResponse{Status: "ok", Checks: make(map[string]checkResult, len(a.names))}
	code := http.StatusOK
	for i, name := range a.names {
		resp.Checks[name] = results[i]
		if results[i].Status != "ok" {
			resp.Status, code = "unavailable", http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, resp)
}

// runCheck runs c, turning a panic into an error and returning at ctx's
// deadline even if c ignores it.
func runCheck(ctx context.Context, c func(context.Context) error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("check panicked: %v", p)
			}
		}()
		done <- c(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
