package grpcx_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

const (
	svcName         = "puchi.test.v1.TestService"
	methodProtected = "/" + svcName + "/Echo"
	methodPublic    = "/" + svcName + "/PublicEcho"
	methodStream    = "/" + svcName + "/EchoStream"
)

// testTypes builds, at run time, the messages a generated test service would
// have:
//
//	message EchoRequest {
//	  string email = 1 [(buf.validate.field).string.email = true];
//	  string mode  = 2;
//	}
//	message EchoResponse { string user_id = 1; }
type testTypes struct {
	req, resp protoreflect.MessageDescriptor
}

func newTestTypes(t *testing.T) testTypes {
	t.Helper()
	emailOpts := &descriptorpb.FieldOptions{}
	proto.SetExtension(emailOpts, validate.E_Field, validate.FieldRules_builder{
		String: validate.StringRules_builder{Email: proto.Bool(true)}.Build(),
	}.Build())
	str := descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()
	opt := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:       proto.String("puchi/test/v1/test.proto"),
		Package:    proto.String("puchi.test.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"buf/validate/validate.proto"},
		MessageType: []*descriptorpb.DescriptorProto{
			{Name: proto.String("EchoRequest"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("email"), JsonName: proto.String("email"), Number: proto.Int32(1), Type: str, Label: opt, Options: emailOpts},
				{Name: proto.String("mode"), JsonName: proto.String("mode"), Number: proto.Int32(2), Type: str, Label: opt},
			}},
			{Name: proto.String("EchoResponse"), Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("user_id"), JsonName: proto.String("userId"), Number: proto.Int32(1), Type: str, Label: opt},
			}},
		},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return testTypes{req: fd.Messages().ByName("EchoRequest"), resp: fd.Messages().ByName("EchoResponse")}
}

// request builds an EchoRequest; an empty email is replaced by a valid one.
func (tt testTypes) request(email, mode string) *dynamicpb.Message {
	if email == "" {
		email = "ana@example.com"
	}
	m := dynamicpb.NewMessage(tt.req)
	m.Set(tt.req.Fields().ByName("email"), protoreflect.ValueOfString(email))
	m.Set(tt.req.Fields().ByName("mode"), protoreflect.ValueOfString(mode))
	return m
}

func (tt testTypes) response(userID string) *dynamicpb.Message {
	m := dynamicpb.NewMessage(tt.resp)
	m.Set(tt.resp.Fields().ByName("user_id"), protoreflect.ValueOfString(userID))
	return m
}

func userID(m *dynamicpb.Message) string {
	return m.Get(m.Descriptor().Fields().ByName("user_id")).String()
}

// testService implements the test service by mode: it echoes the caller,
// panics, fails with various errors, reports its deadline, or relays the
// call to another server through a grpcx client.
type testService struct {
	types testTypes
	relay *grpc.ClientConn
}

var errRaw = errors.New("pq: password authentication failed for secret-db")

func (s *testService) echo(ctx context.Context, req *dynamicpb.Message) (*dynamicpb.Message, error) {
	mode := req.Get(s.types.req.Fields().ByName("mode")).String()
	switch mode {
	case "panic":
		panic("boom")
	case "notfound":
		return nil, apperr.NotFound("LESSON_NOT_FOUND", "lesson not found")
	case "invalid":
		return nil, apperr.Invalid("display_name", "NAME_TOO_LONG", "display name is too long")
	case "conflict":
		return nil, apperr.Conflict("EMAIL_TAKEN", "email already registered")
	case "forbidden":
		return nil, apperr.Forbidden("NOT_OWNER", "not yours")
	case "precondition":
		return nil, apperr.New(apperr.KindFailedPrecondition, "LESSON_LOCKED", "lesson locked")
	case "unavailable":
		return nil, apperr.New(apperr.KindUnavailable, "TRY_LATER", "try later")
	case "toomany":
		return nil, apperr.New(apperr.KindTooMany, "SLOW_DOWN", "slow down")
	case "internal":
		return nil, &apperr.Error{Kind: apperr.KindInternal, Reason: "DB_DOWN", Message: "secret-db down", Cause: errRaw}
	case "raw":
		return nil, errRaw
	case "status":
		return nil, status.Error(codes.Aborted, "aborted on purpose")
	case "deadline":
		if _, ok := ctx.Deadline(); ok {
			return s.types.response("has-deadline"), nil
		}
		return s.types.response("no-deadline"), nil
	case "relay":
		out := s.types.response("")
		if err := s.relay.Invoke(ctx, methodProtected, s.types.request("", ""), out); err != nil {
			return nil, err
		}
		return s.types.response("relayed:" + userID(out)), nil
	}
	if c, ok := auth.FromContext(ctx); ok {
		return s.types.response(c.UserID), nil
	}
	return s.types.response("anonymous"), nil
}

