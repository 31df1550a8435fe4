package system

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/puchi-dev/puchi/gateway"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/service"
)

// mesh is how this process talks to services: its TLS identity (mutual TLS
// unless PUCHI_TLS=off) and one resilient client per service (deadlines,
// retries, round_robin with health checking, a circuit breaker; see
// platform/grpcx.Client).
type mesh struct {
	cfg      *Config
	timeouts map[string]time.Duration
	ca       *grpcx.DevCA    // dev CA in PUCHI_TLS_DIR; nil with given files or TLS off
	given    *grpcx.Identity // PUCHI_TLS_CA/CERT/KEY
	self     string          // the identity this process presents as a client

	mu      sync.Mutex
	clients map[string]*grpcx.Client
}

// TLSEnabled reports whether mutual TLS is on (PUCHI_TLS is not "off").
func (c *Config) TLSEnabled() bool { return c.TLS != "off" }

// TLSFolder is where the dev CA and certificates live.
func (c *Config) TLSFolder() string {
	if c.TLSDir != "" {
		return c.TLSDir
	}
	return filepath.Join(c.DataDir, "tls")
}

func (c *Config) validateMesh() error {
	var errs []error
	if c.TLS != "on" && c.TLS != "off" {
		errs = append(errs, fmt.Errorf("PUCHI_TLS: %q is not on or off", c.TLS))
	}
	if (c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != "") && (c.TLSCA == "" || c.TLSCert == "" || c.TLSKey == "") {
		errs = append(errs, errors.New("PUCHI_TLS_CA, PUCHI_TLS_CERT, PUCHI_TLS_KEY: set all three or none"))
	}
	if (c.GatewayTLSCert == "") != (c.GatewayTLSKey == "") {
		errs = append(errs, errors.New("PUCHI_GATEWAY_TLS_CERT, PUCHI_GATEWAY_TLS_KEY: set both or neither"))
	}
	if c.GatewayTimeout <= 0 {
		errs = append(errs, errors.New("PUCHI_GATEWAY_TIMEOUT: must be positive"))
	}
	if c.CallTimeout <= 0 {
		errs = append(errs, errors.New("PUCHI_CALL_TIMEOUT: must be positive"))
	}
	if _, err := c.callTimeouts(); err != nil {
		errs = append(errs, err)
	}
	if c.RetryAttempts < 1 || c.RetryAttempts > 5 {
		errs = append(errs, errors.New("PUCHI_RETRY_ATTEMPTS: must be 1 to 5"))
	}
	if c.BreakerFailures == 0 {
		errs = append(errs, errors.New("PUCHI_BREAKER_FAILURES: must be positive (negative disables the breaker)"))
	}
	if c.BreakerOpen <= 0 || c.ReconnectMaxDelay <= 0 {
		errs = append(errs, errors.New("PUCHI_BREAKER_OPEN, PUCHI_RECONNECT_MAX_DELAY: must be positive"))
	}
	if c.Replicas < 1 || c.Replicas > 9 {
		errs = append(errs, errors.New("PUCHI_REPLICAS: must be 1 to 9"))
	}
	if c.Instance < 1 || c.Instance > 9 {
		errs = append(errs, errors.New("PUCHI_INSTANCE: must be 1 to 9"))
	}
	return errors.Join(errs...)
}

// callTimeouts parses PUCHI_CALL_TIMEOUTS: Method=duration,...
func (c *Config) callTimeouts() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	if strings.TrimSpace(c.CallTimeouts) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(c.CallTimeouts, ",") {
		m, d, ok := strings.Cut(strings.TrimSpace(kv), "=")
		dur, err := time.ParseDuration(d)
		if !ok || m == "" || err != nil || dur <= 0 {
			return nil, fmt.Errorf("PUCHI_CALL_TIMEOUTS: %q is not method=duration (e.g. GetLesson=2s)", kv)
		}
		out[m] = dur
	}
	return out, nil
}

