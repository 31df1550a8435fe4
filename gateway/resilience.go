package gateway

import (
	"context"
	"math"
	"net/http"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// DefaultTimeout is the deadline of a REST call when [Config.Timeout] is zero.
const DefaultTimeout = 10 * time.Second

// Downstream is one service's health as the gateway's client sees it
// ([Config.Probe]): "serving" (every instance serving, breaker closed),
// "degraded" (some instances down, or the breaker open or half-open) or
// "down" (no instance serving).
type Downstream struct {
	State     string            `json:"state"`
	Breaker   string            `json:"breaker,omitempty"`
	Instances map[string]string `json:"instances,omitempty"` // address -> SERVING | NOT_SERVING | UNREACHABLE
}

// Downstream states.
const (
	stateServing  = "serving"
	stateDegraded = "degraded"
	stateDown     = "down"
)

// withDeadline bounds every call through the REST routes: the upstream call
// inherits the deadline (a shorter Grpc-Timeout request header still wins),
// and an exceeded one answers 504.
func withDeadline(d time.Duration, next http.Handler) http.Handler {
	if d <= 0 {
		d = DefaultTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// retryAfterSeconds is the Retry-After of an UNAVAILABLE answer: the
// RetryInfo delay of the status (an open circuit breaker says when it will
// probe again), rounded up to whole seconds, at least 1.
func retryAfterSeconds(st *status.Status) int {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return max(1, int(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds())))
		}
	}
	return 1
}

// downstream reports one upstream for /health: the legacy single status
// (SERVING | NOT_SERVING | UNREACHABLE) and, when [Config.Probe] knows the
// service, the per-instance detail.
func (g *Gateway) downstream(ctx context.Context, name string, conn *grpc.ClientConn) (string, *Downstream) {
	if g.cfg.Probe != nil {
		if d, ok := g.cfg.Probe(ctx, name); ok {
			st := "SERVING"
			if d.State == stateDown {
				st = "UNREACHABLE"
				for _, s := range d.Instances {
					if s == "NOT_SERVING" {
						st = "NOT_SERVING"
					}
				}
			}
			return st, &d
		}
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st := "UNREACHABLE"
	if resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{}); err == nil {
		st = resp.GetStatus().String()
	}
	return st, nil
}
