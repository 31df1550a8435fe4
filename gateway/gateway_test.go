package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

// fakeUsers is a tiny user service: alice exists, every other user does not.
type fakeUsers struct {
	userv1.UnimplementedUserServiceServer
	meWithoutAuth atomic.Int32 // GetMe calls that arrived without "authorization" metadata
}

func notFound(username string) error {
	st, _ := status.New(codes.NotFound, "no user "+username).WithDetails(&errdetails.ErrorInfo{Reason: "USER_NOT_FOUND", Domain: "puchi.user"})
	return st.Err()
}

func (f *fakeUsers) GetPublicProfile(_ context.Context, req *userv1.GetPublicProfileRequest) (*userv1.GetPublicProfileResponse, error) {
	if req.GetUsername() != "alice" {
		return nil, notFound(req.GetUsername())
	}
	return &userv1.GetPublicProfileResponse{Profile: &userv1.PublicProfile{
		Username:       "alice",
		DisplayName:    "Alice A.",
		TargetLanguage: "ja",
		CreatedAt:      timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)),
	}}, nil
}

func (f *fakeUsers) Register(_ context.Context, req *userv1.RegisterRequest) (*userv1.RegisterResponse, error) {
	switch {
	case !strings.Contains(req.GetEmail(), "@"):
		st, _ := status.New(codes.InvalidArgument, "invalid registration").WithDetails(
			&errdetails.ErrorInfo{Reason: "VALIDATION_FAILED", Domain: "puchi.user"},
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "email", Description: "must be an email address"}}})
		return nil, st.Err()
	case req.GetEmail() == "taken@example.com":
		st, _ := status.New(codes.AlreadyExists, "email already registered").WithDetails(&errdetails.ErrorInfo{Reason: "EMAIL_TAKEN"})
		return nil, st.Err()
	}
	return &userv1.RegisterResponse{
		User:   &userv1.User{Id: "u-1", Email: req.GetEmail(), Username: req.GetUsername(), DisplayName: req.GetDisplayName(), DailyGoalXp: req.GetDailyGoalXp()},
		Tokens: &userv1.TokenPair{AccessToken: "acc", RefreshToken: "ref", TokenType: "Bearer", ExpiresInSeconds: 900},
	}, nil
}

func (f *fakeUsers) Login(context.Context, *userv1.LoginRequest) (*userv1.LoginResponse, error) {
	return nil, status.Error(codes.Unavailable, "postgres: connection refused at 10.1.2.3:5432")
}

func (f *fakeUsers) GetMe(ctx context.Context, _ *userv1.GetMeRequest) (*userv1.GetMeResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer good" {
		f.meWithoutAuth.Add(1)
		return nil, status.Error(codes.Unauthenticated, "no token reached the service")
	}
	return &userv1.GetMeResponse{User: &userv1.User{Id: "u-1", Username: "alice", Email: "alice@example.com", DisplayName: "Alice A."}}, nil
}

// DeleteMe succeeds only when the password of the DELETE body reached it.
func (f *fakeUsers) DeleteMe(_ context.Context, req *userv1.DeleteMeRequest) (*userv1.DeleteMeResponse, error) {
	if req.GetPassword() != "s3cret" {
		return nil, status.Error(codes.InvalidArgument, "the password did not reach the service")
	}
	return &userv1.DeleteMeResponse{}, nil
}

type upstream struct {
	conn   *grpc.ClientConn
	health *health.Server
	users  *fakeUsers
}

// startUpstream serves the fake user service and grpc.health.v1 (SERVING) on a
// loopback port and returns a client connection to it.
func startUpstream(t *testing.T) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	u := &upstream{health: health.NewServer(), users: &fakeUsers{}}
	userv1.RegisterUserServiceServer(srv, u.users)
	healthpb.RegisterHealthServer(srv, u.health)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	u.conn = dial(t, ln.Addr().String())
	return u
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

var testOpenAPI = []byte(`{"swagger":"2.0"}`)

func verifyGood(tok string) error {
	if tok != "good" {
		return errors.New("bad token")
	}
	return nil
}