// newMesh loads or creates the TLS material. self is the identity the
// process presents to servers ("gateway", a service's name, or "client").
func newMesh(cfg *Config, self string) (*mesh, error) {
	timeouts, err := cfg.callTimeouts()
	if err != nil {
		return nil, err
	}
	m := &mesh{cfg: cfg, timeouts: timeouts, self: self, clients: map[string]*grpcx.Client{}}
	switch {
	case !cfg.TLSEnabled():
	case cfg.TLSCA != "":
		if m.given, err = grpcx.LoadIdentity(cfg.TLSCA, cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("PUCHI_TLS_CA/CERT/KEY: %w", err)
		}
	default:
		if m.ca, err = grpcx.LoadOrCreateDevCA(cfg.TLSFolder()); err != nil {
			return nil, fmt.Errorf("PUCHI_TLS_DIR: %w", err)
		}
		// The identity for command-line clients (grpcurl, puchi content import).
		if _, _, err := m.ca.Identity("client"); err != nil {
			return nil, fmt.Errorf("PUCHI_TLS_DIR: %w", err)
		}
	}
	return m, nil
}

func (m *mesh) identity(name string) (*grpcx.Identity, error) {
	if m.given != nil {
		return m.given, nil
	}
	id, _, err := m.ca.Identity(name)
	return id, err
}

// serverTLS is the TLS configuration of a service's gRPC server (nil: plaintext).
func (m *mesh) serverTLS(name string) (*tls.Config, error) {
	if !m.cfg.TLSEnabled() {
		return nil, nil
	}
	id, err := m.identity(name)
	if err != nil {
		return nil, err
	}
	return id.ServerTLS(), nil
}

// clientConfig is the grpcx client configuration for calls to service name.
func (m *mesh) clientConfig(name string) (grpcx.ClientConfig, error) {
	cc := grpcx.ClientConfig{
		Name: name, Timeout: m.cfg.CallTimeout, MethodTimeouts: m.timeouts,
		RetryAttempts: m.cfg.RetryAttempts, BreakerFailures: m.cfg.BreakerFailures,
		BreakerOpen: m.cfg.BreakerOpen, ReconnectMaxDelay: m.cfg.ReconnectMaxDelay,
	}
	if m.cfg.TLSEnabled() {
		id, err := m.identity(m.self)
		if err != nil {
			return cc, err
		}
		cc.TLS = id.ClientTLS()
	}
	return cc, nil
}

// dial returns the process's client to service name at target (one per name).
func (m *mesh) dial(name, target string) (*grpcx.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.clients[name]; ok {
		return c, nil
	}
	cc, err := m.clientConfig(name)
	if err != nil {
		return nil, err
	}
	c, err := grpcx.NewClient(target, cc)
	if err != nil {
		return nil, err
	}
	m.clients[name] = c
	return c, nil
}

func (m *mesh) client(name string) *grpcx.Client {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clients[name]
}

// close closes every client (connections and health probes).
func (m *mesh) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for n, c := range m.clients {
		errs = append(errs, c.Close())
		delete(m.clients, n)
	}
	return errors.Join(errs...)
}

// probe is the gateway's view of a downstream for /health.
func (m *mesh) probe(ctx context.Context, name string) (gateway.Downstream, bool) {
	c := m.client(name)
	if c == nil {
		return gateway.Downstream{}, false
	}
	h := c.Health(ctx, time.Second)
	return gateway.Downstream{State: h.State, Breaker: h.Breaker, Instances: h.Instances}, true
}

// dialTarget is where service name is reached: every instance this process
// hosts (comma-separated), else PUCHI_<SVC>_ADDR (a list or a DNS name),
// else 127.0.0.1:<default port>.
func (s *System) dialTarget(cfg *Config, lookup func(string) (string, bool), name string) (string, error) {
	var hosted []string
	for _, inst := range s.Instances {
		if inst.Spec.Name == name {
			hosted = append(hosted, inst.GRPCAddr())
		}
	}
	if len(hosted) > 0 {
		return strings.Join(hosted, ","), nil
	}
	for _, sp := range Specs(cfg) {
		if sp.Name == name {
			return envOr(lookup, envName(name, "ADDR"), fmt.Sprintf("127.0.0.1:%d", sp.GRPCPort)), nil
		}
	}
	return "", fmt.Errorf("dial: unknown service %q", name)
}