func (s *testService) register(r grpc.ServiceRegistrar) {
	unary := func(name string) grpc.MethodDesc {
		return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			req := dynamicpb.NewMessage(s.types.req)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) { return s.echo(ctx, req.(*dynamicpb.Message)) }
			if ic == nil {
				return h(ctx, req)
			}
			return ic(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + svcName + "/" + name}, h)
		}}
	}
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: svcName,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{unary("Echo"), unary("PublicEcho")},
		Streams: []grpc.StreamDesc{{StreamName: "EchoStream", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
			req := dynamicpb.NewMessage(s.types.req)
			if err := ss.RecvMsg(req); err != nil {
				return err
			}
			resp, err := s.echo(ss.Context(), req)
			if err != nil {
				return err
			}
			return ss.SendMsg(resp)
		}}},
	}, s)
}

type fixture struct {
	types   testTypes
	srv     *grpcx.Server
	conn    *grpc.ClientConn
	logs    *telemetrytest.LogBuffer
	metrics *prometheus.Registry
	issuer  *auth.Issuer
	cancel  context.CancelFunc
	done    chan error
}

var tokenCfg = auth.TokenConfig{Issuer: "puchi-user", Audience: "puchi"}

// start serves the test service on 127.0.0.1:0. relayTo, when set, is the
// server the "relay" mode calls.
func start(t *testing.T, key *auth.KeyPair, relayTo string) *fixture {
	t.Helper()
	verifier, err := auth.NewVerifier(tokenCfg, key.Public)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := auth.NewIssuer(key, tokenCfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{types: newTestTypes(t), logs: &telemetrytest.LogBuffer{}, metrics: prometheus.NewRegistry(), issuer: issuer, done: make(chan error, 1)}
	f.srv, err = grpcx.NewServer(grpcx.ServerConfig{
		Name:          "test",
		Verifier:      verifier,
		PublicMethods: []string{methodPublic},
		Logger:        slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:       f.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{types: f.types}
	if relayTo != "" {
		svc.relay, err = grpcx.Dial(relayTo, grpcx.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.relay.Close() })
	}
	svc.register(f.srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- f.srv.Serve(ctx, lis) }()
	f.conn, err = grpcx.Dial(lis.Addr().String(), grpcx.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.conn.Close()
		cancel()
		if err := <-f.done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return f
}

func (f *fixture) token(t *testing.T, user string) string {
	t.Helper()
	tok, _, err := f.issuer.Issue(user, auth.RoleLearner, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withToken(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

func errorInfo(t *testing.T, err error) (*errdetails.ErrorInfo, *errdetails.BadRequest) {
	t.Helper()
	var info *errdetails.ErrorInfo
	var br *errdetails.BadRequest
	for _, d := range status.Convert(err).Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			br = d
		}
	}
	return info, br
}

func TestServerAuth(t *testing.T) {
	t.Parallel()
	key, otherKey := mustKey(t), mustKey(t)
	f := start(t, key, "")
	otherIssuer, _ := auth.NewIssuer(otherKey, tokenCfg)
	forged, _, _ := otherIssuer.Issue("mallory", auth.RoleAdmin, time.Minute)
	tests := []struct {
		name       string
		method     string
		auth       string // raw authorization header; "" = none
		wantCode   codes.Code
		wantUser   string
		wantReason string
	}{
		{"protected without token", methodProtected, "", codes.Unauthenticated, "", auth.ReasonTokenMissing},
		{"protected with token", methodProtected, "Bearer " + f.token(t, "u1"), codes.OK, "u1", ""},
		{"protected lowercase scheme", methodProtected, "bearer " + f.token(t, "u1"), codes.OK, "u1", ""},
		{"protected with foreign key", methodProtected, "Bearer " + forged, codes.Unauthenticated, "", auth.ReasonTokenInvalid},
		{"protected with basic auth", methodProtected, "Basic dXNlcjpwYXNz", codes.Unauthenticated, "", auth.ReasonTokenInvalid},
		{"public without token", methodPublic, "", codes.OK, "anonymous", ""},
		{"public with token gets claims", methodPublic, "Bearer " + f.token(t, "u2"), codes.OK, "u2", ""},
		{"public with bad token stays anonymous", methodPublic, "Bearer " + forged, codes.OK, "anonymous", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.auth != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", tt.auth)
			}
			resp := f.types.response("")
			err := f.conn.Invoke(ctx, tt.method, f.types.request("", ""), resp)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && userID(resp) != tt.wantUser {
				t.Errorf("user = %q, want %q", userID(resp), tt.wantUser)
			}
			if tt.wantReason != "" {
				info, _ := errorInfo(t, err)
				if info.GetReason() != tt.wantReason || info.GetDomain() != grpcx.ErrorDomain {
					t.Errorf("ErrorInfo = %v, want reason %q", info, tt.wantReason)
				}
			}
		})
	}
}

func TestServerErrorsAndPanics(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	f := start(t, key, "")
	tok := f.token(t, "u1")
	tests := []struct {
		mode       string
		wantCode   codes.Code
		wantMsg    string
		wantReason string
		wantField  string
		wantLogged string // substring the server log must contain
	}{
		{"panic", codes.Internal, "internal error", "", "", "goroutine"},
		{"notfound", codes.NotFound, "lesson not found", "LESSON_NOT_FOUND", "", ""},
		{"invalid", codes.InvalidArgument, "display name is too long", "NAME_TOO_LONG", "display_name", ""},
		{"conflict", codes.AlreadyExists, "email already registered", "EMAIL_TAKEN", "", ""},
		{"forbidden", codes.PermissionDenied, "not yours", "NOT_OWNER", "", ""},
		{"precondition", codes.FailedPrecondition, "lesson locked", "LESSON_LOCKED", "", ""},
		{"unavailable", codes.Unavailable, "try later", "TRY_LATER", "", ""},
		{"toomany", codes.ResourceExhausted, "slow down", "SLOW_DOWN", "", ""},
		{"internal", codes.Internal, "internal error", "DB_DOWN", "", "secret-db"},
		{"raw", codes.Internal, "internal error", "", "", "secret-db"},
		{"status", codes.Aborted, "aborted on purpose", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Parallel()
			for _, method := range []string{methodProtected, methodStream} {
				err := call(t, f, method, withToken(t.Context(), tok), f.types.request("", tt.mode))
				st := status.Convert(err)
				if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
					t.Fatalf("%s: status = %v %q, want %v %q", method, st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
				}
				if strings.Contains(st.Message(), "secret") {
					t.Errorf("%s: internal detail leaked: %q", method, st.Message())
				}
				info, br := errorInfo(t, err)
				if tt.wantReason != "" && (info.GetReason() != tt.wantReason || info.GetDomain() != grpcx.ErrorDomain) {
					t.Errorf("%s: ErrorInfo = %v, want reason %q", method, info, tt.wantReason)
				}
				if tt.wantField != "" {
					if info.GetMetadata()["field"] != tt.wantField {
						t.Errorf("%s: ErrorInfo metadata = %v", method, info.GetMetadata())
					}
					if len(br.GetFieldViolations()) != 1 || br.GetFieldViolations()[0].GetField() != tt.wantField {
						t.Errorf("%s: BadRequest = %v", method, br)
					}
				}
			}
			if tt.wantLogged != "" && !strings.Contains(f.logs.String(), tt.wantLogged) {
				t.Errorf("server log lacks %q", tt.wantLogged)
			}
		})
	}
}

// call invokes method (unary or server-streaming) and returns its error.
func call(t *testing.T, f *fixture, method string, ctx context.Context, req proto.Message) error {
	t.Helper()
	if method != methodStream {
		return f.conn.Invoke(ctx, method, req, f.types.response(""))
	}
	cs, err := f.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return err
	}
	if err := cs.SendMsg(req); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return cs.RecvMsg(f.types.response(""))
}

