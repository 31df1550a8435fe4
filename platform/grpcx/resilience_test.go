package grpcx_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/grpcx"
)

// The mesh test service is registered in protoregistry.GlobalFiles, as
// generated code is, so that the client's service config retries its reads.
const (
	meshSvc = "puchi.meshtest.v1.MeshService"
	mGet    = "/" + meshSvc + "/GetThing"
	mPut    = "/" + meshSvc + "/PutThing"
	mRelay  = "/" + meshSvc + "/RelayThing"
)

var (
	meshOnce sync.Once
	meshReq  protoreflect.MessageDescriptor
	meshResp protoreflect.MessageDescriptor
)

func meshTypes(t *testing.T) {
	t.Helper()
	meshOnce.Do(func() {
		str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
		i64 := descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()
		opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
		field := func(name string, n int32, typ *descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
			return &descriptorpb.FieldDescriptorProto{Name: proto.String(name), JsonName: proto.String(name), Number: proto.Int32(n), Type: typ, Label: opt}
		}
		method := func(name string) *descriptorpb.MethodDescriptorProto {
			return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(".puchi.meshtest.v1.ThingRequest"), OutputType: proto.String(".puchi.meshtest.v1.ThingResponse")}
		}
		fdp := &descriptorpb.FileDescriptorProto{
			Name: proto.String("puchi/meshtest/v1/mesh.proto"), Package: proto.String("puchi.meshtest.v1"), Syntax: proto.String("proto3"),
			MessageType: []*descriptorpb.DescriptorProto{
				{Name: proto.String("ThingRequest"), Field: []*descriptorpb.FieldDescriptorProto{
					field("idempotency_key", 1, str), field("sleep_ms", 2, i64), field("mode", 3, str)}},
				{Name: proto.String("ThingResponse"), Field: []*descriptorpb.FieldDescriptorProto{
					field("instance", 1, str), field("deadline_ms", 2, i64)}},
			},
			Service: []*descriptorpb.ServiceDescriptorProto{{Name: proto.String("MeshService"),
				Method: []*descriptorpb.MethodDescriptorProto{method("GetThing"), method("PutThing"), method("RelayThing")}}},
		}
		fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
		if err != nil {
			panic(err)
		}
		if err := protoregistry.GlobalFiles.RegisterFile(fd); err != nil {
			panic(err)
		}
		meshReq, meshResp = fd.Messages().ByName("ThingRequest"), fd.Messages().ByName("ThingResponse")
	})
}

func thingReq(key, mode string, sleep time.Duration) *dynamicpb.Message {
	m := dynamicpb.NewMessage(meshReq)
	m.Set(meshReq.Fields().ByName("idempotency_key"), protoreflect.ValueOfString(key))
	m.Set(meshReq.Fields().ByName("mode"), protoreflect.ValueOfString(mode))
	m.Set(meshReq.Fields().ByName("sleep_ms"), protoreflect.ValueOfInt64(sleep.Milliseconds()))
	return m
}

func respInstance(m *dynamicpb.Message) string {
	return m.Get(meshResp.Fields().ByName("instance")).String()
}

func respDeadline(m *dynamicpb.Message) time.Duration {
	return time.Duration(m.Get(meshResp.Fields().ByName("deadline_ms")).Int()) * time.Millisecond
}

// meshInstance is one instance of the mesh test service.
type meshInstance struct {
	name      string
	srv       *grpcx.Server
	addr      string
	calls     atomic.Int64 // calls handled, by any method
	fail      atomic.Bool  // answer UNAVAILABLE
	cancelled chan struct{}
	relay     *grpc.ClientConn
	cancel    context.CancelFunc
	done      chan error
}

func (mi *meshInstance) handle(ctx context.Context, method string, req *dynamicpb.Message) (*dynamicpb.Message, error) {
	mi.calls.Add(1)
	if mi.fail.Load() {
		return nil, status.Error(codes.Unavailable, "instance failing")
	}
	switch req.Get(meshReq.Fields().ByName("mode")).String() {
	case "notfound":
		return nil, status.Error(codes.NotFound, "no such thing")
	}
	if ms := req.Get(meshReq.Fields().ByName("sleep_ms")).Int(); ms > 0 {
		select {
		case <-ctx.Done():
			close(mi.cancelled)
			return nil, ctx.Err()
		case <-time.After(time.Duration(ms) * time.Millisecond):
		}
	}
	if method == "RelayThing" {
		out := dynamicpb.NewMessage(meshResp)
		err := mi.relay.Invoke(ctx, mGet, thingReq("", "", 0), out)
		return out, err
	}
	out := dynamicpb.NewMessage(meshResp)
	out.Set(meshResp.Fields().ByName("instance"), protoreflect.ValueOfString(mi.name))
	if dl, ok := ctx.Deadline(); ok {
		out.Set(meshResp.Fields().ByName("deadline_ms"), protoreflect.ValueOfInt64(time.Until(dl).Milliseconds()))
	}
	return out, nil
}

