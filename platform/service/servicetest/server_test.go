package servicetest_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/service/servicetest"
)

// whoAmI is a one-method service answering with the caller's user id.
var whoAmI = grpc.ServiceDesc{
	ServiceName: "test.WhoAmI",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
		req := new(wrapperspb.StringValue)
		if err := dec(req); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) {
			c, _ := auth.FromContext(ctx)
			return wrapperspb.String(c.UserID), nil
		}
		if in == nil {
			return h(ctx, req)
		}
		return in(ctx, req, &grpc.UnaryServerInfo{FullMethod: "/test.WhoAmI/Get"}, h)
	}}},
}

func TestServe(t *testing.T) {
	t.Parallel()
	iss, ver := servicetest.Auth(t)
	conn := servicetest.Serve(t, grpcx.ServerConfig{Name: "test", Verifier: ver}, func(r grpc.ServiceRegistrar) {
		r.RegisterService(&whoAmI, struct{}{})
	})
	ctx := t.Context()

	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "test.WhoAmI"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", hc, err)
	}

	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, "/test.WhoAmI/Get", wrapperspb.String(""), out); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("call without a token: %v, want Unauthenticated", err)
	}
	tok, _, err := iss.Issue("u1", auth.RoleLearner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	if err := conn.Invoke(ctx, "/test.WhoAmI/Get", wrapperspb.String(""), out); err != nil || out.GetValue() != "u1" {
		t.Fatalf("call with a token = %q, %v; want u1", out.GetValue(), err)
	}
}
