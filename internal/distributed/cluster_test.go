package distributed_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

// proc is one `puchi` process of the topology. Its stdout and stderr go to out,
// which the test logs only when it fails.
type proc struct {
	name string
	args []string
	env  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run has exited
	err  error         // the current run's exit status, once done
	down bool          // stopped on purpose by the test
	out  telemetrytest.LogBuffer
}

// cluster owns the processes and kills them all when the test ends.
type cluster struct {
	t     *testing.T
	bin   string
	procs []*proc
}

func newCluster(t *testing.T, bin string) *cluster {
	c := &cluster{t: t, bin: bin}
	t.Cleanup(c.shutdown)
	return c
}

// start launches a process in its own process group (so that kill reaches
// anything it spawned).
func (c *cluster) start(name string, env []string, args ...string) *proc {
	c.t.Helper()
	p := &proc{name: name, args: args, env: env}
	c.procs = append(c.procs, p)
	c.run(p)
	return p
}

func (c *cluster) run(p *proc) {
	c.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(c.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	fmt.Fprintf(&p.out, "=== %s: puchi %s\n", time.Now().Format(time.TimeOnly), strings.Join(p.args, " "))
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err, p.down = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		fmt.Fprintf(&p.out, "=== %s: exited: %v\n", time.Now().Format(time.TimeOnly), err)
		close(done)
	}()
}

// exited reports whether the current run of p has ended, and how.
func (p *proc) exited() (bool, error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.err
	default:
		return false, nil
	}
}

// signal sends sig to p's process group and waits (bounded) for it to exit.
func (p *proc) signal(sig syscall.Signal, wait time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
		return nil
	case <-time.After(wait):
		return fmt.Errorf("%s did not exit within %s of %v", p.name, wait, sig)
	}
}

// kill9 kills p with SIGKILL, as a crash would.
func (c *cluster) kill9(p *proc) {
	c.t.Helper()
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	if err := p.signal(syscall.SIGKILL, 10*time.Second); err != nil {
		c.t.Fatal(err)
	}
}

// restart starts p again with the same arguments and environment.
func (c *cluster) restart(p *proc) {
	c.t.Helper()
	if ok, _ := p.exited(); !ok {
		c.t.Fatalf("restart %s: still running", p.name)
	}
	c.run(p)
}

// checkAlive fails the test at once when a process that should run has exited.
func (c *cluster) checkAlive() {
	c.t.Helper()
	for _, p := range c.procs {
		if ok, err := p.exited(); ok && !p.expectDown() {
			c.t.Fatalf("%s exited unexpectedly: %v", p.name, err)
		}
	}
}

// expectDown is set while the test has deliberately stopped p.
func (p *proc) expectDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd == nil || p.down
}

// shutdown stops every process group in order — the gateway, then the services
// together, then the broker — with SIGTERM, and SIGKILLs whatever has not exited
// within a bounded wait. Logs appear only on failure.
func (c *cluster) shutdown() {
	stage := func(p *proc) int {
		switch p.name {
		case "gateway":
			return 0
		case "broker":
			return 2
		}
		return 1
	}
	for s := range 3 {
		var wg sync.WaitGroup
		for _, p := range c.procs {
			if stage(p) != s {
				continue
			}
			wg.Go(func() {
				if err := p.signal(syscall.SIGTERM, 20*time.Second); err != nil {
					c.t.Log(err, "; killing it")
					_ = p.signal(syscall.SIGKILL, 5*time.Second)
				}
			})
		}
		wg.Wait()
	}
	if c.t.Failed() {
		for _, p := range c.procs {
			c.t.Logf("---- %s output ----\n%s", p.name, p.out.String())
		}
	}
}

// waitFor polls cond until it holds, failing after timeout or as soon as a
// process that should be running has died.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) time.Duration {
	c.t.Helper()
	start := time.Now()
	for !cond() {
		c.checkAlive()
		if time.Since(start) > timeout {
			c.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// freePort returns a 127.0.0.1 address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// repoRoot is the workspace root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Clean(filepath.Join(wd, "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "cmd", "puchi", "main.go")); err != nil {
		t.Fatalf("cannot find the repository root from %s: %v", wd, err)
	}
	return root
}

// buildPuchi builds the binary once for the test.
func buildPuchi(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "puchi")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/puchi")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/puchi: %v\n%s", err, out)
	}
	return bin
}

// baseEnv is this process's environment without Puchi's, Kafka's and
// OpenTelemetry's variables, so that a developer's shell cannot leak into the
// topology.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PUCHI_") || strings.HasPrefix(kv, "KAFKA_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// freshDatabase creates a database for this test on the server of url and drops
// it afterwards. A configured but unusable server fails the test.
func freshDatabase(t *testing.T, url string) string {
	t.Helper()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatalf("PUCHI_TEST_POSTGRES_URL: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "puchi_dist_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("PUCHI_TEST_POSTGRES_URL is set but PostgreSQL is not usable: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	base, query, _ := strings.Cut(url, "?")
	i := strings.LastIndex(base, "/")
	if i < len("postgres://") {
		t.Fatalf("cannot find the database name in PUCHI_TEST_POSTGRES_URL %q", url)
	}
	out := base[:i+1] + name
	if query != "" {
		out += "?" + query
	}
	return out
}

// client talks to the gateway over REST.
type client struct {
	c    *cluster
	base string
	http *http.Client
}

// do sends body (nil: none) and returns the status and the body.
func (cl *client) do(method, path, token string, headers map[string]string, body []byte) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, cl.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// rest sends the protojson form of in (nil: no body), requires status want and
// decodes the answer into out (nil: ignore).
func (cl *client) rest(want int, method, path, token string, headers map[string]string, in, out proto.Message) {
	t := cl.c.t
	t.Helper()
	var body []byte
	if in != nil {
		var err error
		if body, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(in); err != nil {
			t.Fatal(err)
		}
	}
	code, raw, err := cl.do(method, path, token, headers, body)
	if err != nil {
		cl.c.checkAlive()
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if code != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, want, raw)
	}
	if out != nil {
		if err := protojson.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

// get is a GET that may fail (the service behind it may be down); it reports
// whether out was filled.
func (cl *client) get(path, token string, out proto.Message) bool {
	code, raw, err := cl.do("GET", path, token, nil, nil)
	if err != nil || code != http.StatusOK {
		return false
	}
	proto.Reset(out)
	return protojson.Unmarshal(raw, out) == nil
}

// httpOK reports whether url answers 200.
func httpOK(url string) bool {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// tcpOpen reports whether something accepts connections on addr.
func tcpOpen(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}
