package servicetest

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/puchi-dev/puchi/platform/grpcx"
)

// Serve starts a [grpcx.Server] built from cfg (so with all the platform's
// interceptors: authentication by cfg.Verifier, validation, error mapping) on
// 127.0.0.1:0, after register has registered the service under test on it,
// and returns a client connection to it, dialled with [grpcx.Dial]. cfg.Addr
// is not used. When the test ends the connection is closed, then the server is
// stopped and waited for; an error it stopped with fails the test.
func Serve(t testing.TB, cfg grpcx.ServerConfig, register func(grpc.ServiceRegistrar)) *grpc.ClientConn {
	t.Helper()
	srv, err := grpcx.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("grpc server %s: %v", cfg.Name, err)
		}
	})
	conn, err := grpcx.Dial(lis.Addr().String(), grpcx.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}
