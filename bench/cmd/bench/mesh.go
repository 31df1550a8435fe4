package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/puchi-dev/puchi/bench"
	userv1 "github.com/puchi-dev/puchi/gen/go/puchi/user/v1"
	"github.com/puchi-dev/puchi/platform/grpcx"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// services hosted by `puchi run`, whose addresses the bench assigns.
var services = []string{"user", "lesson", "quiz", "vocabulary", "progress"}

// mesh is a `puchi run` child process on free ports over its own data dir.
type mesh struct {
	cmd       *exec.Cmd
	pid       int
	base      string // gateway base URL
	userGRPC  string
	brokers   string
	dataDir   string // the process's PUCHI_DATA_DIR (its dev CA is in tls/)
	started   time.Time
	healthyIn time.Duration
	exited    chan struct{}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startMesh runs `puchi run` and returns once /health reports every service
// SERVING (the start-up time) and the demo course is loaded.
func startMesh(ctx context.Context, puchi, dataDir string) (*mesh, error) {
	env := append(os.Environ(),
		"PUCHI_DATA_DIR="+dataDir, "PUCHI_LOG_LEVEL=warn", "PUCHI_LOG_FORMAT=text",
		"PUCHI_GATEWAY_RATE_LIMIT=0", "PUCHI_GATEWAY_AUTH_RATE_LIMIT=0",
		"PUCHI_ACCESS_TOKEN_TTL=3h", "PUCHI_REFRESH_TOKEN_TTL=720h", "KAFKA_BROKERS=", "PUCHI_DATABASE_URL=",
	)
	m := &mesh{exited: make(chan struct{})}
	ports := map[string]string{}
	for _, k := range []string{"PUCHI_BROKER_ADDR", "PUCHI_GATEWAY_ADDR"} {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[k] = p
	}
	for _, s := range services {
		for _, suf := range []string{"GRPC_ADDR", "ADMIN_ADDR"} {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports["PUCHI_"+strings.ToUpper(s)+"_"+suf] = p
		}
	}
	for k, v := range ports {
		env = append(env, k+"="+v)
	}
	m.base = "http://" + ports["PUCHI_GATEWAY_ADDR"]
	m.userGRPC = ports["PUCHI_USER_GRPC_ADDR"]
	m.dataDir = dataDir
	m.brokers = ports["PUCHI_BROKER_ADDR"]
	m.cmd = exec.Command(puchi, "run")
	m.cmd.Env = env
	m.cmd.Stderr = os.Stderr
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", puchi, err)
	}
	m.pid = m.cmd.Process.Pid
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case <-m.exited:
			return nil, errors.New("puchi run exited during start-up")
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.stop()
			return nil, errors.New("puchi run not healthy within 2 minutes")
		}
		if resp, err := hc.Get(m.base + "/health"); err == nil {
			var h struct{ Status string }
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if resp.StatusCode == 200 && h.Status == "ok" {
				m.healthyIn = time.Since(m.started)
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return m, nil
}

// waitDemo waits until the demo course is listed.
func (m *mesh) waitDemo(ctx context.Context, token string) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		var out struct {
			Courses []struct {
				Course struct{ ID string } `json:"course"`
			} `json:"courses"`
		}
		if code, err := m.do(http.DefaultClient, "GET", "/v1/courses", token, nil, &out); err == nil && code == 200 && len(out.Courses) > 0 {
			return out.Courses[0].Course.ID, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", errors.New("demo course not loaded")
}

// stop sends SIGINT (a clean shutdown) and waits.
func (m *mesh) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-m.exited:
	case <-time.After(60 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// do sends a JSON request and decodes a JSON answer into out (may be nil).
func (m *mesh) do(c *http.Client, method, path, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, m.base+path, body)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

var learnerSeq atomic.Int64

// register signs up a new learner and returns the access token.
func (m *mesh) register(c *http.Client) (string, error) {
	n := learnerSeq.Add(1)
	name := fmt.Sprintf("bench%d_%d", time.Now().UnixNano()%1e6, n)
	var out struct {
		Tokens struct {
			AccessToken string `json:"access_token"`
		} `json:"tokens"`
	}
	_, err := m.do(c, "POST", "/v1/auth/register", "", map[string]string{
		"email": name + "@example.com", "password": "correct horse battery staple", "display_name": name,
		"username": name, "native_language": "vi", "target_language": "en", "timezone": "Asia/Ho_Chi_Minh",
	}, &out)
	return out.Tokens.AccessToken, err
}

func meshCases(ctx context.Context, o opts, tmp string, r *report) error {
	puchi, err := filepath.Abs(o.puchi)
	if err != nil {
		return err
	}
	if _, err := os.Stat(puchi); err != nil {
		return fmt.Errorf("%s: build it first (make bench does: go build -o bin/puchi ./cmd/puchi): %w", o.puchi, err)
	}
	if o.want("gateway") || o.want("learning") {
		m, err := startMesh(ctx, puchi, filepath.Join(tmp, "mesh"))
		if err != nil {
			return err
		}
		defer m.stop()
		logf("puchi run (pid %d) healthy in %s", m.pid, m.healthyIn.Round(time.Millisecond))
		if o.want("gateway") {
			if err := gatewayCase(ctx, o, m, r); err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
		}
		if o.want("learning") {
			if err := learningCase(ctx, o, m, r); err != nil {
				return fmt.Errorf("learning: %w", err)
			}
		}
		m.stop()
	}
	if o.want("footprint") {
		if err := footprintCase(ctx, o, puchi, tmp, r); err != nil {
			return fmt.Errorf("footprint: %w", err)
		}
	}
	return nil
}

const concurrency = 64

func httpClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: 30 * time.Second}
}