func TestServerValidation(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	f := start(t, key, "")
	tok := f.token(t, "u1")
	tests := []struct {
		name     string
		email    string
		wantCode codes.Code
	}{
		{"valid", "ana@example.com", codes.OK},
		{"invalid email", "not-an-email", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, method := range []string{methodProtected, methodStream} {
				err := call(t, f, method, withToken(t.Context(), tok), f.types.request(tt.email, ""))
				if got := status.Code(err); got != tt.wantCode {
					t.Fatalf("%s: code = %v (%v), want %v", method, got, err, tt.wantCode)
				}
				if tt.wantCode == codes.OK {
					continue
				}
				info, br := errorInfo(t, err)
				if info.GetReason() != grpcx.ReasonValidationFailed {
					t.Errorf("%s: ErrorInfo = %v", method, info)
				}
				fvs := br.GetFieldViolations()
				if len(fvs) != 1 || fvs[0].GetField() != "email" || fvs[0].GetReason() != "string.email" || fvs[0].GetDescription() == "" {
					t.Errorf("%s: field violations = %v", method, fvs)
				}
				if !strings.HasPrefix(status.Convert(err).Message(), "invalid request: email: ") {
					t.Errorf("%s: message = %q", method, status.Convert(err).Message())
				}
			}
		})
	}
}