// startMesh serves the mesh test service on addr ("127.0.0.1:0": a free port).
func startMesh(t *testing.T, name, addr string, tc *tls.Config) *meshInstance {
	t.Helper()
	meshTypes(t)
	verifier, err := auth.NewVerifier(tokenCfg, mustKey(t).Public)
	if err != nil {
		t.Fatal(err)
	}
	mi := &meshInstance{name: name, cancelled: make(chan struct{}), done: make(chan error, 1)}
	mi.srv, err = grpcx.NewServer(grpcx.ServerConfig{Name: name, Verifier: verifier, PublicMethods: []string{mGet, mPut, mRelay},
		GracefulTimeout: time.Second, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	unary := func(name string) grpc.MethodDesc {
		return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			req := dynamicpb.NewMessage(meshReq)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) { return mi.handle(ctx, name, req.(*dynamicpb.Message)) }
			return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + meshSvc + "/" + name}, h)
		}}
	}
	mi.srv.RegisterService(&grpc.ServiceDesc{ServiceName: meshSvc, HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{unary("GetThing"), unary("PutThing"), unary("RelayThing")}}, mi)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mi.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	mi.cancel = cancel
	go func() { mi.done <- mi.srv.Serve(ctx, lis) }()
	t.Cleanup(mi.stop)
	return mi
}

func (mi *meshInstance) stop() {
	mi.cancel()
	<-mi.done
	mi.done <- nil // idempotent
}

