package deploycheck

// Traces: every puchi container exports to the OpenTelemetry collector, which
// forwards to Jaeger (deploy/otel-collector/config.yaml).

import (
	"context"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"gopkg.in/yaml.v3"

	"github.com/puchi-dev/puchi/platform/telemetry"
)

type collectorFile struct {
	Extensions map[string]struct {
		Endpoint string `yaml:"endpoint"`
	} `yaml:"extensions"`
	Receivers struct {
		OTLP struct {
			Protocols map[string]struct {
				Endpoint string `yaml:"endpoint"`
			} `yaml:"protocols"`
		} `yaml:"otlp"`
	} `yaml:"receivers"`
	Processors map[string]struct {
		Attributes []struct {
			Key           string `yaml:"key"`
			FromAttribute string `yaml:"from_attribute"`
			Action        string `yaml:"action"`
		} `yaml:"attributes"`
	} `yaml:"processors"`
	Exporters map[string]struct {
		Endpoint string `yaml:"endpoint"`
		TLS      struct {
			Insecure bool `yaml:"insecure"`
		} `yaml:"tls"`
	} `yaml:"exporters"`
	Service struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// exportProtocol is the OTLP transport platform/telemetry exports traces with.
func exportProtocol(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), "platform", "telemetry", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var grpc, http bool
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		grpc = grpc || strings.Contains(string(b), "exporters/otlp/otlptrace/otlptracegrpc")
		http = http || strings.Contains(string(b), "exporters/otlp/otlptrace/otlptracehttp")
	}
	switch {
	case grpc && !http:
		return "grpc"
	case http && !grpc:
		return "http"
	}
	t.Fatalf("platform/telemetry: cannot tell the OTLP exporter (gRPC %v, HTTP %v)", grpc, http)
	return ""
}

// listenPort checks that a collector endpoint listens on every interface (the
// default since v0.104 is localhost, unreachable from other containers).
func listenPort(t *testing.T, what, endpoint string) int {
	t.Helper()
	host, p, err := net.SplitHostPort(endpoint)
	port, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Errorf("%s: %s endpoint %q is not HOST:PORT", collectorConfig, what, endpoint)
		return 0
	}
	if host != "" && host != "0.0.0.0" {
		t.Errorf("%s: %s endpoint %q: listen on 0.0.0.0 so other containers reach it", collectorConfig, what, endpoint)
	}
	return port
}

