package system_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/service"
)

// rpcCount sums grpc_server_handling_seconds_count of methods containing
// method on an admin server's /metrics.
func rpcCount(t *testing.T, admin, method string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "grpc_server_handling_seconds_count{") && strings.Contains(line, method) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// TestMeshResilience drives faults into a running mesh (mTLS on, as in
// `make run`): an instance of lesson dies under a steady REST read load and
// comes back; then every lesson instance is down (the breaker opens and the
// gateway fails fast) and recovers; service ports refuse plaintext and
// unknown-CA clients.
func TestMeshResilience(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: boots the mesh")
	}
	dataDir := t.TempDir()
	m := boot(t, dataDir, "", map[string]string{
		"PUCHI_BREAKER_FAILURES": "3", "PUCHI_BREAKER_OPEN": "500ms", "PUCHI_RECONNECT_MAX_DELAY": "300ms",
	})
	var reg struct {
		Tokens tokens `json:"tokens"`
	}
	m.expect(t, 200, "POST", "/v1/auth/register", "", registration("mesh@example.com", "meshy"), &reg)
	tok := reg.Tokens.AccessToken
	client := &http.Client{Timeout: 30 * time.Second}
	get := func(path string) (int, http.Header, string, error) {
		req, _ := http.NewRequest("GET", m.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b), nil
	}
	var primary *service.Instance
	for _, i := range m.sys.Instances {
		if i.Spec.Name == "lesson" {
			primary = i
		}
	}
	primaryAddr := primary.GRPCAddr()
	ctx := t.Context()
	const listCourses = "ListCourses"

	// 1. Two lesson instances; the second dies under load and comes back.
	r2, err := m.sys.StartReplica(ctx, "lesson", service.Addrs{GRPC: "127.0.0.1:0", Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r2.Stop)
	replicaAddr := r2.Instance.GRPCAddr()

	var total, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, _, body, err := get("/v1/courses")
				total.Add(1)
				if err != nil || code != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", code, body, err))
				}
			}
		})
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)
	waitFor(t, "the second instance to take reads", func() bool { return rpcCount(t, r2.Instance.AdminAddr(), listCourses) > 0 })
	r2.Kill()
	killedAt := total.Load()
	waitFor(t, "100 reads after the kill", func() bool { return total.Load() >= killedAt+100 })
	r3, err := m.sys.StartReplica(ctx, "lesson", service.Addrs{GRPC: replicaAddr, Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart on %s: %v", replicaAddr, err)
	}
	t.Cleanup(r3.Stop)
	waitFor(t, "the restarted instance to take reads again", func() bool { return rpcCount(t, r3.Instance.AdminAddr(), listCourses) > 0 })
	stopLoad()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed across the kill and restart; first: %v", n, total.Load(), firstFailure.Load())
	}
	t.Logf("%d reads, none failed; killed after %d", total.Load(), killedAt)

	// 2. Every lesson instance down: 503, fast once the breaker is open.
	r3.Kill()
	primary.Server.Stop()
	waitFor(t, "the lesson breaker to open", func() bool {
		code, _, body, err := get("/v1/courses")
		return err == nil && code == 503 && strings.Contains(body, grpcx.ReasonCircuitOpen)
	})
	start := time.Now()
	code, hdr, body, err := get("/v1/courses")
	took := time.Since(start)
	if err != nil || code != 503 || hdr.Get("Retry-After") == "" {
		t.Fatalf("lesson down: %d %q Retry-After %q (%v)", code, body, hdr.Get("Retry-After"), err)
	}
	if took > 2*time.Second { // the call deadline is 10 s; an open breaker answers at once
		t.Errorf("fail-fast answer took %v", took)
	}
	code, _, body, _ = get("/ready")
	if code != 503 || !strings.Contains(body, `"lesson":{"state":"down"`) {
		t.Errorf("/ready with lesson down: %d %s", code, body)
	}
	r4, err := m.sys.StartReplica(ctx, "lesson", service.Addrs{GRPC: primaryAddr, Admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("restart on %s: %v", primaryAddr, err)
	}
	t.Cleanup(r4.Stop)
	waitFor(t, "lesson reads to recover", func() bool {
		code, _, _, err := get("/v1/courses")
		return err == nil && code == 200
	})
	// One of two instances serving: degraded, still ready.
	waitFor(t, "/ready: lesson degraded (one of two instances), ready", func() bool {
		code, _, body, _ = get("/ready")
		return code == 200 && strings.Contains(body, `"lesson":{"state":"degraded"`)
	})

	// 3. Service ports speak mutual TLS only.
	var userAddr string
	for _, i := range m.sys.Instances {
		if i.Spec.Name == "user" {
			userAddr = i.GRPCAddr()
		}
	}
	tlsDir := filepath.Join(dataDir, "tls")
	good, err := grpcx.LoadIdentity(filepath.Join(tlsDir, "ca.pem"), filepath.Join(tlsDir, "client.pem"), filepath.Join(tlsDir, "client.pem"))
	if err != nil {
		t.Fatal(err)
	}
	strangerCA, err := grpcx.LoadOrCreateDevCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, err := strangerCA.Identity("client")
	if err != nil {
		t.Fatal(err)
	}
	check := func(creds credentials.TransportCredentials) error {
		conn, err := grpc.NewClient(userAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		return err
	}
	withName := func(c *tls.Config) *tls.Config { c.ServerName = "user"; return c }
	if err := check(credentials.NewTLS(withName(good.ClientTLS()))); err != nil {
		t.Errorf("generated client certificate refused: %v", err)
	}
	if err := check(insecure.NewCredentials()); err == nil {
		t.Error("plaintext client accepted")
	}
	if err := check(credentials.NewTLS(&tls.Config{ServerName: "user", RootCAs: good.CAs, Certificates: stranger.ClientTLS().Certificates})); err == nil {
		t.Error("client certificate of an unknown CA accepted")
	}
}
