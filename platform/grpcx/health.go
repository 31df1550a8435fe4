package grpcx

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Downstream health states reported by [Client.Health].
const (
	StateServing  = "serving"  // every instance serving, breaker closed
	StateDegraded = "degraded" // some instances down, or the breaker not closed
	StateDown     = "down"     // no instance serving
)

// Health is a downstream service's state as one client sees it.
type Health struct {
	State     string            `json:"state"`
	Breaker   string            `json:"breaker"`
	Instances map[string]string `json:"instances"` // address -> SERVING | NOT_SERVING | UNREACHABLE
}

// Health checks every instance of the target with grpc.health.v1 Check (in
// parallel, each bounded by probeTimeout and ctx) over a dedicated
// connection per instance, and combines it with the breaker's state.
func (c *Client) Health(ctx context.Context, probeTimeout time.Duration) Health {
	addrs := c.instances(ctx)
	h := Health{Breaker: c.BreakerState(), Instances: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Go(func() {
			st := "UNREACHABLE"
			if p, err := c.probe(a); err == nil {
				pctx, cancel := context.WithTimeout(ctx, probeTimeout)
				resp, err := healthpb.NewHealthClient(p).Check(pctx, &healthpb.HealthCheckRequest{})
				cancel()
				if err == nil {
					st = resp.GetStatus().String()
				}
			}
			mu.Lock()
			h.Instances[a] = st
			mu.Unlock()
		})
	}
	wg.Wait()
	up := 0
	for _, st := range h.Instances {
		if st == "SERVING" {
			up++
		}
	}
	switch {
	case up == 0:
		h.State = StateDown
	case up < len(h.Instances) || h.Breaker != BreakerClosed:
		h.State = StateDegraded
	default:
		h.State = StateServing
	}
	c.dropProbes(addrs)
	return h
}

// instances lists the target's instance addresses: the static list, or the
// DNS records of the host.
func (c *Client) instances(ctx context.Context) []string {
	if c.static != nil {
		return c.static.list()
	}
	t := c.target
	if i := strings.LastIndex(t, "/"); i >= 0 {
		t = t[i+1:]
	}
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return []string{t}
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(ips) == 0 {
		return []string{t}
	}
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, net.JoinHostPort(ip, port))
	}
	slices.Sort(out)
	return out
}

// probe returns the health-check connection of one instance.
func (c *Client) probe(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.probes[addr]; ok {
		return p, nil
	}
	p, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(c.creds), grpc.WithConnectParams(c.connect))
	if err != nil {
		return nil, err
	}
	c.probes[addr] = p
	return p, nil
}

// dropProbes closes probe connections of instances no longer listed.
func (c *Client) dropProbes(keep []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for a, p := range c.probes {
		if !slices.Contains(keep, a) {
			_ = p.Close()
			delete(c.probes, a)
		}
	}
}
