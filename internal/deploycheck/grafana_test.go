package deploycheck

// Grafana: provisioning, data sources and the dashboard (deploy/grafana).

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name      string `yaml:"name"`
		UID       string `yaml:"uid"`
		Type      string `yaml:"type"`
		URL       string `yaml:"url"`
		IsDefault bool   `yaml:"isDefault"`
	} `yaml:"datasources"`
}

// requiredPanels: the dashboard shows each of these series.
var requiredPanels = []string{
	"grpc_server_handling_seconds_count",  // RPC rate
	"grpc_server_handling_seconds_bucket", // RPC latency
	"puchi_gateway_requests_total",        // requests by status class
	"puchi_gateway_request_seconds_bucket",
	"puchi_consumer_lag", // per group and partition
	"puchi_consumer_handler_seconds_bucket",
	"puchi_dlq_messages_total",
	"puchi_outbox_backlog",
	"puchi_outbox_oldest_age_seconds",
	"puchi_outbox_parked",
}

// requiredBreakdowns: some panel shows these series grouped by these labels.
var requiredBreakdowns = map[string][]string{
	"puchi_gateway_requests_total":       {"code_class"},         // requests by status class
	"puchi_consumer_lag":                 {"group", "partition"}, // lag per group and partition
	"grpc_server_handling_seconds_count": {"service"},            // RPC rate per service
}

// dashboardQuery is one Prometheus query of a dashboard panel.
type dashboardQuery struct {
	where, expr, legend string
}

// dashboardQueries reads every dashboard file and returns its queries, after
// checking that each data source it names is provisioned with that type.
func dashboardQueries(t *testing.T, uids map[string]string) []dashboardQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root(t), grafanaDashboards, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s (%v)", grafanaDashboards, err)
	}
	var out []dashboardQuery
	dashUIDs := map[string]string{}
	for _, f := range files {
		rel, _ := filepath.Rel(root(t), f)
		var d map[string]any
		if err := json.Unmarshal([]byte(readFile(t, rel)), &d); err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		uid, _ := d["uid"].(string)
		if uid == "" {
			t.Errorf("%s: no uid (links and the home dashboard need a stable one)", rel)
		} else if prev, dup := dashUIDs[uid]; dup {
			t.Errorf("%s: uid %q also used by %s", rel, uid, prev)
		}
		dashUIDs[uid] = rel
		// dsType is the data source type in force (a target inherits its panel's).
		var walk func(v any, where, dsType string)
		walk = func(v any, where, dsType string) {
			switch v := v.(type) {
			case map[string]any:
				if title, ok := v["title"].(string); ok && v["type"] != nil {
					where = fmt.Sprintf("panel %q", title)
				}
				if ds, ok := v["datasource"]; ok {
					switch ds := ds.(type) {
					case map[string]any:
						u, _ := ds["uid"].(string)
						typ, _ := ds["type"].(string)
						dsType = typ
						if want, ok := uids[u]; !ok {
							t.Errorf("%s %s: data source uid %q is not provisioned (%s has %v)", rel, where, u, grafanaDatasource, slices.Sorted(maps.Keys(uids)))
						} else if typ != want {
							t.Errorf("%s %s: data source %q has type %q, provisioned as %q", rel, where, u, typ, want)
						}
					default:
						t.Errorf("%s %s: datasource %v: refer to data sources as {\"type\", \"uid\"}", rel, where, ds)
					}
				}
				if expr, ok := v["expr"].(string); ok && dsType == "prometheus" {
					legend, _ := v["legendFormat"].(string)
					out = append(out, dashboardQuery{where: rel + " " + where, expr: expr, legend: legend})
				}
				for _, k := range slices.Sorted(maps.Keys(v)) {
					walk(v[k], where, dsType)
				}
			case []any:
				for _, e := range v {
					walk(e, where, dsType)
				}
			}
		}
		walk(d, "", "")
	}
	return out
}