func testConfig(conn *grpc.ClientConn) Config {
	return Config{
		Addr:         "127.0.0.1:0",
		Upstreams:    map[string]*grpc.ClientConn{"user": conn},
		Verify:       verifyGood,
		OpenAPI:      testOpenAPI,
		RateLimit:    0,
		MaxBodyBytes: 1 << 20,
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func newGateway(t *testing.T, cfg Config) *Gateway {
	t.Helper()
	g, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = g.ln.Close() }) // Run not called: release the port
	return g
}

type call struct {
	method, path string
	body         io.Reader
	header       map[string]string
}

func serve(h http.Handler, c call) *httptest.ResponseRecorder {
	req := httptest.NewRequest(c.method, c.path, c.body)
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func jsonObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v (%q)", err, b)
	}
	return m
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{Addr: ":8000", MaxBodyBytes: 1, Log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"valid with rate limit", func(c *Config) { c.RateLimit, c.RateBurst = 5, 10 }, ""},
		{"rate limit disabled ignores burst", func(c *Config) { c.RateLimit, c.RateBurst = 0, -1 }, ""},
		{"empty addr", func(c *Config) { c.Addr = "" }, "PUCHI_GATEWAY_ADDR"},
		{"zero body cap", func(c *Config) { c.MaxBodyBytes = 0 }, "PUCHI_GATEWAY_MAX_BODY_BYTES"},
		{"negative body cap", func(c *Config) { c.MaxBodyBytes = -5 }, "PUCHI_GATEWAY_MAX_BODY_BYTES"},
		{"rate without burst", func(c *Config) { c.RateLimit = 1 }, "PUCHI_GATEWAY_RATE_BURST"},
		{"no logger", func(c *Config) { c.Log = nil }, "Log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error naming %s", err, tt.want)
			}
			if tt.want != "" {
				if _, nerr := New(context.Background(), c); nerr == nil {
					t.Error("New accepted an invalid config")
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	conn := dial(t, closedAddr(t))

	t.Run("unknown service", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(conn)
		cfg.Upstreams = map[string]*grpc.ClientConn{"user": conn, "nope": conn}
		_, err := New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("New = %v, want an error naming the service", err)
		}
	})
	t.Run("address in use", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := testConfig(conn)
		cfg.Addr = ln.Addr().String()
		_, err = New(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), "PUCHI_GATEWAY_ADDR") {
			t.Fatalf("New = %v, want a listen error naming PUCHI_GATEWAY_ADDR", err)
		}
	})
	t.Run("listens at once", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, testConfig(conn))
		host, port, err := net.SplitHostPort(g.Addr())
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Fatalf("Addr() = %q, want a concrete loopback port", g.Addr())
		}
		if g.Name() != "gateway" {
			t.Errorf("Name() = %q", g.Name())
		}
	})
}

