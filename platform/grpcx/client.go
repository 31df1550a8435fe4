package grpcx

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking (healthCheckConfig)
	"google.golang.org/grpc/metadata"
)

// DefaultCallTimeout is the deadline given to unary calls whose context has none.
const DefaultCallTimeout = 10 * time.Second

// Defaults of the resilience settings (see [ClientConfig]).
const (
	DefaultRetryAttempts     = 3
	DefaultRetryBackoff      = 50 * time.Millisecond
	DefaultRetryMaxBackoff   = time.Second
	DefaultBreakerFailures   = 5
	DefaultBreakerOpen       = 5 * time.Second
	DefaultReconnectMaxDelay = 2 * time.Second
)

// ClientConfig configures [NewClient] and [Dial]. The zero value is usable:
// plaintext, DefaultCallTimeout, retries and a breaker with the defaults.
type ClientConfig struct {
	// Name is the downstream service ("lesson"): the name its certificate must
	// carry (TLS server identity), the breaker's name, and the name in errors.
	// Empty: the target's host.
	Name string
	// Timeout is the deadline added to unary calls whose context has none;
	// zero means DefaultCallTimeout. Streams are never given one.
	Timeout time.Duration
	// MethodTimeouts override Timeout per method. A key is a full method
	// ("/puchi.lesson.v1.LessonService/GetLesson"), a service prefix
	// ("/puchi.lesson.v1.LessonService/") or a bare method name ("GetLesson");
	// the most specific match wins.
	MethodTimeouts map[string]time.Duration
	// TLS, when set, is the client's TLS configuration (root CAs and, for
	// mTLS, its certificate). ServerName is set to Name when empty. Nil means
	// plaintext.
	TLS *tls.Config
	// RetryAttempts bounds the attempts of an idempotent call (reads, and
	// writes that carry an idempotency key) failing with UNAVAILABLE; zero
	// means DefaultRetryAttempts, one disables retries.
	RetryAttempts int
	// RetryBackoff and RetryMaxBackoff shape the exponential backoff between
	// attempts; zero means the defaults.
	RetryBackoff, RetryMaxBackoff time.Duration
	// BreakerFailures is the number of consecutive failures (UNAVAILABLE,
	// DEADLINE_EXCEEDED) that opens the circuit; zero means
	// DefaultBreakerFailures, negative disables the breaker.
	BreakerFailures int
	// BreakerOpen is how long an open circuit fails fast before one probe is
	// let through (half-open); zero means DefaultBreakerOpen.
	BreakerOpen time.Duration
	// ReconnectMaxDelay caps the backoff between reconnection attempts to a
	// lost instance; zero means DefaultReconnectMaxDelay.
	ReconnectMaxDelay time.Duration
	// Options are appended to the dial options.
	Options []grpc.DialOption
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.Timeout == 0 {
		c.Timeout = DefaultCallTimeout
	}
	if c.RetryAttempts == 0 {
		c.RetryAttempts = DefaultRetryAttempts
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.RetryMaxBackoff == 0 {
		c.RetryMaxBackoff = DefaultRetryMaxBackoff
	}
	if c.BreakerFailures == 0 {
		c.BreakerFailures = DefaultBreakerFailures
	}
	if c.BreakerOpen == 0 {
		c.BreakerOpen = DefaultBreakerOpen
	}
	if c.ReconnectMaxDelay == 0 {
		c.ReconnectMaxDelay = DefaultReconnectMaxDelay
	}
	return c
}

// Client is a connection to every instance of one downstream service, with
// the platform's resilience around each unary call (outermost first):
//
//   - a deadline when the context has none (per method, never unbounded; an
//     incoming deadline simply stays on the context and propagates);
//   - the circuit breaker (fails fast with UNAVAILABLE and a RetryInfo
//     detail while open);
//   - retries of writes that carry an idempotency key (the request's
//     idempotency_key field or "idempotency-key" metadata) on UNAVAILABLE,
//     under a retry budget; reads are retried by the gRPC service config;
//   - forwarding of the incoming "authorization" metadata.
//
// Load balancing is round_robin over the target's instances with client-side
// health checking (grpc.health.v1 Watch): an instance that reports
// NOT_SERVING or drops its connection receives no calls until it is back.
// Reads (Get*, List*, Batch* of every registered service) are retried by the
// service config on UNAVAILABLE, with backoff and retryThrottling.
type Client struct {
	*grpc.ClientConn

	name    string
	target  string
	static  *staticResolver // nil when the target is resolved by DNS
	creds   credentials.TransportCredentials
	breaker *breaker
	connect grpc.ConnectParams

	mu     sync.Mutex
	probes map[string]*grpc.ClientConn
}

// NewClient returns a lazy client to target: "host:port", a comma-separated
// list of instances ("127.0.0.1:50052,127.0.0.1:50152"), or a DNS name whose
// records are the instances ("lesson:50052", "dns:///lesson:50052"). It does
// not block and fails only on a malformed target. The caller owns the client
// and must Close it.
func NewClient(target string, cfg ClientConfig) (*Client, error) {
	cfg = cfg.withDefaults()
	c := &Client{target: target, probes: map[string]*grpc.ClientConn{}}
	dialTarget := target
	var opts []grpc.DialOption
	if addrs := splitAddrs(target); len(addrs) > 1 || (len(addrs) == 1 && isLiteral(addrs[0])) {
		c.static = newStaticResolver(addrs)
		dialTarget = staticScheme + ":///" + strings.Join(addrs, ",")
		opts = append(opts, grpc.WithResolvers(c.static))
	}
	c.name = cfg.nameOr(target)
	if cfg.TLS != nil {
		tc := cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName = c.name
		}
		c.creds = credentials.NewTLS(tc)
	} else {
		c.creds = insecure.NewCredentials()
	}
	if cfg.BreakerFailures > 0 {
		c.breaker = newBreaker(c.name, cfg.BreakerFailures, cfg.BreakerOpen)
	}
	c.connect = grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.ReconnectMaxDelay},
		MinConnectTimeout: 5 * time.Second,
	}
	budget := newRetryBudget(retryBudgetTokens, retryBudgetRatio)
	unary := []grpc.UnaryClientInterceptor{deadlineUnary(cfg.Timeout, cfg.MethodTimeouts)}
	if c.breaker != nil {
		unary = append(unary, c.breaker.unary)
	}
	if cfg.RetryAttempts > 1 {
		unary = append(unary, keyedRetryUnary(cfg, budget))
	}
	unary = append(unary, forwardAuthUnary)
	opts = append(opts,
		grpc.WithTransportCredentials(c.creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithDefaultServiceConfig(serviceConfig(cfg)),
		grpc.WithConnectParams(c.connect),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(forwardAuthStream),
	)
	conn, err := grpc.NewClient(dialTarget, append(opts, cfg.Options...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcx: dial %s: %w", target, err)
	}
	c.ClientConn = conn
	return c, nil
}

// Dial is [NewClient] returning only the connection (the breaker and the
// instance list are then not observable).
func Dial(target string, cfg ClientConfig) (*grpc.ClientConn, error) {
	c, err := NewClient(target, cfg)
	if err != nil {
		return nil, err
	}
	return c.ClientConn, nil
}

// Name is the downstream service's name.
func (c *Client) Name() string { return c.name }

// Close closes the connection and the health probes.
func (c *Client) Close() error {
	c.mu.Lock()
	for a, p := range c.probes {
		_ = p.Close()
		delete(c.probes, a)
	}
	c.mu.Unlock()
	return c.ClientConn.Close()
}

// SetAddrs replaces the instance list of a client created with a literal
// address or list (e.g. when a replica joins). It reports false for a
// DNS-resolved client.
func (c *Client) SetAddrs(addrs []string) bool {
	if c.static == nil {
		return false
	}
	c.static.set(addrs)
	return true
}

// AddAddr adds one instance address (no-op if already known).
func (c *Client) AddAddr(addr string) bool {
	if c.static == nil {
		return false
	}
	c.static.add(addr)
	return true
}

func (c ClientConfig) nameOr(target string) string {
	if c.Name != "" {
		return c.Name
	}
	t := target
	if i := strings.LastIndex(t, "/"); i >= 0 {
		t = t[i+1:]
	}
	if i := strings.Index(t, ","); i >= 0 {
		t = t[:i]
	}
	if h, _, ok := strings.Cut(t, ":"); ok && !strings.HasPrefix(t, "[") {
		return h
	}
	return t
}

// deadlineUnary gives a call without a deadline the method's default one.
func deadlineUnary(def time.Duration, perMethod map[string]time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, MethodTimeout(method, def, perMethod))
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// MethodTimeout picks the timeout of a full method name from perMethod (full
// name, then service prefix, then bare method name), else def.
func MethodTimeout(method string, def time.Duration, perMethod map[string]time.Duration) time.Duration {
	if d, ok := perMethod[method]; ok && d > 0 {
		return d
	}
	if i := strings.LastIndex(method, "/"); i > 0 {
		if d, ok := perMethod[method[:i+1]]; ok && d > 0 {
			return d
		}
		if d, ok := perMethod[method[i+1:]]; ok && d > 0 {
			return d
		}
	}
	return def
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
