package grpcx

import (
	"net"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/resolver"
)

// staticScheme is the scheme of targets with a fixed (but updatable) list of
// instance addresses: "puchi-static:///127.0.0.1:50052,127.0.0.1:50152".
// [NewClient] registers an updatable builder per connection
// (grpc.WithResolvers); the global one (registered at init) only lets such a
// target, as returned by ClientConn.Target, be dialled again.
const staticScheme = "puchi-static"

func init() { resolver.Register(globalStatic{}) }

type globalStatic struct{}

func (globalStatic) Scheme() string { return staticScheme }

func (globalStatic) Build(t resolver.Target, cc resolver.ClientConn, o resolver.BuildOptions) (resolver.Resolver, error) {
	return newStaticResolver(splitAddrs(t.Endpoint())).Build(t, cc, o)
}

// staticResolver is a resolver.Builder and resolver.Resolver over a list of
// addresses that can change ([Client.SetAddrs]).
type staticResolver struct {
	mu    sync.Mutex
	addrs []string
	ccs   []resolver.ClientConn
}

func newStaticResolver(addrs []string) *staticResolver {
	return &staticResolver{addrs: slices.Clone(addrs)}
}

func (r *staticResolver) Scheme() string { return staticScheme }

func (r *staticResolver) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	r.mu.Lock()
	r.ccs = append(r.ccs, cc)
	st := r.state()
	r.mu.Unlock()
	_ = cc.UpdateState(st)
	return &builtResolver{r: r, cc: cc}, nil
}

func (r *staticResolver) state() resolver.State {
	st := resolver.State{}
	for _, a := range r.addrs {
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
		st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
	}
	return st
}

func (r *staticResolver) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.addrs)
}

func (r *staticResolver) set(addrs []string) {
	r.mu.Lock()
	r.addrs = slices.Clone(addrs)
	st, ccs := r.state(), slices.Clone(r.ccs)
	r.mu.Unlock()
	for _, cc := range ccs {
		_ = cc.UpdateState(st)
	}
}

func (r *staticResolver) add(addr string) {
	r.mu.Lock()
	if slices.Contains(r.addrs, addr) {
		r.mu.Unlock()
		return
	}
	addrs := append(slices.Clone(r.addrs), addr)
	r.mu.Unlock()
	r.set(addrs)
}

type builtResolver struct {
	r  *staticResolver
	cc resolver.ClientConn
}

func (b *builtResolver) ResolveNow(resolver.ResolveNowOptions) {}

func (b *builtResolver) Close() {
	b.r.mu.Lock()
	defer b.r.mu.Unlock()
	b.r.ccs = slices.DeleteFunc(b.r.ccs, func(c resolver.ClientConn) bool { return c == b.cc })
}

// splitAddrs splits a comma-separated target; a target with a scheme
// ("dns:///x") is returned whole.
func splitAddrs(target string) []string {
	target = strings.TrimPrefix(target, staticScheme+":///")
	if strings.Contains(target, "://") {
		return []string{target}
	}
	var out []string
	for _, a := range strings.Split(target, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// isLiteral reports whether addr is host:port with an IP (or localhost) host:
// nothing for DNS to resolve.
func isLiteral(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return host == "localhost" || net.ParseIP(host) != nil
}