// TestEndToEnd drives the complete handler from New against a real gRPC upstream.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	g := newGateway(t, testConfig(up.conn))
	h := g.Handler()

	big := `{"email":"` + strings.Repeat("a", 2<<20) + `@example.com"}`
	good := map[string]string{"Authorization": "Bearer good"}

	tests := []struct {
		name       string
		call       call
		status     int
		errStatus  string // for error responses: error.status
		reason     string
		fields     []FieldError
		retryAfter string
		check      func(t *testing.T, body map[string]any)
	}{
		{
			name:   "public profile",
			call:   call{method: "GET", path: "/v1/users/alice"},
			status: 200,
			check: func(t *testing.T, p map[string]any) {
				// response_body: "profile" — the profile is the whole body.
				if _, wrapped := p["profile"]; wrapped {
					t.Errorf("profile wrapped in an envelope: %v", p)
				}
				want := map[string]any{
					"username": "alice", "display_name": "Alice A.", "target_language": "ja",
					"avatar_media_id": "", // EmitUnpopulated
					"created_at":      "2030-01-02T03:04:05Z",
				}
				for k, v := range want {
					if p[k] != v {
						t.Errorf("profile[%q] = %#v, want %#v", k, p[k], v)
					}
				}
				for _, camel := range []string{"displayName", "targetLanguage", "avatarMediaId", "createdAt"} {
					if _, ok := p[camel]; ok {
						t.Errorf("camelCase key %q present; want proto names", camel)
					}
				}
			},
		},
		{
			name:   "public profile ignores a bad token",
			call:   call{method: "GET", path: "/v1/users/alice", header: map[string]string{"Authorization": "Bearer junk"}},
			status: 200,
		},
		{
			name:   "unknown user",
			call:   call{method: "GET", path: "/v1/users/bob"},
			status: 404, errStatus: "NOT_FOUND", reason: "USER_NOT_FOUND",
		},
		{
			name:   "register invalid email",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":"nope","password":"hunter22"}`)},
			status: 400, errStatus: "INVALID_ARGUMENT", reason: "VALIDATION_FAILED",
			fields: []FieldError{{Field: "email", Description: "must be an email address"}},
		},
		{
			name:   "register taken email",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":"taken@example.com"}`)},
			status: 409, errStatus: "ALREADY_EXISTS", reason: "EMAIL_TAKEN",
		},
		{
			name:   "register ok, snake_case in and out",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":"new@example.com","username":"newbie","display_name":"New B","daily_goal_xp":30}`)},
			status: 200,
			check: func(t *testing.T, body map[string]any) {
				user, _ := body["user"].(map[string]any)
				tokens, _ := body["tokens"].(map[string]any)
				if user["display_name"] != "New B" || user["daily_goal_xp"] != float64(30) || user["username"] != "newbie" {
					t.Errorf("user = %v", user)
				}
				if tokens["access_token"] != "acc" || tokens["refresh_token"] != "ref" || tokens["expires_in_seconds"] != float64(900) {
					t.Errorf("tokens = %v", tokens)
				}
			},
		},
		{
			name:   "register accepts lowerCamel input too",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":"c@example.com","displayName":"Cam"}`)},
			status: 200,
		},
		{
			name:   "register with unknown field",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":"x@example.com","is_admin":true}`)},
			status: 400, errStatus: "INVALID_ARGUMENT",
		},
		{
			name:   "register with malformed JSON",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(`{"email":`)},
			status: 400, errStatus: "INVALID_ARGUMENT",
		},
		{
			name:   "register body declared too large",
			call:   call{method: "POST", path: "/v1/auth/register", body: strings.NewReader(big)},
			status: 413, errStatus: "PAYLOAD_TOO_LARGE", reason: "BODY_TOO_LARGE",
		},
		{
			name:   "register body chunked too large",
			call:   call{method: "POST", path: "/v1/auth/register", body: unsized{strings.NewReader(big)}},
			status: 413, errStatus: "PAYLOAD_TOO_LARGE", reason: "BODY_TOO_LARGE",
		},
		{
			name:   "upstream unavailable",
			call:   call{method: "POST", path: "/v1/auth/login", body: strings.NewReader(`{"email":"a@example.com","password":"pw"}`)},
			status: 503, errStatus: "UNAVAILABLE", retryAfter: "1",
			check: func(t *testing.T, body map[string]any) {
				if strings.Contains(body["error"].(map[string]any)["message"].(string), "10.1.2.3") {
					t.Error("503 message leaks the upstream's error")
				}
			},
		},
		{
			name:   "me without token",
			call:   call{method: "GET", path: "/v1/users/me"},
			status: 401, errStatus: "UNAUTHENTICATED", reason: "TOKEN_MISSING",
		},
		{
			name:   "me with invalid token",
			call:   call{method: "GET", path: "/v1/users/me", header: map[string]string{"Authorization": "Bearer nope"}},
			status: 401, errStatus: "UNAUTHENTICATED", reason: "TOKEN_INVALID",
		},
		{
			name:   "me with valid token reaches the service with the header",
			call:   call{method: "GET", path: "/v1/users/me", header: good},
			status: 200,
			check: func(t *testing.T, u map[string]any) {
				// response_body: "user" — the user is the whole body.
				if u["username"] != "alice" || u["email"] != "alice@example.com" || u["display_name"] != "Alice A." {
					t.Errorf("user = %v", u)
				}
			},
		},
		{
			name:   "update me without token",
			call:   call{method: "PATCH", path: "/v1/users/me", body: strings.NewReader(`{"display_name":"x"}`)},
			status: 401, errStatus: "UNAUTHENTICATED", reason: "TOKEN_MISSING",
		},
		{
			name:   "delete me without token",
			call:   call{method: "DELETE", path: "/v1/users/me"},
			status: 401, errStatus: "UNAUTHENTICATED", reason: "TOKEN_MISSING",
		},
		{
			name:   "delete me passes the password in the DELETE body",
			call:   call{method: "DELETE", path: "/v1/users/me", body: strings.NewReader(`{"password":"s3cret"}`), header: good},
			status: 200,
		},
		{
			name:   "delete me without a body reaches the service without a password",
			call:   call{method: "DELETE", path: "/v1/users/me", header: good},
			status: 400, errStatus: "INVALID_ARGUMENT",
		},
		{
			name:   "unimplemented upstream method",
			call:   call{method: "PATCH", path: "/v1/users/me", body: strings.NewReader(`{"display_name":"x"}`), header: good},
			status: 501, errStatus: "UNIMPLEMENTED",
		},
		{
			name:   "wrong method on a known path",
			call:   call{method: "PUT", path: "/v1/users/me", header: good},
			status: 405, errStatus: "METHOD_NOT_ALLOWED",
		},
		{
			name:   "unknown path under a public prefix",
			call:   call{method: "GET", path: "/v1/auth/nope"},
			status: 404, errStatus: "NOT_FOUND",
		},
		{
			name:   "unknown path with a token",
			call:   call{method: "GET", path: "/v1/nope", header: good},
			status: 404, errStatus: "NOT_FOUND",
		},
		{
			name:   "unknown path without a token is refused first",
			call:   call{method: "GET", path: "/v1/nope"},
			status: 401, errStatus: "UNAUTHENTICATED", reason: "TOKEN_MISSING",
		},
		{
			name:   "health",
			call:   call{method: "GET", path: "/health"},
			status: 200,
			check: func(t *testing.T, body map[string]any) {
				if body["status"] != "ok" || len(body["services"].(map[string]any)) != 1 || body["services"].(map[string]any)["user"] != "SERVING" {
					t.Errorf("health = %v", body)
				}
			},
		},
		{
			name:   "ready",
			call:   call{method: "GET", path: "/ready"},
			status: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := serve(h, tt.call)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d (body %.300q)", rec.Code, tt.status, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if tt.status >= 400 {
				d := decodeError(t, rec)
				if d.Status != tt.errStatus || d.Reason != tt.reason || d.Message == "" {
					t.Errorf("error = %+v, want status %s reason %q", d, tt.errStatus, tt.reason)
				}
				if len(d.Fields) != len(tt.fields) {
					t.Fatalf("fields = %+v, want %+v", d.Fields, tt.fields)
				}
				for i := range tt.fields {
					if d.Fields[i] != tt.fields[i] {
						t.Errorf("fields[%d] = %+v, want %+v", i, d.Fields[i], tt.fields[i])
					}
				}
			}
			if tt.check != nil {
				tt.check(t, jsonObject(t, rec.Body.Bytes()))
			}
		})
	}
	t.Cleanup(func() {
		if n := up.users.meWithoutAuth.Load(); n != 0 {
			t.Errorf("GetMe reached %d times without the caller's token", n)
		}
	})
}

