package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/health"
)

func get(t *testing.T, h http.Handler, path string) (int, map[string]any, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &body)
	return rec.Code, body, rec.Body.String()
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("db: connection refused") }
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") })
	tests := []struct {
		name       string
		checks     map[string]func(context.Context) error
		drain      bool
		path       string
		wantCode   int
		wantStatus string
		wantFailed string // name of a check reported as failing
	}{
		{"liveness", map[string]func(context.Context) error{"db": down}, false, "/health", 200, "ok", ""},
		{"ready without checks", nil, false, "/ready", 200, "ok", ""},
		{"ready all pass", map[string]func(context.Context) error{"db": ok, "kafka": ok}, false, "/ready", 200, "ok", ""},
		{"ready one fails", map[string]func(context.Context) error{"db": down, "kafka": ok}, false, "/ready", 503, "unavailable", "db"},
		{"draining", map[string]func(context.Context) error{"db": ok}, true, "/ready", 503, "draining", ""},
		{"liveness while draining", nil, true, "/health", 200, "ok", ""},
		{"metrics", nil, false, "/metrics", 200, "", ""},
		{"check timeout", map[string]func(context.Context) error{"slow": hang}, false, "/ready", 503, "unavailable", "slow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := health.NewAdmin("127.0.0.1:0", tt.checks, metrics)
			if tt.drain {
				_ = a.Drain(t.Context())
			}
			code, body, raw := get(t, a.Handler(), tt.path)
			if code != tt.wantCode {
				t.Fatalf("GET %s = %d %s, want %d", tt.path, code, raw, tt.wantCode)
			}
			if tt.path == "/metrics" {
				if raw != "up 1\n" {
					t.Errorf("metrics body = %q", raw)
				}
				return
			}
			if body["status"] != tt.wantStatus {
				t.Errorf("status = %v, want %q (%s)", body["status"], tt.wantStatus, raw)
			}
			if tt.wantFailed != "" {
				checks, _ := body["checks"].(map[string]any)
				c, _ := checks[tt.wantFailed].(map[string]any)
				if c["status"] != "fail" || c["error"] == "" {
					t.Errorf("check %q = %v (%s)", tt.wantFailed, c, raw)
				}
			}
		})
	}
}

func TestAdminRun(t *testing.T) {
	t.Parallel()
	a := health.NewAdmin("127.0.0.1:0", nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for a.Addr() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	resp, err := http.Get("http://" + a.Addr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}

}

func TestAdminListenBeforeRun(t *testing.T) {
	t.Parallel()
	a := health.NewAdmin("127.0.0.1:0", nil, nil)
	if a.Addr() != "" {
		t.Fatalf("Addr() before Listen = %q", a.Addr())
	}
	if err := a.Listen(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := a.Addr()
	if addr == "" {
		t.Fatal("Addr() empty after Listen")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	resp, err := http.Get("http://" + addr + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || a.Addr() != addr {
		t.Errorf("GET /ready = %d, Addr() = %q (was %q)", resp.StatusCode, a.Addr(), addr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

func TestAdminRunBusyPort(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if err := health.NewAdmin(lis.Addr().String(), nil, nil).Run(t.Context()); err == nil {
		t.Error("Run on a busy port returned nil")
	}
}
