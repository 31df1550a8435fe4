package grpcx

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/puchi-dev/puchi/platform/clock"
)

// The retry budget (gRPC retryThrottling, and the same rule for keyed
// writes): every failed attempt costs a token, every success returns
// retryBudgetRatio of one, and retries stop while fewer than half of
// retryBudgetTokens are left, so retries cannot amplify an outage.
const (
	retryBudgetTokens = 20
	retryBudgetRatio  = 0.2
)

// readPrefixes name the idempotent reads: retried by the service config.
var readPrefixes = []string{"Get", "List", "Batch"}

// IsRead reports whether a full method name is an idempotent read
// (Get*, List*, Batch*).
func IsRead(method string) bool {
	name := method[strings.LastIndex(method, "/")+1:]
	for _, p := range readPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// readMethods lists the unary reads of every service registered in
// protoregistry.GlobalFiles (the generated packages linked into the binary).
func readMethods() []map[string]string {
	var out []map[string]string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			s := svcs.Get(i)
			ms := s.Methods()
			for j := 0; j < ms.Len(); j++ {
				m := ms.Get(j)
				if m.IsStreamingClient() || m.IsStreamingServer() {
					continue
				}
				if IsRead("/" + string(m.Name())) {
					out = append(out, map[string]string{"service": string(s.FullName()), "method": string(m.Name())})
				}
			}
		}
		return true
	})
	return out
}

func seconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

// serviceConfig is the default service config of every client: round_robin
// with client-side health checking, retries of reads on UNAVAILABLE, and
// retryThrottling.
func serviceConfig(cfg ClientConfig) string {
	sc := map[string]any{
		"loadBalancingConfig": []any{map[string]any{"round_robin": map[string]any{}}},
		"healthCheckConfig":   map[string]any{"serviceName": ""},
	}
	if cfg.RetryAttempts > 1 {
		if names := readMethods(); len(names) > 0 {
			sc["methodConfig"] = []any{map[string]any{
				"name": names,
				"retryPolicy": map[string]any{
					"maxAttempts":          min(cfg.RetryAttempts, 5), // gRPC caps at 5
					"initialBackoff":       seconds(cfg.RetryBackoff),
					"maxBackoff":           seconds(cfg.RetryMaxBackoff),
					"backoffMultiplier":    2,
					"retryableStatusCodes": []string{"UNAVAILABLE"},
				},
			}}
		}
		sc["retryThrottling"] = map[string]any{"maxTokens": retryBudgetTokens, "tokenRatio": retryBudgetRatio}
	}
	b, _ := json.Marshal(sc)
	return string(b)
}

// retryBudget is the token bucket of gRPC's retryThrottling, for the retries
// the interceptor does itself.
type retryBudget struct {
	mu     sync.Mutex
	tokens float64
	max    float64
	ratio  float64
}

func newRetryBudget(max, ratio float64) *retryBudget {
	return &retryBudget{tokens: max, max: max, ratio: ratio}
}

// failure records a failed attempt and reports whether a retry is allowed.
func (b *retryBudget) failure() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = max(b.tokens-1, 0)
	return b.tokens > b.max/2
}

func (b *retryBudget) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.tokens+b.ratio, b.max)
}

// HasIdempotencyKey reports whether a call may be retried as a write: its
// request has a non-empty idempotency_key field, or the outgoing metadata
// has a non-empty "idempotency-key" (the gateway forwards the
// Idempotency-Key header there).
func HasIdempotencyKey(ctx context.Context, req any) bool {
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		for _, v := range md.Get("idempotency-key") {
			if strings.TrimSpace(v) != "" {
				return true
			}
		}
	}
	m, ok := req.(proto.Message)
	if !ok {
		return false
	}
	r := m.ProtoReflect()
	f := r.Descriptor().Fields().ByName("idempotency_key")
	if f == nil || f.Kind() != protoreflect.StringKind || f.IsList() {
		return false
	}
	return r.Get(f).String() != ""
}

// keyedRetryUnary retries writes that carry an idempotency key on
// UNAVAILABLE: the service makes a repeated key answer with the first
// outcome, so a retry never applies a write twice. Reads are left to the
// service config's retryPolicy; writes without a key are never retried.
func keyedRetryUnary(cfg ClientConfig, budget *retryBudget) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if IsRead(method) || !HasIdempotencyKey(ctx, req) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		wait := cfg.RetryBackoff
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if status.Code(err) != codes.Unavailable {
				if err == nil {
					budget.success()
				}
				return err
			}
			if !budget.failure() || attempt >= cfg.RetryAttempts {
				return err
			}
			// Full jitter, as gRPC's own retries: a random wait up to the backoff.
			if !clock.Sleep(ctx, time.Duration(rand.Int64N(int64(wait))+1)) {
				return err
			}
			wait = min(wait*2, cfg.RetryMaxBackoff)
		}
	}
}