func TestOpenAPIAndDocs(t *testing.T) {
	t.Parallel()
	g := newGateway(t, testConfig(dial(t, closedAddr(t))))
	tests := []struct {
		path, contentType string
		body              []byte
	}{
		{"/openapi.json", "application/json", testOpenAPI},
		{"/docs", "text/html; charset=utf-8", docsPage},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			rec := serve(g.Handler(), call{method: "GET", path: tt.path})
			if rec.Code != 200 {
				t.Fatalf("status = %d", rec.Code)
			}
			if ct := rec.Header().Get("Content-Type"); ct != tt.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tt.contentType)
			}
			if !bytes.Equal(rec.Body.Bytes(), tt.body) {
				t.Errorf("body = %.100q, want %.100q", rec.Body.Bytes(), tt.body)
			}
		})
	}
	if !bytes.Contains(docsPage, []byte("<html")) || !bytes.Contains(docsPage, []byte("/openapi.json")) {
		t.Error("docs page is not an HTML page pointing at /openapi.json")
	}
}

// Paths that publicRoute lets through must never reach an authenticated method.
func TestProtectedMethodsNotReachableByPathTricks(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	g := newGateway(t, testConfig(up.conn))
	for _, target := range []string{
		"/v1/users/me/", "/v1/users/me%2F", "/v1/users/%6De", "/v1/users/m%65", "/v1/users/me:get",
		"/v1/users/./me", "/v1/users/x/../me", "/v1/users//me", "/v1/users/me/.", "/v1/users/me?x=1",
	} {
		t.Run(target, func(t *testing.T) {
			rec := serve(g.Handler(), call{method: "GET", path: target})
			if rec.Code == http.StatusOK {
				t.Errorf("GET %s without a token = 200 %q", target, rec.Body.String())
			}
		})
	}
	if n := up.users.meWithoutAuth.Load(); n != 0 {
		t.Errorf("GetMe reached %d times without a token", n)
	}
}