func TestServerHealthReflectionAndMetrics(t *testing.T) {
	t.Parallel()
	f := start(t, mustKey(t), "")
	hc := healthpb.NewHealthClient(f.conn)
	for _, svc := range []string{"", svcName} {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v, %v; want SERVING without a token", svc, resp, err)
		}
	}
	if _, ok := f.srv.GetServiceInfo()["grpc.reflection.v1.ServerReflection"]; !ok {
		t.Error("reflection not registered")
	}
	if err := f.conn.Invoke(t.Context(), methodPublic, f.types.request("", ""), f.types.response("")); err != nil {
		t.Fatal(err)
	}
	mfs, err := f.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "grpc_server_handling_seconds" {
			found = true
		}
	}
	if !found {
		t.Error("grpc_server_handling_seconds not registered")
	}
	if !strings.Contains(f.logs.String(), `"method":"`+methodPublic+`"`) {
		t.Error("rpc not logged")
	}

	_ = f.srv.MarkNotServing(t.Context())
	resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: ""})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("after MarkNotServing Check = %v, %v", resp, err)
	}
}

func TestClientDeadlineAndAuthForwarding(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	backend := start(t, key, "")
	front := start(t, key, backend.conn.Target())
	tests := []struct {
		name     string
		mode     string
		ctx      func(t *testing.T) context.Context
		wantUser string
		wantCode codes.Code
	}{
		{"default deadline added", "deadline", func(t *testing.T) context.Context { return t.Context() }, "has-deadline", codes.OK},
		{"token forwarded", "relay", func(t *testing.T) context.Context {
			return withToken(t.Context(), front.token(t, "u7"))
		}, "relayed:u7", codes.OK},
		{"nothing to forward", "relay", func(t *testing.T) context.Context { return t.Context() }, "", codes.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp := front.types.response("")
			err := front.conn.Invoke(tt.ctx(t), methodPublic, front.types.request("", tt.mode), resp)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code = %v (%v), want %v", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && userID(resp) != tt.wantUser {
				t.Errorf("user = %q, want %q", userID(resp), tt.wantUser)
			}
		})
	}
}

func TestServeStopsOnContext(t *testing.T) {
	t.Parallel()
	key := mustKey(t)
	verifier, _ := auth.NewVerifier(tokenCfg, key.Public)
	srv, err := grpcx.NewServer(grpcx.ServerConfig{Name: "stop", Addr: "127.0.0.1:0", Verifier: verifier, GracefulTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
	if _, err := grpcx.NewServer(grpcx.ServerConfig{Name: "x"}); err == nil {
		t.Error("NewServer without Verifier succeeded")
	}
}

func mustKey(t *testing.T) *auth.KeyPair {
	t.Helper()
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