func newMeshClient(t *testing.T, target string, cfg grpcx.ClientConfig) *grpcx.Client {
	t.Helper()
	meshTypes(t)
	c, err := grpcx.NewClient(target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func meshCall(ctx context.Context, c *grpcx.Client, method string, req *dynamicpb.Message) (*dynamicpb.Message, error) {
	out := dynamicpb.NewMessage(meshResp)
	return out, c.Invoke(ctx, method, req, out)
}

// eventually polls cond every 10 ms for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Reads are retried on UNAVAILABLE onto another instance; writes only when
// they carry an idempotency key (field or metadata).
func TestRetriesOnlyIdempotentCalls(t *testing.T) {
	t.Parallel()
	bad := startMesh(t, "bad", "127.0.0.1:0", nil)
	good := startMesh(t, "good", "127.0.0.1:0", nil)
	bad.fail.Store(true)
	c := newMeshClient(t, bad.addr+","+good.addr, grpcx.ClientConfig{Name: "mesh", BreakerFailures: -1})
	ctx := t.Context()

	// Both instances take calls (round robin), and every read succeeds.
	for i := 0; bad.calls.Load() < 3; i++ {
		if i > 200 {
			t.Fatal("the failing instance never got a read")
		}
		if _, err := meshCall(ctx, c, mGet, thingReq("", "", 0)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	// Writes with a key (field, or idempotency-key metadata) succeed too.
	before := bad.calls.Load()
	for i := 0; bad.calls.Load() < before+4; i++ {
		if i > 200 {
			t.Fatal("the failing instance never got a keyed write")
		}
		if _, err := meshCall(ctx, c, mPut, thingReq("k-1", "", 0)); err != nil {
			t.Fatalf("keyed write %d: %v", i, err)
		}
		mctx := metadata.AppendToOutgoingContext(ctx, "idempotency-key", "k-2")
		if _, err := meshCall(mctx, c, mPut, thingReq("", "", 0)); err != nil {
			t.Fatalf("write with idempotency-key metadata %d: %v", i, err)
		}
	}
	// Writes without a key are never retried: each one the failing instance
	// takes fails.
	failures := 0
	before = bad.calls.Load()
	for i := 0; i < 20; i++ {
		if _, err := meshCall(ctx, c, mPut, thingReq("", "", 0)); status.Code(err) == codes.Unavailable {
			failures++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if got := int(bad.calls.Load() - before); failures != got || failures == 0 {
		t.Errorf("unkeyed writes: %d failed, the failing instance took %d (want equal, > 0)", failures, got)
	}
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	backend := startMesh(t, "backend", "127.0.0.1:0", nil)
	front := startMesh(t, "front", "127.0.0.1:0", nil)
	front.relay = newMeshClient(t, backend.addr, grpcx.ClientConfig{Timeout: time.Hour}).ClientConn
	c := newMeshClient(t, front.addr, grpcx.ClientConfig{Timeout: time.Hour, MethodTimeouts: map[string]time.Duration{"GetThing": 3 * time.Second}})

	// Per-method default when the caller sets none.
	out, err := meshCall(t.Context(), c, mGet, thingReq("", "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if d := respDeadline(out); d <= 0 || d > 3*time.Second {
		t.Errorf("GetThing deadline %v, want the 3s method default", d)
	}
	// An incoming deadline propagates to the downstream call (not the
	// relay client's one-hour default).
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, err = meshCall(ctx, c, mRelay, thingReq("", "", 0))
	if err != nil {
		t.Fatal(err)
	}
	if d := respDeadline(out); d <= 0 || d > 5*time.Second {
		t.Errorf("downstream deadline %v, want at most the caller's 5s", d)
	}
	// A deadline shorter than the handler: DEADLINE_EXCEEDED, handler cancelled.
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := meshCall(ctx, c, mPut, thingReq("", "", time.Minute)); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("slow call: %v, want DeadlineExceeded", err)
	}
	select {
	case <-front.cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	if got := grpcx.MethodTimeout("/a.B/GetX", time.Second, map[string]time.Duration{"/a.B/": 2 * time.Second, "/a.B/GetX": 3 * time.Second}); got != 3*time.Second {
		t.Errorf("MethodTimeout full name = %v", got)
	}
	if got := grpcx.MethodTimeout("/a.B/GetY", time.Second, map[string]time.Duration{"/a.B/": 2 * time.Second}); got != 2*time.Second {
		t.Errorf("MethodTimeout service prefix = %v", got)
	}
}

func TestCircuitBreaker(t *testing.T) {
	t.Parallel()
	mi := startMesh(t, "flaky", "127.0.0.1:0", nil)
	c := newMeshClient(t, mi.addr, grpcx.ClientConfig{Name: "flaky", RetryAttempts: 1, BreakerFailures: 3, BreakerOpen: 200 * time.Millisecond})
	ctx := t.Context()
	// Domain errors never trip it.
	for range 10 {
		if _, err := meshCall(ctx, c, mGet, thingReq("", "notfound", 0)); status.Code(err) != codes.NotFound {
			t.Fatalf("notfound: %v", err)
		}
	}
	if c.BreakerState() != grpcx.BreakerClosed {
		t.Fatalf("breaker %s after NotFound errors", c.BreakerState())
	}
	mi.fail.Store(true)
	for range 3 {
		if _, err := meshCall(ctx, c, mGet, thingReq("", "", 0)); status.Code(err) != codes.Unavailable {
			t.Fatalf("failing call: %v", err)
		}
	}
	if c.BreakerState() != grpcx.BreakerOpen {
		t.Fatalf("breaker %s after 3 failures, want open", c.BreakerState())
	}
	calls := mi.calls.Load()
	_, err := meshCall(ctx, c, mGet, thingReq("", "", 0))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || mi.calls.Load() != calls {
		t.Fatalf("open breaker: %v (server calls %d -> %d), want a fast UNAVAILABLE", err, calls, mi.calls.Load())
	}
	var reason string
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			reason = ei.GetReason()
		}
	}
	if ra, ok := grpcx.RetryAfter(err); !ok || ra <= 0 || ra > 200*time.Millisecond || reason != grpcx.ReasonCircuitOpen {
		t.Errorf("open breaker: retry after %v %v, reason %q", ra, ok, reason)
	}
	// Recovery: the half-open probe succeeds and closes the circuit.
	mi.fail.Store(false)
	eventually(t, "the breaker to let a probe through", func() bool { return c.BreakerState() != grpcx.BreakerOpen })
	if _, err := meshCall(ctx, c, mGet, thingReq("", "", 0)); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if c.BreakerState() != grpcx.BreakerClosed {
		t.Errorf("breaker %s after a successful probe", c.BreakerState())
	}
}

// An instance that reports NOT_SERVING gets no calls until it serves again.
func TestRoundRobinHealthChecking(t *testing.T) {
	t.Parallel()
	a := startMesh(t, "a", "127.0.0.1:0", nil)
	b := startMesh(t, "b", "127.0.0.1:0", nil)
	c := newMeshClient(t, a.addr+","+b.addr, grpcx.ClientConfig{Name: "mesh"})
	ctx := t.Context()
	seen := func(want string, n int) {
		t.Helper()
		got := 0
		for i := 0; got < n; i++ {
			if i > 500 {
				t.Fatalf("instance %s not called", want)
			}
			out, err := meshCall(ctx, c, mGet, thingReq("", "", 0))
			if err != nil {
				t.Fatal(err)
			}
			if respInstance(out) == want {
				got++
			}
		}
	}
	seen("a", 2)
	seen("b", 2)
	if h := c.Health(ctx, time.Second); h.State != grpcx.StateServing || len(h.Instances) != 2 {
		t.Errorf("health %+v, want serving with 2 instances", h)
	}
	for _, s := range []string{"", meshSvc} {
		a.srv.Health().SetServingStatus(s, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	// Once the watch reports it, a gets nothing: 50 calls in a row on b.
	eventually(t, "a to be dropped", func() bool {
		for range 50 {
			out, err := meshCall(ctx, c, mGet, thingReq("", "", 0))
			if err != nil || respInstance(out) != "b" {
				return false
			}
		}
		return true
	})
	if h := c.Health(ctx, time.Second); h.State != grpcx.StateDegraded || h.Instances[a.addr] != "NOT_SERVING" {
		t.Errorf("health %+v, want degraded with a NOT_SERVING", h)
	}
	a.srv.Health().SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	seen("a", 2)
	b.stop()
	a.stop()
	if h := c.Health(ctx, time.Second); h.State != grpcx.StateDown {
		t.Errorf("health %+v, want down", h)
	}
}

// Mutual TLS: the server refuses plaintext, unknown-CA and certificate-less
// clients; a client checks that the server's certificate names the service.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca, err := grpcx.LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	again, err := grpcx.LoadOrCreateDevCA(ca.Dir)
	if err != nil || again.CAFile() != ca.CAFile() {
		t.Fatalf("reload CA: %v", err)
	}
	srvID, _, err := ca.Identity("lesson")
	if err != nil {
		t.Fatal(err)
	}
	cliID, file, err := again.Identity("gateway")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := grpcx.LoadIdentity(ca.CAFile(), file, file); err != nil {
		t.Fatalf("load issued identity: %v", err)
	}
	other, err := grpcx.LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	strangerID, _, err := other.Identity("gateway")
	if err != nil {
		t.Fatal(err)
	}
	mi := startMesh(t, "lesson", "127.0.0.1:0", srvID.ServerTLS())

	ok := newMeshClient(t, mi.addr, grpcx.ClientConfig{Name: "lesson", TLS: cliID.ClientTLS(), RetryAttempts: 1, BreakerFailures: -1})
	if _, err := meshCall(t.Context(), ok, mGet, thingReq("", "", 0)); err != nil {
		t.Fatalf("mTLS call: %v", err)
	}
	noCert := cliID.ClientTLS()
	noCert.Certificates = nil
	wrongName := newMeshClient(t, mi.addr, grpcx.ClientConfig{Name: "user", TLS: cliID.ClientTLS(), RetryAttempts: 1, BreakerFailures: -1})
	for name, dial := range map[string]grpc.DialOption{
		"plaintext":        grpc.WithTransportCredentials(insecure.NewCredentials()),
		"unknown CA":       grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{ServerName: "lesson", RootCAs: srvID.CAs, Certificates: strangerID.ClientTLS().Certificates})),
		"no cert":          grpc.WithTransportCredentials(credentials.NewTLS(withName(noCert, "lesson"))),
		"untrusted server": grpc.WithTransportCredentials(credentials.NewTLS(withName(strangerID.ClientTLS(), "lesson"))),
	} {
		conn, err := grpc.NewClient(mi.addr, dial)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		_ = conn.Close()
		if err == nil {
			t.Errorf("%s: health check succeeded, want refused", name)
		}
	}
	if _, err := meshCall(t.Context(), wrongName, mGet, thingReq("", "", 0)); status.Code(err) != codes.Unavailable {
		t.Errorf("server certificate for another name: %v, want refused", err)
	}
}

func withName(c *tls.Config, name string) *tls.Config {
	c.ServerName = name
	return c
}
