package grpcx

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// DefaultCallTimeout is the deadline given to unary calls whose context has none.
const DefaultCallTimeout = 10 * time.Second

// ClientConfig configures [Dial].
type ClientConfig struct {
	// Timeout is the deadline added to unary calls whose context has none;
	// zero means DefaultCallTimeout. Streams are never given one.
	Timeout time.Duration
	// Options are appended to the dial options (credentials, keepalive).
	Options []grpc.DialOption
}

// Dial returns a client connection to target (e.g. "127.0.0.1:50051" or
// "dns:///user:50051") with the otelgrpc client stats handler (trace context
// sent in metadata), a default per-call deadline, and forwarding of the
// incoming "authorization" metadata: a service calling another service on a
// user's behalf passes the user's token along unless the outgoing context
// already sets one. Transport security is plaintext for now (mTLS later);
// pass credentials in Options to override. The connection is lazy: Dial
// does not block and fails only on a malformed target. The caller owns the
// connection and must Close it.
func Dial(target string, cfg ClientConfig) (*grpc.ClientConn, error) {
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultCallTimeout
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithChainUnaryInterceptor(deadlineUnary(timeout), forwardAuthUnary),
		grpc.WithChainStreamInterceptor(forwardAuthStream),
	}
	conn, err := grpc.NewClient(target, append(opts, cfg.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcx: dial %s: %w", target, err)
	}
	return conn, nil
}

func deadlineUnary(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// forwardAuth copies the incoming authorization metadata to the outgoing
// context when the outgoing context has none.
func forwardAuth(ctx context.Context) context.Context {
	in := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(in) == 0 {
		return ctx
	}
	if out, ok := metadata.FromOutgoingContext(ctx); ok && len(out.Get("authorization")) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", in[0])
}

func forwardAuthUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(forwardAuth(ctx), method, req, reply, cc, opts...)
}

func forwardAuthStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(forwardAuth(ctx), desc, cc, method, opts...)
}
