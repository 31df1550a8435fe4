package system_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/puchi-dev/puchi/gen/descriptor"
	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/config"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/service"
)

// mesh is one booted Puchi process on free ports.
type mesh struct {
	sys  *system.System
	base string // gateway base URL
	tls  string // the dev CA and certificates (PUCHI_DATA_DIR/tls)
	stop func()
}

// boot builds and runs the whole system (embedded broker, every service, the
// gateway) on free ports over dataDir, and stops it when the test ends.
func boot(t *testing.T, dataDir, databaseURL string, extraEnv ...map[string]string) *mesh {
	t.Helper()
	cfg := &system.Config{}
	env := map[string]string{
		"PUCHI_DATA_DIR": dataDir, "PUCHI_BROKER_ADDR": "127.0.0.1:0", "PUCHI_GATEWAY_ADDR": "127.0.0.1:0",
		"PUCHI_DATABASE_URL": databaseURL, "PUCHI_GATEWAY_RATE_LIMIT": "0", "PUCHI_GATEWAY_AUTH_RATE_LIMIT": "0",
		"PUCHI_ADMIN_EMAILS": "admin@example.com",
	}
	for _, extra := range extraEnv {
		maps.Copy(env, extra)
	}
	if err := config.Load(cfg, config.MapLookup(env)); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]service.Addrs{}
	for _, name := range system.ServiceNames(cfg) {
		addrs[name] = service.Addrs{GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := system.Build(ctx, cfg, system.Options{
		Embedded: true, Services: system.ServiceNames(cfg), Gateway: true, Addrs: addrs,
		Lookup: config.MapLookup(nil), Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		cancel()
		t.Fatalf("build: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	m := &mesh{sys: sys, base: "http://" + sys.Gateway.Addr(), tls: filepath.Join(dataDir, "tls")}
	var once bool
	m.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("shutdown: %v", err)
			}
		case <-time.After(90 * time.Second):
			t.Error("shutdown did not finish")
		}
	}
	t.Cleanup(m.stop)
	waitFor(t, "gateway health", func() bool {
		code, body := m.call(t, "GET", "/health", "", nil)
		return code == 200 && strings.Contains(body, `"user":"SERVING"`)
	})
	return m
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends a JSON request through the gateway and returns status and body.
func (m *mesh) call(t *testing.T, method, path, token string, body any) (int, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expect calls and decodes the JSON answer into out, failing unless the status is want.
func (m *mesh) expect(t *testing.T, want int, method, path, token string, body, out any) {
	t.Helper()
	code, got := m.call(t, method, path, token, body)
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, got)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(got), out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, got, err)
		}
	}
}

type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
		Fields  []struct {
			Field string `json:"field"`
		} `json:"fields"`
	} `json:"error"`
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
}

type userJSON struct {
	ID          string `json:"id"`
	Email       string `json:"email"`
	DisplayName string `json:"display_name"`
	DailyGoalXP int    `json:"daily_goal_xp"`
}

func registration(email, username string) map[string]any {
	return map[string]any{
		"email": email, "password": "correct horse battery", "display_name": "Lan", "username": username,
		"native_language": "vi", "target_language": "en", "timezone": "Asia/Ho_Chi_Minh",
	}
}

// TestLearnerAccountFlow drives the user flow through REST, reads the events back
// from Kafka with an independent client, checks gRPC reflection and the topics,
// then restarts the process and checks that users and events survived. It runs on
// SQLite, and on PostgreSQL when PUCHI_TEST_POSTGRES_URL is set.
func TestLearnerAccountFlow(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	engines := map[string]string{"sqlite": ""}
	if url := os.Getenv("PUCHI_TEST_POSTGRES_URL"); url != "" {
		engines["postgres"] = freshPostgresDatabase(t, url)
	}
	for name, dbURL := range engines {
		t.Run(name, func(t *testing.T) { learnerAccountFlow(t, dbURL) })
	}
}