func TestGrafanaProvisioning(t *testing.T) {
	c := loadCompose(t)
	g, ok := c.Services["grafana"]
	if !ok {
		t.Fatal("no grafana service")
	}

	// Provisioning and dashboards come from the repo.
	if got, ok := inRepo(t, "grafana", g, "/etc/grafana/provisioning/datasources/"+path.Base(grafanaDatasource)); !ok || got != grafanaDatasource {
		t.Errorf("grafana: /etc/grafana/provisioning is not mounted from deploy/grafana/provisioning (got %q)", got)
	}
	var prov struct {
		Providers []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, grafanaProviders)), &prov); err != nil {
		t.Fatalf("%s: %v", grafanaProviders, err)
	}
	if len(prov.Providers) == 0 {
		t.Fatalf("%s: no providers", grafanaProviders)
	}
	for _, p := range prov.Providers {
		if got, ok := inRepo(t, "grafana", g, p.Options.Path); p.Type != "file" || !ok || got != grafanaDashboards {
			t.Errorf("%s: provider %s reads %s (type %s), which is mounted from %q, want %s", grafanaProviders, p.Name, p.Options.Path, p.Type, got, grafanaDashboards)
		}
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" {
		if got, ok := inRepo(t, "grafana", g, home); !ok || !strings.HasPrefix(got, grafanaDashboards+"/") {
			t.Errorf("grafana: home dashboard %s is not one of %s", home, grafanaDashboards)
		}
	}
	if g.Environment["GF_AUTH_ANONYMOUS_ENABLED"] == "true" && g.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] != "Viewer" {
		t.Errorf("grafana: anonymous users get role %q; Viewer is enough", g.Environment["GF_AUTH_ANONYMOUS_ORG_ROLE"])
	}

	// Data sources: Prometheus and Jaeger, at compose names and their ports.
	var ds grafanaDatasources
	if err := yaml.Unmarshal([]byte(readFile(t, grafanaDatasource)), &ds); err != nil {
		t.Fatalf("%s: %v", grafanaDatasource, err)
	}
	wantURL := map[string]string{"prometheus": "http://prometheus:9090", "jaeger": "http://jaeger:16686"}
	uids := map[string]string{}
	for _, d := range ds.Datasources {
		if d.UID == "" {
			t.Errorf("%s: %s has no uid (dashboards refer to it by uid)", grafanaDatasource, d.Name)
		}
		uids[d.UID] = d.Type
		if want, ok := wantURL[d.Type]; ok {
			if d.URL != want {
				t.Errorf("%s: %s url %q, want %q", grafanaDatasource, d.Name, d.URL, want)
			}
			delete(wantURL, d.Type)
		}
		if u, err := url.Parse(d.URL); err != nil || c.Services[u.Hostname()].Image == "" {
			t.Errorf("%s: %s url %q does not name a compose service", grafanaDatasource, d.Name, d.URL)
		}
	}
	for typ := range wantURL {
		t.Errorf("%s: no %s data source", grafanaDatasource, typ)
	}
	if pub := published(t, "prometheus", c.Services["prometheus"]); pub[9090] != 9090 {
		t.Error("prometheus: 9090:9090 not published")
	}
	if pub := published(t, "jaeger", c.Services["jaeger"]); pub[16686] != 16686 {
		t.Error("jaeger: 16686:16686 not published")
	}

	// Every query is on real series and labels; the required panels are there.
	series := codeSeries(t)
	used := map[string]bool{}
	brokenDown := map[string]bool{}
	for _, dq := range dashboardQueries(t, uids) {
		q := checkQuery(t, dq.where, dq.expr, series)
		maps.Copy(used, q.metrics)
		for m, by := range requiredBreakdowns {
			if q.metrics[m] && !slices.ContainsFunc(by, func(l string) bool { return !slices.Contains(q.grouped, l) }) {
				brokenDown[m] = true
			}
		}
		for _, m := range regexp.MustCompile(`\{\{\s*\.?(\w+)\s*\}\}`).FindAllStringSubmatch(dq.legend, -1) {
			if !q.labels[m[1]] && !slices.Contains(q.grouped, m[1]) {
				t.Errorf("%s: legend %q uses %s, which %q does not carry", dq.where, dq.legend, m[1], dq.expr)
			}
		}
	}
	for _, m := range requiredPanels {
		if !used[m] {
			t.Errorf("%s: no panel shows %s", grafanaDashboards, m)
		}
	}
	for m, by := range requiredBreakdowns {
		if !brokenDown[m] {
			t.Errorf("%s: no panel shows %s by %v", grafanaDashboards, m, by)
		}
	}
}
