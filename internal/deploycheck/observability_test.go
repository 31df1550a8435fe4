package deploycheck

// Checks of the object-storage and observability containers of
// docker-compose.yml: images, health checks, restart policies, the files they
// are told to read, and MinIO for the media service. tracing_test.go,
// prometheus_test.go, grafana_test.go and metrics_test.go check what runs in them.

import (
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/puchi-dev/puchi/internal/system"
)

// observabilityImages: compose service -> the image repository it must run.
// MinIO comes from quay.io: Docker Hub no longer hosts minio/minio.
var observabilityImages = map[string]string{
	"otel-collector": "otel/opentelemetry-collector-contrib",
	"jaeger":         "jaegertracing/all-in-one",
	"prometheus":     "prom/prometheus",
	"grafana":        "grafana/grafana",
	"minio":          "quay.io/minio/minio",
}

// noHealthcheck: services whose image cannot run a probe, and why. Anything
// here must be checkable another way (see TestOTLPEndpoints for the collector).
var noHealthcheck = map[string]string{
	"otel-collector": "the image is FROM scratch: no shell, curl or wget; its health_check extension is published for probes from the host",
}

// Deploy files, relative to the repository root.
const (
	collectorConfig   = "deploy/otel-collector/config.yaml"
	prometheusConfig  = "deploy/prometheus/prometheus.yml"
	alertRules        = "deploy/prometheus/alerts.yml"
	alertRuleTests    = "deploy/prometheus/alerts_test.yml"
	grafanaDatasource = "deploy/grafana/provisioning/datasources/datasources.yml"
	grafanaProviders  = "deploy/grafana/provisioning/dashboards/dashboards.yml"
	grafanaDashboards = "deploy/grafana/dashboards"
)

// ---- compose helpers ---------------------------------------------------------

// imageRef splits "repo:tag" (a registry host may carry a port; a digest counts
// as a pin).
func imageRef(image string) (repo, tag string) {
	if i := strings.Index(image, "@"); i >= 0 {
		return image[:i], image[i+1:]
	}
	slash := strings.LastIndex(image, "/")
	if i := strings.LastIndex(image, ":"); i > slash {
		return image[:i], image[i+1:]
	}
	return image, ""
}

// longRunning: started by `make up` and kept running (not a one-shot job).
func (s composeService) longRunning() bool { return s.Restart != "no" && len(s.Profiles) == 0 }

// flag returns the value of --name=value or --name value in a command.
func flag(cmd []string, name string) (string, bool) {
	for i, a := range cmd {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(cmd) {
			return cmd[i+1], true
		}
	}
	return "", false
}

// inRepo maps a path inside a container to the repository file bind-mounted
// there (the longest mount target that contains it), relative to the root.
func inRepo(t *testing.T, name string, s composeService, ctrPath string) (string, bool) {
	t.Helper()
	best, bestLen := "", -1
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
			continue
		}
		src, dst := path.Clean(parts[0]), path.Clean(parts[1])
		rel, ok := strings.CutPrefix(ctrPath, dst)
		if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
			continue
		}
		if len(dst) > bestLen {
			best, bestLen = path.Join(src, rel), len(dst)
		}
	}
	if bestLen < 0 {
		return "", false
	}
	if _, err := os.Stat(filepath.Join(root(t), best)); err != nil {
		t.Errorf("%s: %s is mounted from %s, which does not exist", name, ctrPath, best)
	}
	return best, true
}

// puchiPort returns the port a puchi container serves /metrics on: the
// service's admin address, or the gateway's address.
func puchiPort(t *testing.T, name string, s composeService) (int, bool) {
	t.Helper()
	var env string
	switch {
	case len(s.Command) == 2 && s.Command[0] == "serve":
		env = "PUCHI_" + strings.ToUpper(s.Command[1]) + "_ADMIN_ADDR"
	case len(s.Command) == 1 && s.Command[0] == "gateway":
		env = "PUCHI_GATEWAY_ADDR"
	default:
		return 0, false
	}
	_, p, err := net.SplitHostPort(s.Environment[env])
	port, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Errorf("%s: %s = %q is not [HOST]:PORT", name, env, s.Environment[env])
		return 0, false
	}
	return port, true
}

// ---- compose: the new services ---------------------------------------------

func TestObservabilityServices(t *testing.T) {
	c := loadCompose(t)
	gw, ok := c.Services["gateway"]
	if !ok || gw.Restart == "" {
		t.Fatal("no gateway with a restart policy to compare with")
	}
	for name, repo := range observabilityImages {
		s, ok := c.Services[name]
		if !ok {
			t.Errorf("compose service %q missing", name)
			continue
		}
		r, tag := imageRef(s.Image)
		if r != repo {
			t.Errorf("%s: image %q, want %s:<version>", name, s.Image, repo)
		}
		if tag == "" || tag == "latest" || !regexp.MustCompile(`\d`).MatchString(tag) {
			t.Errorf("%s: image %q: pin a version tag", name, s.Image)
		}
		if len(s.Profiles) > 0 {
			t.Errorf("%s: in profiles %v, so `make up` would not start it", name, s.Profiles)
		}
		hasHC := s.Healthcheck != nil && len(s.Healthcheck.Test) > 0
		if why, exempt := noHealthcheck[name]; exempt {
			if hasHC {
				t.Errorf("%s: has a healthcheck now; drop it from noHealthcheck (%s)", name, why)
			}
		} else if !hasHC {
			t.Errorf("%s: no healthcheck", name)
		}
	}
	for name := range noHealthcheck {
		if _, ok := observabilityImages[name]; !ok {
			t.Errorf("noHealthcheck names %q, which is not an observability service", name)
		}
	}
	// Every long-running container, old and new, restarts like the gateway.
	for name, s := range c.Services {
		if s.longRunning() && s.Restart != gw.Restart {
			t.Errorf("%s: restart %q, the others use %q", name, s.Restart, gw.Restart)
		}
	}
}