// shiftAddrs moves both ports of an instance by 100*(n-1): instance 2 of
// lesson listens on :50152 and :8102. Port 0 (pick a free one) stays 0.
func shiftAddrs(a service.Addrs, n int) service.Addrs {
	if n <= 1 {
		return a
	}
	shift := func(addr string) string {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return addr
		}
		p, err := strconv.Atoi(port)
		if err != nil || p == 0 {
			return addr
		}
		return net.JoinHostPort(host, strconv.Itoa(p+100*(n-1)))
	}
	return service.Addrs{GRPC: shift(a.GRPC), Admin: shift(a.Admin)}
}

// startReplicas starts replicas 2..cfg.Replicas of a service next to its
// first instance. Replicas share the first instance's *db.DB (one SQLite
// writer per file, one outbox relay per database) and consumer group; each
// has its own gRPC and admin ports and its own metrics registry.
func (s *System) startReplicas(ctx context.Context, primary *service.Instance, addrs service.Addrs, sh service.Shared) ([]*service.Instance, error) {
	var out []*service.Instance
	for n := 2; n <= s.replicas; n++ {
		inst, err := s.startReplica(ctx, primary, shiftAddrs(addrs, n), sh)
		if err != nil {
			for _, i := range out {
				i.Close()
			}
			return nil, fmt.Errorf("%s replica %d: %w", primary.Spec.Name, n, err)
		}
		out = append(out, inst)
	}
	return out, nil
}

func (s *System) startReplica(ctx context.Context, primary *service.Instance, addrs service.Addrs, sh service.Shared) (*service.Instance, error) {
	sh.DB = primary.DB
	sh.Metrics = nil // a registry of its own: the server's metrics carry no instance label
	return service.Start(ctx, primary.Spec, addrs, sh)
}

// Replica is an instance of a hosted service started after [System.Run] by
// [System.StartReplica]: the caller stops (or kills) it.
type Replica struct {
	Instance *service.Instance
	cancel   context.CancelFunc
	done     chan struct{}
	once     sync.Once
}

// StartReplica starts one more instance of a service this process hosts, on
// addrs, sharing the first instance's database, and adds it to the clients'
// instance lists. It serves gRPC, admin HTTP and (if the service consumes)
// its consumer until [Replica.Stop] or [Replica.Kill].
func (s *System) StartReplica(ctx context.Context, name string, addrs service.Addrs) (*Replica, error) {
	var primary *service.Instance
	for _, i := range s.Instances {
		if i.Spec.Name == name {
			primary = i
			break
		}
	}
	if primary == nil {
		return nil, fmt.Errorf("StartReplica: %s is not hosted here", name)
	}
	sh := s.shared
	tc, err := s.mesh.serverTLS(name)
	if err != nil {
		return nil, err
	}
	sh.ServerTLS = tc
	inst, err := s.startReplica(ctx, primary, addrs, sh)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &Replica{Instance: inst, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = inst.ServeGRPC(rctx) })
	wg.Go(func() { _ = inst.Admin.Run(rctx) })
	if inst.Consumer != nil {
		wg.Go(func() { _ = inst.Consumer.Run(rctx) })
	}
	go func() { wg.Wait(); close(r.done) }()
	if c := s.mesh.client(name); c != nil {
		c.AddAddr(inst.GRPCAddr())
	}
	return r, nil
}

// Stop shuts the replica down gracefully (NOT_SERVING, then GracefulStop).
func (r *Replica) Stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}

// Kill drops the replica's connections at once, as a crash would, then
// stops the rest of it. Its address stays in the clients' lists.
func (r *Replica) Kill() {
	r.once.Do(func() {
		r.Instance.Server.Stop()
		r.cancel()
		<-r.done
	})
}

// selfName is the client identity of a process: the gateway's, else its
// first service's, else "client".
func selfName(opt Options) string {
	switch {
	case opt.Gateway:
		return "gateway"
	case len(opt.Services) > 0:
		return opt.Services[0]
	}
	return "client"
}

// DialService connects a command-line client (puchi content import) to a
// service at target with the process configuration's TLS material (the dev
// CA's "client" identity, or PUCHI_TLS_CA/CERT/KEY) and resilience settings;
// timeout is the default call deadline.
func DialService(cfg *Config, name, target string, timeout time.Duration) (*grpcx.Client, error) {
	m, err := newMesh(cfg, "client")
	if err != nil {
		return nil, err
	}
	cc, err := m.clientConfig(name)
	if err != nil {
		return nil, err
	}
	cc.Timeout = timeout
	return grpcx.NewClient(target, cc)
}
