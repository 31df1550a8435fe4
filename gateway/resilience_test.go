package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
)

// slowUsers answers GetPublicProfile only when its context ends, and says so.
type slowUsers struct {
	userv1.UnimplementedUserServiceServer
	cancelled chan error
}

func (s *slowUsers) GetPublicProfile(ctx context.Context, _ *userv1.GetPublicProfileRequest) (*userv1.GetPublicProfileResponse, error) {
	select {
	case <-ctx.Done():
		s.cancelled <- ctx.Err()
		return nil, ctx.Err()
	case <-time.After(time.Minute):
		return &userv1.GetPublicProfileResponse{}, nil
	}
}

// A REST call that outlives the gateway's deadline answers 504, and the
// upstream handler's context is cancelled (no work left running).
func TestGatewayDeadline(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowUsers{cancelled: make(chan error, 4)}
	srv := grpc.NewServer()
	userv1.RegisterUserServiceServer(srv, slow)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	cfg := testConfig(dial(t, ln.Addr().String()))
	cfg.Timeout = 200 * time.Millisecond
	g := newGateway(t, cfg)

	start := time.Now()
	rec := serve(g.Handler(), call{method: "GET", path: "/v1/users/alice"})
	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("status %d (%s), want 504", rec.Code, rec.Body)
	}
	var body ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Status != "DEADLINE_EXCEEDED" {
		t.Errorf("body %s (%v)", rec.Body, err)
	}
	select {
	case err := <-slow.cancelled:
		if err == nil {
			t.Error("handler context ended without an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the upstream handler's context was not cancelled")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v", d)
	}

	// A shorter Grpc-Timeout request header wins over the gateway's default.
	cfg.Timeout = time.Hour
	g2 := newGateway(t, cfg)
	rec = serve(g2.Handler(), call{method: "GET", path: "/v1/users/alice", header: map[string]string{"Grpc-Timeout": "100m"}})
	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("with Grpc-Timeout: status %d, want 504", rec.Code)
	}
	<-slow.cancelled
}

func TestRetryAfterFromRetryInfo(t *testing.T) {
	t.Parallel()
	st, _ := status.New(codes.Unavailable, "circuit open").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(2300 * time.Millisecond)})
	if got := retryAfterSeconds(st); got != 3 {
		t.Errorf("Retry-After = %d, want 3 (rounded up)", got)
	}
	if got := retryAfterSeconds(status.New(codes.Unavailable, "down")); got != 1 {
		t.Errorf("Retry-After without RetryInfo = %d, want 1", got)
	}
	rec := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		grpcErrorHandler(r.Context(), nil, nil, w, r, st.Err())
	}), call{method: "GET", path: "/v1/users/alice"})
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "3" {
		t.Errorf("status %d, Retry-After %q; want 503 and 3", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// With a Probe, /health details every downstream; /ready is false only when
// one is fully down.
func TestHealthWithProbe(t *testing.T) {
	t.Parallel()
	states := map[string]Downstream{
		"lesson": {State: "degraded", Breaker: "closed", Instances: map[string]string{"a": "SERVING", "b": "UNREACHABLE"}},
		"user":   {State: "serving", Breaker: "closed", Instances: map[string]string{"c": "SERVING"}},
	}
	g := &Gateway{cfg: Config{
		Upstreams: map[string]*grpc.ClientConn{"lesson": nil, "user": nil},
		Probe:     func(_ context.Context, name string) (Downstream, bool) { return states[name], true },
	}}
	check := func(ready bool, wantCode int, wantStatus string) HealthReport {
		t.Helper()
		rec := serve(g.health(ready), call{method: "GET", path: "/health"})
		var rep HealthReport
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rec.Code != wantCode || rep.Status != wantStatus {
			t.Errorf("ready=%v: %d %s, want %d %s (%s)", ready, rec.Code, rep.Status, wantCode, wantStatus, rec.Body)
		}
		return rep
	}
	rep := check(true, 200, "degraded")
	if rep.Downstreams["lesson"].Instances["b"] != "UNREACHABLE" || rep.Services["lesson"] != "SERVING" {
		t.Errorf("report %+v", rep)
	}
	states["lesson"] = Downstream{State: "down", Breaker: "open", Instances: map[string]string{"a": "NOT_SERVING", "b": "UNREACHABLE"}}
	rep = check(true, 503, "degraded")
	if rep.Services["lesson"] != "NOT_SERVING" || rep.Downstreams["lesson"].Breaker != "open" {
		t.Errorf("report %+v", rep)
	}
	check(false, 200, "degraded")
}
