package deploycheck

// The series the Go code exposes, and a check that a PromQL expression uses
// only those series and their labels.

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// madeByPrometheus: series in the rules and dashboards that no Go code here
// registers, with where they come from and their labels.
var madeByPrometheus = map[string]struct {
	from   string
	labels []string
}{
	"up": {"Prometheus: one sample per scrape target and scrape, 1 if it answered, 0 if not", nil},
}

// scrapeLabels are added by Prometheus to every scraped series (prometheus.yml
// adds no others; TestPrometheusScrapesEveryPuchiContainer keeps it so).
var scrapeLabels = []string{"job", "instance"}

// codeSeries returns every series name the Go code can expose, with its label
// names: each prometheus.New{Counter,Gauge,Histogram,Summary}[Vec] in a
// non-test file (Namespace/Subsystem/Name literals, ConstLabels, the label
// list), histograms and summaries with their _bucket/_sum/_count series.
func codeSeries(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	add := func(name string, labels ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range slices.Concat(labels, scrapeLabels) {
			out[name][l] = true
		}
	}
	ctor := regexp.MustCompile(`prometheus\.New(Counter|Gauge|Histogram|Summary)(Vec)?\(\s*prometheus\.(?:Counter|Gauge|Histogram|Summary)Opts\{`)
	field := func(block, name string) string {
		m := regexp.MustCompile(`\b` + name + `:\s*"([^"]*)"`).FindStringSubmatch(block)
		if m == nil {
			return ""
		}
		return m[1]
	}
	found := 0
	for _, dir := range []string{"platform", "gateway", "services", "internal", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root(t), dir), func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			src := string(b)
			for _, loc := range ctor.FindAllStringSubmatchIndex(src, -1) {
				kind := src[loc[2]:loc[3]]
				end := closingBrace(src, loc[1]-1)
				if end < 0 {
					t.Errorf("%s: cannot find the end of a %s's options", p, kind)
					continue
				}
				opts := src[loc[1]:end]
				var parts []string
				for _, f := range []string{"Namespace", "Subsystem", "Name"} {
					if v := field(opts, f); v != "" {
						parts = append(parts, v)
					}
				}
				name := strings.Join(parts, "_")
				if field(opts, "Name") == "" {
					t.Errorf("%s: a %s without a literal Name; this check cannot see its series", p, kind)
					continue
				}
				var labels []string
				if i := strings.Index(opts, "ConstLabels:"); i >= 0 {
					if j := strings.Index(opts[i:], "{"); j >= 0 {
						if k := closingBrace(opts, i+j); k > 0 {
							for _, m := range regexp.MustCompile(`"([a-zA-Z_][a-zA-Z0-9_]*)"\s*:`).FindAllStringSubmatch(opts[i+j:k], -1) {
								labels = append(labels, m[1])
							}
						}
					}
				}
				if m := regexp.MustCompile(`^\}\s*,\s*\[\]string\{([^}]*)\}`).FindStringSubmatch(src[end:]); m != nil {
					for _, l := range regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(m[1], -1) {
						labels = append(labels, l[1])
					}
				}
				found++
				switch kind {
				case "Histogram":
					add(name+"_bucket", append(labels, "le")...)
					add(name+"_sum", labels...)
					add(name+"_count", labels...)
				case "Summary":
					add(name, append(labels, "quantile")...)
					add(name+"_sum", labels...)
					add(name+"_count", labels...)
				default:
					add(name, labels...)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if found == 0 {
		t.Fatal("found no prometheus.New* collectors in the Go code")
	}
	for name, m := range madeByPrometheus {
		if _, clash := out[name]; clash {
			t.Errorf("madeByPrometheus lists %q, which the Go code registers too", name)
		}
		if m.from == "" {
			t.Errorf("madeByPrometheus: say where %q comes from", name)
		}
		add(name, m.labels...)
	}
	return out
}

// closingBrace returns the index of the '}' matching the '{' at open, skipping
// string literals; -1 if none.
func closingBrace(src string, open int) int {
	depth := 0
	for i := open; i < len(src); i++ {
		switch src[i] {
		case '"':
			for i++; i < len(src) && src[i] != '"'; i++ {
				if src[i] == '\\' {
					i++
				}
			}
		case '`':
			for i++; i < len(src) && src[i] != '`'; i++ {
			}
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// query is what checkQuery found in a PromQL expression.
type query struct {
	metrics map[string]bool
	labels  map[string]bool // labels its series may carry (union over metrics)
	grouped []string        // labels of by/without/on/ignoring/group_* clauses
}

var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

var promqlGrouping = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlToken: strings, numbers/durations, identifiers, single punctuation.
var promqlToken = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`" + `|[0-9][0-9a-zA-Z.]*|[a-zA-Z_:][a-zA-Z0-9_:]*|!=|=~|!~|[{}()\[\],=]|\S`)

// checkQuery reports series and labels of expr that the code does not expose:
// every metric name must be in series, every matcher and grouping label one
// its series carry. Grafana variables ($__rate_interval, ...) are taken as
// durations.
func checkQuery(t *testing.T, where, expr string, series map[string]map[string]bool) query {
	t.Helper()
	expr = regexp.MustCompile(`\$\{?\w+\}?`).ReplaceAllString(expr, "1m")
	toks := promqlToken.FindAllString(expr, -1)
	q := query{metrics: map[string]bool{}, labels: map[string]bool{}}
	type sel struct {
		metric string
		labels []string
	}
	var sels []sel
	ident := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		next := ""
		if i+1 < len(toks) {
			next = toks[i+1]
		}
		switch {
		case tok == "[":
			for i < len(toks) && toks[i] != "]" {
				i++
			}
		case tok == "{":
			t.Errorf("%s: a selector without a metric name in %q", where, expr)
		case !ident.MatchString(tok):
		case promqlGrouping[tok]:
			if next != "(" {
				continue // group_left without labels
			}
			for i += 2; i < len(toks) && toks[i] != ")"; i++ {
				if toks[i] != "," {
					q.grouped = append(q.grouped, toks[i])
				}
			}
		case next == "(" || next == "by" || next == "without":
			// a function, or an aggregation (its by/without is the next token)
		case promqlKeywords[tok]:
		default:
			s := sel{metric: tok}
			if next == "{" {
				for i += 2; i < len(toks) && toks[i] != "}"; i++ {
					if ident.MatchString(toks[i]) && i+1 < len(toks) && strings.Contains("= != =~ !~", toks[i+1]) {
						s.labels = append(s.labels, toks[i])
					}
				}
			}
			sels = append(sels, s)
		}
	}
	if len(sels) == 0 {
		t.Errorf("%s: no series in %q", where, expr)
	}
	for _, s := range sels {
		q.metrics[s.metric] = true
		known, ok := series[s.metric]
		if !ok {
			t.Errorf("%s: %s is not a series the Go code exposes (nor one Prometheus makes): %q", where, s.metric, expr)
			continue
		}
		maps.Copy(q.labels, known)
		for _, l := range s.labels {
			if !known[l] {
				t.Errorf("%s: %s has no label %q (it has %v)", where, s.metric, l, slices.Sorted(maps.Keys(known)))
			}
		}
	}
	for _, l := range q.grouped {
		if !q.labels[l] {
			t.Errorf("%s: groups by %q, which none of %v carries", where, l, slices.Sorted(maps.Keys(q.metrics)))
		}
	}
	return q
}
