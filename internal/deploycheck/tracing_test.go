package deploycheck

// Traces: every puchi container exports to the OpenTelemetry collector, which
// forwards to Jaeger (deploy/otel-collector/config.yaml).

import (
	"context"
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

	// service.name comes from puchi.service (see TestTraceResourceNamesTheContainer).
	renames := false
	for _, p := range traces.Processors {
		for _, a := range cfg.Processors[p].Attributes {
			if a.Key == "service.name" && a.FromAttribute == "puchi.service" && (a.Action == "upsert" || a.Action == "update") {
				renames = true
			}
		}
	}
	if !renames {
		t.Errorf("%s: no traces processor sets service.name from puchi.service (every span would say service \"puchi\")", collectorConfig)
	}

	// Every puchi container exports to the collector's receiver for the
	// protocol the code speaks, and names itself.
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
		if got, want := s.Environment["OTEL_RESOURCE_ATTRIBUTES"], "puchi.service="+name; !slices.Contains(strings.Split(got, ","), want) {
			t.Errorf("%s: OTEL_RESOURCE_ATTRIBUTES = %q lacks %s", name, got, want)
		}
	}
	if n == 0 {
		t.Fatal("no puchi containers")
	}
}

// TestTraceResourceNamesTheContainer runs platform/telemetry's Setup with the
// environment compose gives the gateway and looks at the resource of a span:
// it must carry puchi.service (which the collector turns into service.name).
// It also settles whether OTEL_SERVICE_NAME works: the code fixes service.name,
// so compose must not set a variable that has no effect.
//
// The SDK reads the environment once per process (resource.Default); this is
// the only test here that sets up tracing.
func TestTraceResourceNamesTheContainer(t *testing.T) {
	c := loadCompose(t)
	gw := c.Services["gateway"]
	attrs := gw.Environment["OTEL_RESOURCE_ATTRIBUTES"]
	if attrs == "" {
		t.Fatal("gateway: no OTEL_RESOURCE_ATTRIBUTES")
	}
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", attrs)
	t.Setenv("OTEL_SERVICE_NAME", "deploycheck-probe")
	ctx := context.Background()
	shutdown, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "puchi"}) // no endpoint: nothing exported
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
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["puchi.service"] != "gateway" {
		t.Errorf("span resource puchi.service = %q, want gateway (from OTEL_RESOURCE_ATTRIBUTES=%q); resource: %v", got["puchi.service"], attrs, got)
	}
	if got["service.name"] != "deploycheck-probe" {
		for name, s := range c.Services {
			if v, ok := s.Environment["OTEL_SERVICE_NAME"]; ok {
				t.Errorf("%s: OTEL_SERVICE_NAME=%q has no effect: platform/telemetry sets service.name %q (use OTEL_RESOURCE_ATTRIBUTES=puchi.service=...)", name, v, got["service.name"])
			}
		}
	}
}