func TestOTLPEndpoints(t *testing.T) {
	c := loadCompose(t)
	col, ok := c.Services["otel-collector"]
	if !ok {
		t.Fatal("no otel-collector service")
	}
	var cfg collectorFile
	if err := yaml.Unmarshal([]byte(readFile(t, collectorConfig)), &cfg); err != nil {
		t.Fatalf("%s: %v", collectorConfig, err)
	}

	// The collector reads this very file.
	ctrCfg, ok := flag(col.Command, "config")
	if !ok {
		t.Fatalf("otel-collector: command %q has no --config", col.Command)
	}
	if got, ok := inRepo(t, "otel-collector", col, ctrCfg); !ok || got != collectorConfig {
		t.Errorf("otel-collector: --config=%s is mounted from %q, want %s", ctrCfg, got, collectorConfig)
	}

	traces, ok := cfg.Service.Pipelines["traces"]
	if !ok {
		t.Fatalf("%s: no traces pipeline", collectorConfig)
	}
	if !slices.Contains(traces.Receivers, "otlp") {
		t.Errorf("%s: the traces pipeline does not receive from otlp", collectorConfig)
	}
	if !slices.ContainsFunc(traces.Processors, func(p string) bool { return p == "batch" || strings.HasPrefix(p, "batch/") }) {
		t.Errorf("%s: the traces pipeline has no batch processor", collectorConfig)
	}
	for _, p := range traces.Processors {
		if _, ok := cfg.Processors[p]; !ok {
			t.Errorf("%s: pipeline processor %q is not configured", collectorConfig, p)
		}
	}

	// Both OTLP transports are on; the one the code uses is what the
	// containers point at.
	ports := map[string]int{}
	for _, proto := range []string{"grpc", "http"} {
		p, ok := cfg.Receivers.OTLP.Protocols[proto]
		if !ok {
			t.Errorf("%s: no OTLP %s receiver", collectorConfig, proto)
			continue
		}
		ports[proto] = listenPort(t, "otlp "+proto, p.Endpoint)
	}
	proto := exportProtocol(t)
	want := ports[proto]
	pub := published(t, "otel-collector", col)
	for _, p := range ports {
		if pub[p] != p {
			t.Errorf("otel-collector: OTLP port %d is not published as %d:%d (for programs on the host)", p, p, p)
		}
	}

	// Health: no compose probe is possible (noHealthcheck), so the extension
	// must be on and published.
	hc, ok := cfg.Extensions["health_check"]
	if !ok || !slices.Contains(cfg.Service.Extensions, "health_check") {
		t.Errorf("%s: the health_check extension must be configured and enabled", collectorConfig)
	} else if p := listenPort(t, "health_check", hc.Endpoint); pub[p] != p {
		t.Errorf("otel-collector: health_check port %d is not published", p)
	}

	// Traces go on to Jaeger over OTLP/gRPC.
	toJaeger := false
	for _, e := range traces.Exporters {
		ex, ok := cfg.Exporters[e]
		if !ok {
			t.Errorf("%s: pipeline exporter %q is not configured", collectorConfig, e)
			continue
		}
		typ, _, _ := strings.Cut(e, "/")
		host, port, _ := net.SplitHostPort(ex.Endpoint)
		if host == "jaeger" && port == "4317" && (typ == "otlp_grpc" || typ == "otlp") && ex.TLS.Insecure {
			toJaeger = true
		}
	}
	if !toJaeger {
		t.Errorf("%s: the traces pipeline must export with otlp_grpc to jaeger:4317 (tls.insecure: Jaeger's receiver is plaintext)", collectorConfig)
	}
	if _, ok := c.Services["jaeger"]; !ok {
		t.Error("no jaeger service for the collector to export to")
	}

	// service.name is set by each container (OTEL_SERVICE_NAME, see
	// TestTraceServiceNames); the collector must pass it through unchanged.
	if len(traces.Processors) == 0 || traces.Processors[0] != "memory_limiter" {
		t.Errorf("%s: the traces pipeline must start with memory_limiter, has %v", collectorConfig, traces.Processors)
	}
	for _, p := range traces.Processors {
		for _, a := range cfg.Processors[p].Attributes {
			if a.Key == "service.name" || a.Key == "puchi.service" || a.FromAttribute == "puchi.service" {
				t.Errorf("%s: processor %q sets %s (from %q): service.name comes from each container's OTEL_SERVICE_NAME, the collector must not rewrite it", collectorConfig, p, a.Key, a.FromAttribute)
			}
		}
	}

	// Every puchi container exports to the collector's receiver for the
	// protocol the code speaks.
	n := 0
	for name, s := range c.Services {
		if !s.isPuchi() {
			continue
		}
		n++
		ep := s.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
		hostport := ep
		if strings.Contains(ep, "://") {
			u, err := url.Parse(ep)
			if err != nil || u.Scheme != "http" || (u.Path != "" && u.Path != "/") {
				t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q: want http://HOST:PORT (the collector's receiver has no TLS)", name, ep)
				continue
			}
			hostport = u.Host
		}
		host, p, err := net.SplitHostPort(hostport)
		if err != nil {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT = %q, want http://otel-collector:%d", name, ep, want)
			continue
		}
		if host != "otel-collector" {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT host %q is not the otel-collector service", name, host)
		}
		if port, _ := strconv.Atoi(p); port != want {
			t.Errorf("%s: OTEL_EXPORTER_OTLP_ENDPOINT port %s: the code exports OTLP/%s, which the collector receives on %d", name, p, proto, want)
		}
	}
	if n == 0 {
		t.Fatal("no puchi containers")
	}
}

