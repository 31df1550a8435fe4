package deploycheck

// Prometheus: scrape targets against docker-compose.yml, the alert rules and
// their promtool unit tests (deploy/prometheus).

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type prometheusFile struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		Scheme        string `yaml:"scheme"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func loadPrometheus(t *testing.T) prometheusFile {
	t.Helper()
	var p prometheusFile
	if err := yaml.Unmarshal([]byte(readFile(t, prometheusConfig)), &p); err != nil {
		t.Fatalf("%s: %v", prometheusConfig, err)
	}
	return p
}

// TestPrometheusScrapesEveryPuchiContainer: the targets are exactly the
// long-running puchi containers at the port they serve /metrics on (admin
// port, gateway port), each in a job named after its compose service.
func TestPrometheusScrapesEveryPuchiContainer(t *testing.T) {
	c := loadCompose(t)
	want := map[string]bool{}
	for name, s := range c.Services {
		if !s.isPuchi() || !s.longRunning() {
			continue
		}
		if port, ok := puchiPort(t, name, s); ok {
			want[fmt.Sprintf("%s:%d", name, port)] = true
		} else {
			t.Errorf("%s: a long-running puchi container that is neither `serve SVC` nor `gateway`: how is it scraped?", name)
		}
	}
	if len(want) == 0 {
		t.Fatal("no puchi containers to scrape")
	}

	p := loadPrometheus(t)
	got := map[string]bool{}
	jobs := map[string]bool{}
	for _, sc := range p.ScrapeConfigs {
		if jobs[sc.JobName] {
			t.Errorf("%s: job %q twice", prometheusConfig, sc.JobName)
		}
		jobs[sc.JobName] = true
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("%s: job %s scrapes %s; puchi serves /metrics", prometheusConfig, sc.JobName, sc.MetricsPath)
		}
		if sc.Scheme != "" && sc.Scheme != "http" {
			t.Errorf("%s: job %s: scheme %s; the admin ports serve plain HTTP", prometheusConfig, sc.JobName, sc.Scheme)
		}
		for _, st := range sc.StaticConfigs {
			for k := range st.Labels {
				t.Errorf("%s: job %s: target label %q; puchi series have their own labels (service, group, ...) and a target label would rename a clash to exported_*", prometheusConfig, sc.JobName, k)
			}
			for _, target := range st.Targets {
				if got[target] {
					t.Errorf("%s: target %s twice", prometheusConfig, target)
				}
				got[target] = true
				host, _, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("%s: target %q is not HOST:PORT", prometheusConfig, target)
					continue
				}
				if _, ok := c.Services[host]; !ok {
					t.Errorf("%s: target %s: %q is not a compose service (the name would not resolve)", prometheusConfig, target, host)
				}
				if sc.JobName != host {
					t.Errorf("%s: target %s is in job %q; name the job after the container (alerts say job=...)", prometheusConfig, target, sc.JobName)
				}
			}
		}
	}
	for target := range want {
		if !got[target] {
			t.Errorf("%s: no target %s (a puchi container's /metrics)", prometheusConfig, target)
		}
	}
	for target := range got {
		if !want[target] {
			t.Errorf("%s: target %s is not a puchi container's metrics port", prometheusConfig, target)
		}
	}

	// The metrics handlers exist where the targets point.
	if !strings.Contains(readFile(t, "platform/health/admin.go"), `"/metrics"`) {
		t.Error("platform/health/admin.go no longer serves /metrics on the admin port")
	}
	if !strings.Contains(readFile(t, "gateway/gateway.go"), `"GET /metrics"`) {
		t.Error("gateway/gateway.go no longer serves GET /metrics")
	}
}

// TestPrometheusReadsTheRepoFiles: the container's --config.file and every
// rule file it names come from deploy/prometheus; rule_files are relative, so
// they resolve the same way in the container and for promtool in the repo.
func TestPrometheusReadsTheRepoFiles(t *testing.T) {
	c := loadCompose(t)
	s, ok := c.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	ctrCfg, ok := flag(s.Command, "config.file")
	if !ok {
		t.Fatalf("prometheus: command %q has no --config.file", s.Command)
	}
	if got, ok := inRepo(t, "prometheus", s, ctrCfg); !ok || got != prometheusConfig {
		t.Fatalf("prometheus: --config.file=%s is mounted from %q, want %s", ctrCfg, got, prometheusConfig)
	}
	p := loadPrometheus(t)
	if len(p.RuleFiles) == 0 {
		t.Fatalf("%s: no rule_files", prometheusConfig)
	}
	for _, rf := range p.RuleFiles {
		if path.IsAbs(rf) {
			t.Errorf("%s: rule file %s: make it relative to the config (promtool resolves it in the repo too)", prometheusConfig, rf)
			continue
		}
		ctr := path.Join(path.Dir(ctrCfg), rf)
		repo := path.Join(path.Dir(prometheusConfig), rf)
		got, ok := inRepo(t, "prometheus", s, ctr)
		if !ok || got != repo {
			t.Errorf("prometheus: rule file %s (%s in the container) is mounted from %q, want %s", rf, ctr, got, repo)
		}
		if repo != alertRules {
			t.Errorf("%s: rule file %s; the checks here know %s", prometheusConfig, rf, alertRules)
		}
	}
	if tsdb, _ := flag(s.Command, "storage.tsdb.path"); tsdb == "" || !slices.ContainsFunc(s.Volumes, func(v string) bool {
		src, dst, _ := strings.Cut(v, ":")
		_, named := c.Volumes[src]
		return named && dst == tsdb
	}) {
		t.Errorf("prometheus: --storage.tsdb.path %q is not on a named volume", tsdb)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// requiredAlerts: the conditions deploy/README.md documents; each must have a
// rule on these series.
var requiredAlerts = map[string][]string{
	"PuchiTargetDown":         {"up"},
	"PuchiConsumerLagHigh":    {"puchi_consumer_lag"},
	"PuchiDeadLetters":        {"puchi_dlq_messages_total"},
	"PuchiDeadLettersGrowing": {"puchi_dlq_messages_total"},
	"PuchiOutboxBacklogOld":   {"puchi_outbox_oldest_age_seconds"},
	"PuchiOutboxParked":       {"puchi_outbox_parked"},
	"PuchiRPCErrorRate":       {"grpc_server_handling_seconds_count"},
	"PuchiGateway5xxRate":     {"puchi_gateway_requests_total"},
}

func TestAlertRules(t *testing.T) {
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(readFile(t, alertRules)), &rf); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	series := codeSeries(t)
	seen := map[string]bool{}
	readme := readFile(t, "deploy/README.md")
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if seen[r.Alert] {
				t.Errorf("%s: alert %s twice", alertRules, r.Alert)
			}
			seen[r.Alert] = true
			if r.For == "" {
				t.Errorf("%s: %s has no `for:`", alertRules, r.Alert)
			}
			if sev := r.Labels["severity"]; sev != "critical" && sev != "warning" && sev != "info" {
				t.Errorf("%s: %s: severity %q, want critical, warning or info", alertRules, r.Alert, sev)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: %s has no %s annotation", alertRules, r.Alert, a)
				}
			}
			q := checkQuery(t, alertRules+": "+r.Alert, r.Expr, series)
			for _, m := range requiredAlerts[r.Alert] {
				if !q.metrics[m] {
					t.Errorf("%s: %s does not use %s", alertRules, r.Alert, m)
				}
			}
			if !strings.Contains(readme, r.Alert) {
				t.Errorf("deploy/README.md does not explain %s", r.Alert)
			}
		}
	}
	for a := range requiredAlerts {
		if !seen[a] {
			t.Errorf("%s: no alert %s", alertRules, a)
		}
	}
}

// TestAlertRulesAreUnitTested: alerts_test.yml loads alerts.yml and holds, for
// every alert, a case where it fires and a case where it must not.
func TestAlertRulesAreUnitTested(t *testing.T) {
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(readFile(t, alertRules)), &rf); err != nil {
		t.Fatal(err)
	}
	var ut struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, alertRuleTests)), &ut); err != nil {
		t.Fatalf("%s: %v", alertRuleTests, err)
	}
	if !slices.Contains(ut.RuleFiles, path.Base(alertRules)) {
		t.Errorf("%s: rule_files %v does not load %s", alertRuleTests, ut.RuleFiles, path.Base(alertRules))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range ut.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no case where %s fires", alertRuleTests, r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no case where %s stays quiet", alertRuleTests, r.Alert)
			}
		}
	}
}

// ---- promtool ----------------------------------------------------------------

// promtoolModule is what `make tools` installs (the version is the Makefile's
// PROMTOOL_VERSION).
const promtoolModule = "github.com/prometheus/prometheus/cmd/promtool"

// promtool returns the promtool to run: $PUCHI_PROMTOOL (`make test` sets it),
// else promtool on PATH, else bin/tools/promtool (`make tools`). Without one
// the test fails, naming the install command, except with -short.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PUCHI_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("PUCHI_PROMTOOL=%s: %v (run `make tools`)", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	// Where `make tools` puts it, so that a plain `go test` works afterwards.
	if p := filepath.Join(root(t), "bin", "tools", "promtool"); isExecutable(p) {
		return p
	}
	if testing.Short() {
		t.Skip("promtool not found (PUCHI_PROMTOOL unset, none on PATH or in bin/tools); skipped with -short")
	}
	version := "<PROMTOOL_VERSION of the Makefile>"
	if m := regexp.MustCompile(`(?m)^PROMTOOL_VERSION\s*:?=\s*(\S+)`).FindStringSubmatch(readFile(t, "Makefile")); m != nil {
		version = m[1]
	}
	t.Fatalf("promtool not found: set PUCHI_PROMTOOL or put promtool on PATH. Install it with `make tools`, i.e.\n"+
		"  GOBIN=%s go install %s@%s\nthen: PUCHI_PROMTOOL=%s go test ./internal/deploycheck/",
		filepath.Join(root(t), "bin", "tools"), promtoolModule, version, filepath.Join(root(t), "bin", "tools", "promtool"))
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func runPromtool(t *testing.T, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtool(t *testing.T) {
	bin := promtool(t)
	t.Run("check config", func(t *testing.T) {
		runPromtool(t, bin, "check", "config", prometheusConfig) // also checks its rule_files
	})
	t.Run("check rules", func(t *testing.T) {
		runPromtool(t, bin, "check", "rules", alertRules)
	})
	t.Run("test rules", func(t *testing.T) {
		runPromtool(t, bin, "test", "rules", alertRuleTests)
	})
	// The dashboard's queries parse: each becomes a recording rule of a
	// throw-away rule file (Grafana variables replaced by durations).
	t.Run("dashboard queries", func(t *testing.T) {
		var rf struct {
			Groups []map[string]any `yaml:"groups"`
		}
		var rules []map[string]string
		uids := map[string]string{}
		var ds grafanaDatasources
		if err := yaml.Unmarshal([]byte(readFile(t, grafanaDatasource)), &ds); err != nil {
			t.Fatal(err)
		}
		for _, d := range ds.Datasources {
			uids[d.UID] = d.Type
		}
		vars := regexp.MustCompile(`\$\{?\w+\}?`)
		for i, dq := range dashboardQueries(t, uids) {
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:query_%d", i),
				"expr":   vars.ReplaceAllString(dq.expr, "5m"),
			})
		}
		rf.Groups = []map[string]any{{"name": "dashboard", "rules": rules}}
		b, err := yaml.Marshal(rf)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		runPromtool(t, bin, "check", "rules", f)
	})
}