func learnerAccountFlow(t *testing.T, dbURL string) {
	dataDir := t.TempDir()
	m := boot(t, dataDir, dbURL)

	// Validation: 400 naming the field; nothing is created.
	var e apiError
	bad := registration("not-an-email", "lan")
	m.expect(t, 400, "POST", "/v1/auth/register", "", bad, &e)
	if len(e.Error.Fields) == 0 || e.Error.Fields[0].Field != "email" || e.Error.Status != "INVALID_ARGUMENT" {
		t.Fatalf("bad email: %+v", e)
	}
	short := registration("lan@example.com", "lan")
	short["password"] = "short"
	m.expect(t, 400, "POST", "/v1/auth/register", "", short, &e)
	if len(e.Error.Fields) == 0 || e.Error.Fields[0].Field != "password" {
		t.Fatalf("short password: %+v", e)
	}
	if code, body := m.call(t, "POST", "/v1/auth/register", "", map[string]any{"email": 5}); code != 400 {
		t.Fatalf("malformed JSON: %d %s", code, body)
	}

	// Register, duplicate, login.
	var reg struct {
		User   userJSON `json:"user"`
		Tokens tokens   `json:"tokens"`
	}
	m.expect(t, 200, "POST", "/v1/auth/register", "", registration("Lan@Example.com", "lan"), &reg)
	uid := reg.User.ID
	if uid == "" || reg.User.Email != "lan@example.com" || reg.User.DailyGoalXP != 20 || reg.Tokens.TokenType != "Bearer" {
		t.Fatalf("register: %+v", reg)
	}
	m.expect(t, 409, "POST", "/v1/auth/register", "", registration("lan@example.com", "lan2"), &e)
	if e.Error.Reason != "EMAIL_TAKEN" {
		t.Fatalf("duplicate: %+v", e)
	}
	m.expect(t, 401, "POST", "/v1/auth/login", "", map[string]any{"email": "lan@example.com", "password": "wrong password"}, &e)
	var login struct {
		Tokens tokens `json:"tokens"`
	}
	m.expect(t, 200, "POST", "/v1/auth/login", "", map[string]any{"email": "lan@example.com", "password": "correct horse battery"}, &login)

	// Me: 401 JSON without a token or with a forged one, 200 with it.
	m.expect(t, 401, "GET", "/v1/users/me", "", nil, &e)
	if e.Error.Status != "UNAUTHENTICATED" {
		t.Fatalf("no token: %+v", e)
	}
	m.expect(t, 401, "GET", "/v1/users/me", login.Tokens.AccessToken+"x", nil, &e)
	var me userJSON
	m.expect(t, 200, "GET", "/v1/users/me", login.Tokens.AccessToken, nil, &me)
	if me.ID != uid {
		t.Fatalf("me: %+v", me)
	}

	// Update, public profile, refresh rotation.
	m.expect(t, 200, "PATCH", "/v1/users/me", login.Tokens.AccessToken, map[string]any{"display_name": "Lan Nguyen", "daily_goal_xp": 30}, &me)
	if me.DisplayName != "Lan Nguyen" || me.DailyGoalXP != 30 {
		t.Fatalf("update: %+v", me)
	}
	m.expect(t, 400, "PATCH", "/v1/users/me", login.Tokens.AccessToken, map[string]any{"daily_goal_xp": 100000}, &e)
	var prof struct {
		DisplayName string `json:"display_name"`
		Email       string `json:"email"`
	}
	m.expect(t, 200, "GET", "/v1/users/lan", "", nil, &prof)
	if prof.DisplayName != "Lan Nguyen" || prof.Email != "" {
		t.Fatalf("public profile leaks or is wrong: %+v", prof)
	}
	var ref struct {
		Tokens tokens `json:"tokens"`
	}
	m.expect(t, 200, "POST", "/v1/auth/refresh", "", map[string]any{"refresh_token": login.Tokens.RefreshToken}, &ref)
	m.expect(t, 401, "POST", "/v1/auth/refresh", "", map[string]any{"refresh_token": login.Tokens.RefreshToken}, &e)
	if e.Error.Reason != "REFRESH_TOKEN_REUSED" {
		t.Fatalf("reuse: %+v", e)
	}

	// A second user, deleted at the end: UserDeleted is published.
	var other struct {
		User   userJSON `json:"user"`
		Tokens tokens   `json:"tokens"`
	}
	m.expect(t, 200, "POST", "/v1/auth/register", "", registration("chi@example.com", "chi"), &other)
	// Deletion takes the password again: without it 400 naming the field, with a
	// wrong one 403 INVALID_CREDENTIALS (not 401: the token is fine); the account
	// survives both.
	m.expect(t, 400, "DELETE", "/v1/users/me", other.Tokens.AccessToken, nil, &e)
	if e.Error.Status != "INVALID_ARGUMENT" || len(e.Error.Fields) != 1 || e.Error.Fields[0].Field != "password" {
		t.Fatalf("delete without password: %+v", e)
	}
	m.expect(t, 403, "DELETE", "/v1/users/me", other.Tokens.AccessToken, map[string]any{"password": "wrong password"}, &e)
	if e.Error.Status != "PERMISSION_DENIED" || e.Error.Reason != "INVALID_CREDENTIALS" {
		t.Fatalf("delete with a wrong password: %+v", e)
	}
	m.expect(t, 200, "GET", "/v1/users/me", other.Tokens.AccessToken, nil, &me)
	m.expect(t, 200, "DELETE", "/v1/users/me", other.Tokens.AccessToken, map[string]any{"password": "correct horse battery"}, nil)
	m.expect(t, 404, "GET", "/v1/users/me", other.Tokens.AccessToken, nil, &e)
	m.expect(t, 401, "POST", "/v1/auth/login", "", map[string]any{"email": "chi@example.com", "password": "correct horse battery"}, &e)
	if e.Error.Reason != "INVALID_CREDENTIALS" {
		t.Fatalf("login after delete: %+v", e)
	}

	// gRPC reflection lists the service on the user port.
	checkReflection(t, m.sys.Instances[0].GRPCAddr(), m.tls)

	// Topics: 9 with 3 partitions and 30 days of retention.
	info, err := kafka.DescribeTopics(context.Background(), m.sys.Kafka, kafka.Topics...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range kafka.Topics {
		if i := info[topic]; i.Partitions != 3 || i.Retention != 30*24*time.Hour || !i.RetentionExplicit {
			t.Errorf("topic %s: %+v", topic, i)
		}
	}

	// The events, read by an independent client and decoded with the committed
	// descriptor set (as kcat | buf convert would).
	wantTypes := map[string][]string{
		uid:           {"puchi.user.v1.UserRegistered", "puchi.user.v1.UserProfileUpdated"},
		other.User.ID: {"puchi.user.v1.UserRegistered", "puchi.user.v1.UserDeleted"},
	}
	checkUserEvents(t, m.sys.Brokers, wantTypes)

	// Restart on the same data: users log in, earlier events are still there.
	m.stop()
	m2 := boot(t, dataDir, dbURL)
	m2.expect(t, 200, "POST", "/v1/auth/login", "", map[string]any{"email": "lan@example.com", "password": "correct horse battery"}, &login)
	m2.expect(t, 200, "GET", "/v1/users/me", login.Tokens.AccessToken, nil, &me)
	if me.DisplayName != "Lan Nguyen" {
		t.Fatalf("after restart: %+v", me)
	}
	// An access token issued before the restart is still valid: the key persisted.
	m2.expect(t, 200, "GET", "/v1/users/me", reg.Tokens.AccessToken, nil, &me)
	checkUserEvents(t, m2.sys.Brokers, wantTypes)
}

// checkUserEvents reads user-events from the beginning with a fresh group until it
// has seen the wanted event types per user (in order) and checks every header.
func checkUserEvents(t *testing.T, brokers string, want map[string][]string) {
	t.Helper()
	files := decodeDescriptorSet(t)
	c, err := ck.NewConsumer(&ck.ConfigMap{
		"bootstrap.servers": brokers, "group.id": "e2e-" + randomHex(t), "auto.offset.reset": "earliest",
		"enable.auto.commit": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe(kafka.TopicUserEvents, nil); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	complete := func() bool {
		for uid, types := range want {
			if strings.Join(got[uid], ",") != strings.Join(types, ",") {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !complete() {
		if time.Now().After(deadline) {
			t.Fatalf("events seen %v, want %v", got, want)
		}
		msg, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			continue
		}
		h := map[string]string{}
		for _, hd := range msg.Headers {
			h[hd.Key] = string(hd.Value)
		}
		uid := string(msg.Key)
		if _, ok := want[uid]; !ok {
			continue
		}
		for _, k := range []string{"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "content-type", "traceparent"} {
			if h[k] == "" {
				t.Errorf("event %s lacks header %s: %v", h["ce_type"], k, h)
			}
		}
		if h["ce_specversion"] != "1.0" || h["ce_source"] != "user" || h["ce_subject"] != uid || h["content-type"] != "application/protobuf" {
			t.Errorf("headers: %v", h)
		}
		if _, err := time.Parse(time.RFC3339Nano, h["ce_time"]); err != nil {
			t.Errorf("ce_time %q: %v", h["ce_time"], err)
		}
		// Decode with the descriptor set only (no generated Go types).
		desc, err := files.FindDescriptorByName(protoreflect.FullName(h["ce_type"]))
		if err != nil {
			t.Fatalf("type %s not in the descriptor set: %v", h["ce_type"], err)
		}
		dm := dynamicpb.NewMessage(desc.(protoreflect.MessageDescriptor))
		if err := proto.Unmarshal(msg.Value, dm); err != nil {
			t.Fatalf("decode %s: %v", h["ce_type"], err)
		}
		if v := dm.Get(dm.Descriptor().Fields().ByName("user_id")).String(); v != uid {
			t.Errorf("%s.user_id = %q, want %q", h["ce_type"], v, uid)
		}
		got[uid] = append(got[uid], h["ce_type"])
	}
}

func decodeDescriptorSet(t *testing.T) interface {
	FindDescriptorByName(protoreflect.FullName) (protoreflect.Descriptor, error)
} {
	t.Helper()
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptor.Set, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// checkReflection lists services over mutual TLS with the generated client
// certificate, as grpcurl -cacert ca.pem -cert client.pem -key client.pem does.
func checkReflection(t *testing.T, addr, tlsDir string) {
	t.Helper()
	id, err := grpcx.LoadIdentity(filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "client.pem"), filepath.Join(tlsDir, "client.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tc := id.ClientTLS()
	tc.ServerName = "localhost"
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "puchi.user.v1.UserService") {
		t.Fatalf("reflection lists %v", names)
	}
}

// freshPostgresDatabase creates a database for one test and drops it afterwards.
// An unreachable server fails the test: a configured engine is never skipped.
func freshPostgresDatabase(t *testing.T, url string) string {
	t.Helper()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	name := "puchi_e2e_" + randomHex(t)
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		t.Fatalf("PUCHI_TEST_POSTGRES_URL is set but PostgreSQL is not usable: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	return replaceDatabase(t, url, name)
}

func replaceDatabase(t *testing.T, url, name string) string {
	t.Helper()
	base, query, _ := strings.Cut(url, "?")
	i := strings.LastIndex(base, "/")
	if i < len("postgres://") {
		t.Fatalf("cannot find the database name in %q", url)
	}
	out := base[:i+1] + name
	if query != "" {
		out += "?" + query
	}
	return out
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var _ = fmt.Sprintf