// load runs fn from c goroutines for d and returns per-request latencies (ms) and
// the error count.
func load(ctx context.Context, c int, d time.Duration, fn func() error) ([]float64, int64) {
	var mu sync.Mutex
	var all []float64
	var errs atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			lat := make([]float64, 0, 4096)
			for time.Now().Before(end) && ctx.Err() == nil {
				t := time.Now()
				if err := fn(); err != nil {
					errs.Add(1)
					continue
				}
				lat = append(lat, float64(time.Since(t))/1e6)
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all, errs.Load()
}

func gatewayCase(ctx context.Context, o opts, m *mesh, r *report) error {
	hc := httpClient(concurrency)
	token, err := m.register(hc)
	if err != nil {
		return err
	}
	// Direct gRPC the way another service calls: mutual TLS with the process's
	// dev CA (the gateway uses the same to reach the user service).
	ca, err := grpcx.LoadOrCreateDevCA(filepath.Join(m.dataDir, "tls"))
	if err != nil {
		return err
	}
	id, _, err := ca.Identity("client")
	if err != nil {
		return err
	}
	tc := id.ClientTLS()
	tc.ServerName = "user"
	conn, err := grpc.NewClient(m.userGRPC, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer conn.Close()
	uc := userv1.NewUserServiceClient(conn)
	md := metadata.Pairs("authorization", "Bearer "+token)
	viaGateway := func() error {
		req, _ := http.NewRequest("GET", m.base+"/v1/users/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	direct := func() error {
		_, err := uc.GetMe(metadata.NewOutgoingContext(ctx, md), &userv1.GetMeRequest{})
		return err
	}
	d := time.Duration(o.loadSecs * float64(time.Second))
	r.note("gateway: GET /v1/users/me with a bearer token through the REST gateway (HTTP/1.1 keep-alive, %d connections) vs UserService.GetMe over direct gRPC (one HTTP/2 connection) to the same `puchi run` process; closed loop, %d workers, %s per run after a 1 s warm-up; CPU µs/request = server process CPU (/proc/<pid>/stat) / requests (client: this process)", concurrency, concurrency, d)
	for _, v := range []struct {
		name string
		fn   func() error
	}{{"REST gateway", viaGateway}, {"direct gRPC", direct}} {
		load(ctx, concurrency, time.Second, v.fn) // warm-up
		var rps, p50, p99, cpuSrv, cpuCli []float64
		var ss samples
		var errsTotal int64
		for i := range o.runs {
			mt := newMeter(m.pid)
			lat, errs := load(ctx, concurrency, d, v.fn)
			s := mt.done()
			ss.add(s)
			errsTotal += errs
			slices.Sort(lat)
			n := float64(len(lat))
			rps = append(rps, n/s.wall.Seconds())
			p50 = append(p50, bench.PercentileSorted(lat, 50))
			p99 = append(p99, bench.PercentileSorted(lat, 99))
			cpuSrv = append(cpuSrv, s.srvCPU/n*1e6)
			cpuCli = append(cpuCli, s.cpu/n*1e6)
			logf("gateway %-12s run %d: %.0f req/s p50 %.2f p99 %.2f ms, server %.0f µs/req", v.name, i+1, rps[i], p50[i], p99[i], cpuSrv[i])
		}
		note := fmt.Sprintf("c=%d; client CPU µs/req %s", concurrency, bench.Summarize(cpuCli))
		if errsTotal > 0 {
			note += fmt.Sprintf("; %d errors", errsTotal)
		}
		r.add("4 Gateway", v.name, "req/s", rps, ss.cpuStr(), ss.rssStr(), note)
		r.add("4 Gateway", v.name, "p50 ms", p50, "", "", "")
		r.add("4 Gateway", v.name, "p99 ms", p99, "", "", "")
		r.add("4 Gateway", v.name, "server CPU µs/req", cpuSrv, "", "", "")
	}
	r.ratio("gateway vs direct gRPC throughput", "4 Gateway/REST gateway/req/s", "4 Gateway/direct gRPC/req/s", 0.35)
	r.limit("gateway p99 at c=64", "4 Gateway/REST gateway/p99 ms", 50, "ms", true)
	return nil
}

// learningCase: 50 concurrent learners each complete lessons of the demo course
// through REST; measured from the complete request until /v1/progress/me shows
// the XP.
func learningCase(ctx context.Context, o opts, m *mesh, r *report) error {
	hc := httpClient(2 * o.learners)
	admin, err := m.register(hc)
	if err != nil {
		return err
	}
	course, err := m.waitDemo(ctx, admin)
	if err != nil {
		return err
	}
	var outline struct {
		Units []struct {
			Lessons []struct{ ID string } `json:"lessons"`
		} `json:"units"`
	}
	if _, err := m.do(hc, "GET", "/v1/courses/"+course, admin, nil, &outline); err != nil {
		return err
	}
	var lessons []string
	for _, u := range outline.Units {
		for _, l := range u.Lessons {
			lessons = append(lessons, l.ID)
		}
	}
	if len(lessons) < o.lessons {
		return fmt.Errorf("demo course has %d lessons", len(lessons))
	}
	lessons = lessons[:o.lessons]
	const poll = 5 * time.Millisecond
	r.note("learning: %d learners at once (registered before timing), each takes the first %d demo lessons in order: POST /v1/lessons/{id}/attempts, POST /v1/attempts/{id}:complete (no answers: XP is awarded on first completion), then GET /v1/progress/me every %s until total_xp includes it; XP visible = from the complete request to that GET (lesson → user-learning-events → progress service inbox → REST)", o.learners, o.lessons, poll)
	var p50, p99, c50, c99, f50 []float64
	for run := range o.runs {
		tokens := make([]string, o.learners)
		var wg sync.WaitGroup
		var firstErr atomic.Pointer[error]
		for i := range tokens {
			wg.Go(func() {
				t, err := m.register(hc)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
				tokens[i] = t
			})
		}
		wg.Wait()
		if p := firstErr.Load(); p != nil {
			return *p
		}
		var mu sync.Mutex
		var visible, complete, flow []float64
		for _, tok := range tokens {
			wg.Go(func() {
				var xp int64
				for _, l := range lessons {
					t0 := time.Now()
					var att struct{ ID string }
					if _, err := m.do(hc, "POST", "/v1/lessons/"+l+"/attempts", tok, map[string]string{}, &att); err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					t1 := time.Now()
					var done struct {
						XPAwarded int64 `json:"xp_awarded"`
					}
					if _, err := m.do(hc, "POST", "/v1/attempts/"+att.ID+":complete", tok, map[string]string{}, &done); err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					t2 := time.Now()
					xp += done.XPAwarded
					deadline := t2.Add(30 * time.Second)
					for {
						var p struct {
							TotalXP string `json:"total_xp"`
						}
						if _, err := m.do(hc, "GET", "/v1/progress/me", tok, nil, &p); err != nil {
							firstErr.CompareAndSwap(nil, &err)
							return
						}
						if v, _ := strconv.ParseInt(p.TotalXP, 10, 64); v >= xp {
							break
						}
						if time.Now().After(deadline) {
							err := fmt.Errorf("XP %d not visible after 30 s", xp)
							firstErr.CompareAndSwap(nil, &err)
							return
						}
						time.Sleep(poll)
					}
					t3 := time.Now()
					mu.Lock()
					visible = append(visible, float64(t3.Sub(t1))/1e6)
					complete = append(complete, float64(t2.Sub(t1))/1e6)
					flow = append(flow, float64(t3.Sub(t0))/1e6)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if p := firstErr.Load(); p != nil {
			return *p
		}
		slices.Sort(visible)
		slices.Sort(complete)
		slices.Sort(flow)
		p50 = append(p50, bench.PercentileSorted(visible, 50))
		p99 = append(p99, bench.PercentileSorted(visible, 99))
		c50 = append(c50, bench.PercentileSorted(complete, 50))
		c99 = append(c99, bench.PercentileSorted(complete, 99))
		f50 = append(f50, bench.PercentileSorted(flow, 50))
		logf("learning run %d: XP visible p50 %.1f p99 %.1f ms; complete p50 %.1f p99 %.1f ms", run+1, p50[run], p99[run], c50[run], c99[run])
	}
	n := fmt.Sprintf("%d learners × %d lessons", o.learners, o.lessons)
	r.add("5 Learning flow", "complete → XP visible", "p50 ms", p50, "", "", n)
	r.add("5 Learning flow", "complete → XP visible", "p99 ms", p99, "", "", fmt.Sprintf("poll every %s", poll))
	r.add("5 Learning flow", "POST …:complete", "p50 ms", c50, "", "", "")
	r.add("5 Learning flow", "POST …:complete", "p99 ms", c99, "", "", "")
	r.add("5 Learning flow", "start → XP visible", "p50 ms", f50, "", "", "")
	return nil
}

// footprintCase boots `puchi run` fresh -runs times: time to healthy, idle RSS,
// RSS after publishing the retained events into its embedded broker.
func footprintCase(ctx context.Context, o opts, puchi, tmp string, r *report) error {
	var startup, idle, retained, peak []float64
	const settle = 5 * time.Second
	for i := range o.runs {
		m, err := startMesh(ctx, puchi, filepath.Join(tmp, fmt.Sprintf("footprint-%d", i)))
		if err != nil {
			return err
		}
		startup = append(startup, float64(m.healthyIn)/1e6)
		time.Sleep(settle)
		mem, err := bench.ProcMem(m.pid)
		if err != nil {
			m.stop()
			return err
		}
		idle = append(idle, float64(mem.RSS)/(1<<20))
		if err := fill(ctx, m.brokers, o.retained); err != nil {
			m.stop()
			return err
		}
		time.Sleep(2 * time.Second)
		mem, _ = bench.ProcMem(m.pid)
		retained = append(retained, float64(mem.RSS)/(1<<20))
		peak = append(peak, float64(mem.HWM)/(1<<20))
		logf("footprint run %d: healthy in %.0f ms, idle RSS %.0f MB, after %d events %.0f MB (peak %.0f MB)", i+1, startup[i], idle[i], o.retained, retained[i], peak[i])
		m.stop()
	}
	r.note("footprint: `%s run` with a fresh data dir per run (embedded broker with DataDir, SQLite, demo course loaded on first start); start-up = exec → /health status ok with every service SERVING; idle RSS (VmRSS) %s after healthy; then %d events of 100 B published into its embedded broker (topic bench-retained, raw confluent producer), RSS 2 s later", o.puchi, settle, o.retained)
	r.add("6 Footprint", "puchi run", "start-up to healthy ms", startup, "", "", "fresh data dir")
	r.add("6 Footprint", "puchi run", "idle RSS MB", idle, "", "", "")
	r.add("6 Footprint", "puchi run", fmt.Sprintf("RSS after %s events retained, MB", bench.Human(float64(o.retained))), retained, "", fmt.Sprintf("%.0f MB", bench.Median(peak)), "peak = VmHWM of the process")
	r.limit("`puchi run` idle RSS", "6 Footprint/puchi run/idle RSS MB", 150, "MB", true)
	return nil
}

// fill publishes n 100-byte events to the brokers with a raw producer.
func fill(ctx context.Context, brokers string, n int) error {
	cfg := kafka.Config{Brokers: brokers, ClientID: "bench-fill"}.WithDefaults()
	if err := kafka.EnsureTopics(ctx, cfg, "bench-retained"); err != nil {
		return err
	}
	e := &kenv{cfg: cfg}
	return e.publishRaw(ctx, "bench-retained", n)
}