func TestHealthFollowsUpstream(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	g := newGateway(t, testConfig(up.conn))
	check := func(path string, wantCode int, wantStatus, wantUser string) {
		t.Helper()
		rec := serve(g.Handler(), call{method: "GET", path: path})
		if rec.Code != wantCode {
			t.Fatalf("%s: status %d, want %d (%s)", path, rec.Code, wantCode, rec.Body.String())
		}
		var rep HealthReport
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if rep.Status != wantStatus || len(rep.Services) != 1 || rep.Services["user"] != wantUser {
			t.Fatalf("%s: report %+v, want %s with user=%s", path, rep, wantStatus, wantUser)
		}
	}
	check("/health", 200, "ok", "SERVING")
	check("/ready", 200, "ok", "SERVING")

	up.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	check("/health", 200, "down", "NOT_SERVING")
	check("/ready", 503, "down", "NOT_SERVING")

	up.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	check("/health", 200, "ok", "SERVING")
	check("/ready", 200, "ok", "SERVING")
}

// Several upstreams: one down makes the gateway "degraded", all down "down".
// registrars knows only "user", so the report is built on a bare Gateway.
func TestHealthAggregation(t *testing.T) {
	t.Parallel()
	serving := startUpstream(t).conn
	notServing := startUpstream(t)
	notServing.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	unreachable := dial(t, closedAddr(t))

	tests := []struct {
		name      string
		upstreams map[string]*grpc.ClientConn
		status    string
		services  map[string]string
		readyCode int
	}{
		{"none", map[string]*grpc.ClientConn{}, "ok", map[string]string{}, 200},
		{"all serving", map[string]*grpc.ClientConn{"a": serving, "b": serving}, "ok",
			map[string]string{"a": "SERVING", "b": "SERVING"}, 200},
		{"one not serving", map[string]*grpc.ClientConn{"a": serving, "b": notServing.conn}, "degraded",
			map[string]string{"a": "SERVING", "b": "NOT_SERVING"}, 503},
		{"one unreachable", map[string]*grpc.ClientConn{"a": serving, "c": unreachable}, "degraded",
			map[string]string{"a": "SERVING", "c": "UNREACHABLE"}, 503},
		{"all down", map[string]*grpc.ClientConn{"b": notServing.conn, "c": unreachable}, "down",
			map[string]string{"b": "NOT_SERVING", "c": "UNREACHABLE"}, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := &Gateway{cfg: Config{Upstreams: tt.upstreams}}
			for _, ready := range []bool{false, true} {
				rec := httptest.NewRecorder()
				g.health(ready).ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
				wantCode := 200
				if ready {
					wantCode = tt.readyCode
				}
				if rec.Code != wantCode {
					t.Errorf("ready=%v: status %d, want %d", ready, rec.Code, wantCode)
				}
				var rep HealthReport
				if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Status != tt.status || len(rep.Services) != len(tt.services) {
					t.Errorf("ready=%v: report %+v, want %s %v", ready, rep, tt.status, tt.services)
				}
				for k, v := range tt.services {
					if rep.Services[k] != v {
						t.Errorf("ready=%v: services[%s] = %q, want %q", ready, k, rep.Services[k], v)
					}
				}
			}
		})
	}
}

func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	g := newGateway(t, testConfig(dial(t, closedAddr(t))))
	rec := serve(g.Handler(), call{method: "GET", path: "/v1/users/alice"})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("status %d, Retry-After %q; want 503 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if d := decodeError(t, rec); d.Status != "UNAVAILABLE" || strings.Contains(d.Message, "127.0.0.1") {
		t.Errorf("error = %+v", d)
	}
}