// ---- MinIO -------------------------------------------------------------------

func TestMediaUsesMinIO(t *testing.T) {
	c := loadCompose(t)
	m, ok := c.Services["minio"]
	if !ok {
		t.Fatal("no minio service")
	}
	media, ok := c.Services["media"]
	if !ok {
		t.Fatal("no media service")
	}
	env := media.Environment

	// MinIO: `server DIR --console-address :9001`, API on :9000, DIR a volume.
	if len(m.Command) < 2 || m.Command[0] != "server" {
		t.Fatalf("minio: command %q, want [server /data --console-address :9001]", m.Command)
	}
	dir := m.Command[1]
	if addr, ok := flag(m.Command, "address"); ok && addr != ":9000" {
		t.Errorf("minio: --address %s; the media service expects the API on :9000", addr)
	}
	console, _ := flag(m.Command, "console-address")
	if console != ":9001" {
		t.Errorf("minio: --console-address %q, want :9001 (without it the console port is random)", console)
	}
	pub := published(t, "minio", m)
	for _, p := range []int{9000, 9001} {
		if pub[p] != p {
			t.Errorf("minio: want %d:%d published", p, p)
		}
	}
	stored := false
	for _, v := range m.Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if _, named := c.Volumes[src]; named && strings.TrimSuffix(dst, ":rw") == dir {
			stored = true
		}
	}
	if !stored {
		t.Errorf("minio: %s is not on a named volume (objects would go with the container)", dir)
	}

	// Credentials: from the environment, with dev defaults, the same on both sides.
	cred := regexp.MustCompile(`^\$\{([A-Z][A-Z0-9_]*):-([^}]+)\}$`)
	for _, pair := range [][2]string{{"MINIO_ROOT_USER", "PUCHI_MEDIA_S3_ACCESS_KEY"}, {"MINIO_ROOT_PASSWORD", "PUCHI_MEDIA_S3_SECRET_KEY"}} {
		minio, media := m.Environment[pair[0]], env[pair[1]]
		mm := cred.FindStringSubmatch(minio)
		if mm == nil {
			t.Errorf("minio: %s = %q, want ${VAR:-dev-default}", pair[0], minio)
			continue
		}
		if media != minio {
			t.Errorf("media: %s = %q, want %q (minio's %s)", pair[1], media, minio, pair[0])
		}
		// MinIO refuses to start with a shorter user (3) or password (8).
		if shortest := map[string]int{"MINIO_ROOT_USER": 3, "MINIO_ROOT_PASSWORD": 8}[pair[0]]; len(mm[2]) < shortest {
			t.Errorf("minio: the default %s %q is shorter than MinIO accepts (%d)", pair[0], mm[2], shortest)
		}
	}

	want := map[string]string{
		"PUCHI_MEDIA_STORE":       "s3",
		"PUCHI_MEDIA_S3_ENDPOINT": "minio:9000",
		"PUCHI_MEDIA_S3_REGION":   "us-east-1",
		"PUCHI_MEDIA_S3_TLS":      "false", // MinIO serves plain HTTP here
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("media: %s = %q, want %q", k, env[k], v)
		}
	}
	if b := env["PUCHI_MEDIA_S3_BUCKET"]; !regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`).MatchString(b) {
		t.Errorf("media: PUCHI_MEDIA_S3_BUCKET = %q is not a valid S3 bucket name", b)
	}
	if media.DependsOn["minio"].Condition != "service_healthy" {
		t.Error("media: should wait for minio to be healthy")
	}

	// Every store variable compose sets is one the configuration reads.
	read := configVars(reflect.TypeFor[system.Config]())
	for k := range env {
		if (k == "PUCHI_MEDIA_STORE" || strings.HasPrefix(k, "PUCHI_MEDIA_S3_")) && !read[k] {
			t.Errorf("media: %s is not read by internal/system.Config (a typo, or the code does not support it yet)", k)
		}
	}
}

// configVars returns the `env` tags of a configuration struct, embedded and
// nested structs included.
func configVars(typ reflect.Type) map[string]bool {
	out := map[string]bool{}
	for f := range typ.Fields() {
		if v := f.Tag.Get("env"); v != "" {
			out[v] = true
		} else if f.Type.Kind() == reflect.Struct {
			maps.Copy(out, configVars(f.Type))
		}
	}
	return out
}