// TestTraceServiceNames: every puchi container names its traces with the
// standard OTEL_SERVICE_NAME (platform/telemetry uses it as service.name,
// over the code's default "puchi"), set to its compose service name. That is
// the name docker compose logs, Prometheus's job and the Jaeger service all
// share; for a `serve <svc>` container it is also the service it runs. The
// one-shots (kafka-init, content-init) follow the same rule.
func TestTraceServiceNames(t *testing.T) {
	c := loadCompose(t)
	owner := map[string]string{} // OTEL_SERVICE_NAME -> container
	n := 0
	for _, name := range slices.Sorted(maps.Keys(c.Services)) {
		s := c.Services[name]
		if !s.isPuchi() {
			continue
		}
		n++
		got, ok := s.Environment["OTEL_SERVICE_NAME"]
		switch {
		case !ok || strings.TrimSpace(got) == "":
			t.Errorf("%s: no OTEL_SERVICE_NAME (its spans would say service %q)", name, defaultServiceName)
		case got != name:
			t.Errorf("%s: OTEL_SERVICE_NAME = %q, want %q (the compose service name)", name, got, name)
		}
		if prev, dup := owner[got]; dup && got != "" {
			t.Errorf("%s and %s both set OTEL_SERVICE_NAME=%q: Jaeger would merge their traces into one service", prev, name, got)
		}
		owner[got] = name
		if len(s.Command) == 2 && s.Command[0] == "serve" && got != s.Command[1] {
			t.Errorf("%s: runs `serve %s` but OTEL_SERVICE_NAME = %q", name, s.Command[1], got)
		}
		// The old scheme (a puchi.service attribute the collector copied into
		// service.name) is gone, and service.name has one source only.
		for _, kv := range strings.Split(s.Environment["OTEL_RESOURCE_ATTRIBUTES"], ",") {
			k, _, _ := strings.Cut(kv, "=")
			if k = strings.TrimSpace(k); k == "puchi.service" || k == "service.name" {
				t.Errorf("%s: OTEL_RESOURCE_ATTRIBUTES sets %s: name the container with OTEL_SERVICE_NAME only", name, k)
			}
		}
	}
	if n == 0 {
		t.Fatal("no puchi containers")
	}
}

// defaultServiceName is the Config.ServiceName internal/system passes to
// telemetry.Setup: what a span says without OTEL_SERVICE_NAME.
const defaultServiceName = "puchi"

// TestTraceResourceNamesTheContainer runs platform/telemetry's Setup with the
// OTEL_* environment compose gives the gateway and looks at the resource of a
// span: service.name must be "gateway", i.e. OTEL_SERVICE_NAME really wins over
// the code's default.
//
// The SDK reads the environment once per process (resource.Default); this is
// the only test here that sets up tracing.
func TestTraceResourceNamesTheContainer(t *testing.T) {
	c := loadCompose(t)
	gw, ok := c.Services["gateway"]
	if !ok {
		t.Fatal("no gateway service")
	}
	// Only the container's OTEL_* variables count, not the test runner's.
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	set := 0
	for k, v := range gw.Environment {
		if strings.HasPrefix(k, "OTEL_") {
			t.Setenv(k, v)
			set++
		}
	}
	if set == 0 {
		t.Fatal("gateway: no OTEL_* variables")
	}
	ctx := context.Background()
	// No OTLPEndpoint in the Config: nothing is exported.
	shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: defaultServiceName})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = shutdown(ctx) }()
	tp, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	if !ok {
		t.Fatalf("telemetry.Setup installed %T, not an SDK TracerProvider", otel.GetTracerProvider())
	}
	rec := tracetest.NewSpanRecorder()
	tp.RegisterSpanProcessor(rec)
	_, span := tp.Tracer("deploycheck").Start(ctx, "probe")
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("recorded %d spans, want 1", len(ended))
	}
	got := map[string]string{}
	for _, kv := range ended[0].Resource().Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	if got["service.name"] != "gateway" {
		t.Errorf("span resource service.name = %q, want gateway (OTEL_SERVICE_NAME=%q); resource: %v",
			got["service.name"], gw.Environment["OTEL_SERVICE_NAME"], got)
	}
}