func TestRateLimitThroughNew(t *testing.T) {
	t.Parallel()
	cfg := testConfig(dial(t, closedAddr(t)))
	cfg.RateLimit, cfg.RateBurst = 0.01, 2
	g := newGateway(t, cfg)
	do := func(remote string) int {
		req := httptest.NewRequest("GET", "/openapi.json", nil)
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, req)
		if rec.Code == http.StatusTooManyRequests {
			if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
			}
			decodeError(t, rec)
		}
		return rec.Code
	}
	got := []int{do("192.0.2.9:1"), do("192.0.2.9:2"), do("192.0.2.9:3"), do("192.0.2.10:1")}
	want := []int{200, 200, 429, 200}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses = %v, want %v", got, want)
		}
	}
}

// TestRun serves over real TCP, then stops when the context is cancelled.
func TestRun(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	g := newGateway(t, testConfig(up.conn))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	client := &http.Client{Timeout: 10 * time.Second}
	base := "http://" + g.Addr()

	resp, err := client.Get(base + "/v1/users/alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"display_name":"Alice A."`) {
		t.Fatalf("GET alice: %d %s", resp.StatusCode, body)
	}

	// A chunked body over the cap fails while grpc-gateway decodes it.
	big := io.MultiReader(strings.NewReader(`{"email":"`), strings.NewReader(strings.Repeat("a", 2<<20)), strings.NewReader(`"}`))
	req, _ := http.NewRequest("POST", base+"/v1/auth/register", big)
	req.Header.Set("Content-Type", "application/json")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if req.ContentLength != 0 { // 0 with a body: unknown length, sent chunked
		t.Fatalf("request has a declared length %d; the test needs a chunked body", req.ContentLength)
	}
	if resp.StatusCode != 413 || !strings.Contains(string(body), `"reason":"BODY_TOO_LARGE"`) {
		t.Fatalf("chunked oversized register: %d %s", resp.StatusCode, body)
	}

	resp, err = client.Get(base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok","services":{"user":"SERVING"}}` {
		t.Fatalf("health: %d %s", resp.StatusCode, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second): // a hang guard, not a timing assertion
		t.Fatal("Run did not return after cancel")
	}
	if _, err := client.Get(base + "/health"); err == nil {
		t.Error("gateway still serving after Run returned")
	}
}

func TestRunListenerClosed(t *testing.T) {
	t.Parallel()
	g := newGateway(t, testConfig(dial(t, closedAddr(t))))
	_ = g.ln.Close()
	if err := g.Run(context.Background()); err == nil {
		t.Fatal("Run = nil with a closed listener, want the serve error")
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		status  float64
		level   string
	}{
		{"implicit 200", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hi")) }, 200, "INFO"},
		{"404", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) }, 404, "INFO"},
		{"500 is an error", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) }, 500, "ERROR"},
		{"503 is an error", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, 503, "ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf telemetrytest.LogBuffer
			h := accessLog(slog.New(slog.NewJSONHandler(&buf, nil)), tt.handler)
			req := httptest.NewRequest("POST", "/v1/auth/login?secret=1", strings.NewReader(`{"password":"hunter2"}`))
			req.RemoteAddr = "192.0.2.44:5555"
			h.ServeHTTP(httptest.NewRecorder(), req)
			line := buf.String()
			if strings.Count(line, "\n") != 1 {
				t.Fatalf("want one log line, got %q", line)
			}
			if strings.Contains(line, "hunter2") || strings.Contains(line, "secret") {
				t.Errorf("log leaks body or query: %s", line)
			}
			rec := jsonObject(t, []byte(line))
			want := map[string]any{"msg": "http request", "level": tt.level, "method": "POST", "path": "/v1/auth/login", "status": tt.status, "client": "192.0.2.44"}
			for k, v := range want {
				if rec[k] != v {
					t.Errorf("log[%q] = %#v, want %#v", k, rec[k], v)
				}
			}
			if _, ok := rec["duration"]; !ok {
				t.Error("no duration logged")
			}
		})
	}
}

func TestStatusRecorderFlush(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	sr := &statusRecorder{ResponseWriter: rec, status: 200}
	sr.Flush()
	if !rec.Flushed {
		t.Error("Flush not passed through")
	}
	// A writer that cannot flush is tolerated.
	(&statusRecorder{ResponseWriter: struct{ http.ResponseWriter }{rec}}).Flush()
}
