package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/puchi-dev/puchi/bench"
)

// row is one line of the table: a metric of one variant of one case.
type row struct {
	cse, variant, metric string
	s                    bench.Summary
	cpu                  string // CPU seconds (median), client / server side
	rss                  string // peak RSS where relevant
	note                 string
}

// target is one goal of issue 6, reported as a ratio.
type target struct {
	name, got, goal string
	met             bool
	known           bool
}

type report struct {
	o       opts
	rows    []row
	targets []target
	notes   []string
	medians map[string]float64
}

func (r *report) add(cse, variant, metric string, xs []float64, cpu, rss, note string) bench.Summary {
	s := bench.Summarize(xs)
	r.rows = append(r.rows, row{cse, variant, metric, s, cpu, rss, note})
	if r.medians == nil {
		r.medians = map[string]float64{}
	}
	r.medians[cse+"/"+variant+"/"+metric] = s.Median
	return s
}

func (r *report) med(key string) float64 {
	if v, ok := r.medians[key]; ok {
		return v
	}
	return math.NaN()
}

// ratio records "a / b ≥ goal".
func (r *report) ratio(name, a, b string, goal float64) {
	x, y := r.med(a), r.med(b)
	if math.IsNaN(x) || math.IsNaN(y) || y == 0 {
		r.targets = append(r.targets, target{name: name, got: "not measured", goal: fmt.Sprintf("≥ %.2f×", goal)})
		return
	}
	q := x / y
	r.targets = append(r.targets, target{name: name, got: fmt.Sprintf("%.2f×", q), goal: fmt.Sprintf("≥ %.2f×", goal), met: q >= goal, known: true})
}

// limit records "value ≤ goal" (below=true) or "value ≥ goal".
func (r *report) limit(name, key string, goal float64, unit string, below bool) {
	x := r.med(key)
	op := "≥"
	if below {
		op = "≤"
	}
	if math.IsNaN(x) {
		r.targets = append(r.targets, target{name: name, got: "not measured", goal: fmt.Sprintf("%s %s %s", op, bench.Human(goal), unit)})
		return
	}
	met := x >= goal
	if below {
		met = x <= goal
	}
	r.targets = append(r.targets, target{name: name, got: bench.Human(x) + " " + unit, goal: fmt.Sprintf("%s %s %s", op, bench.Human(goal), unit), met: met, known: true})
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) print(w io.Writer, took time.Duration) {
	o := r.o
	fmt.Fprintf(w, "\n## Puchi benchmarks — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Machine: %s. %d runs per case; median (min–max). Took %s.\n\n", machine(), o.runs, took.Round(time.Second))
	fmt.Fprintln(w, "| Case | Variant | Metric | Median (min–max) | CPU s (client / server) | Peak RSS | Notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, x := range r.rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", x.cse, x.variant, x.metric, x.s, dash(x.cpu), dash(x.rss), x.note)
	}
	if len(r.targets) > 0 {
		fmt.Fprintln(w, "\nTargets (issue 6; reported, not asserted):")
		fmt.Fprintln(w)
		for _, t := range r.targets {
			verdict := "not measured"
			if t.known {
				verdict = "MISSED"
				if t.met {
					verdict = "met"
				}
			}
			fmt.Fprintf(w, "- %s: %s (goal %s) — %s\n", t.name, t.got, t.goal, verdict)
		}
	}
	fmt.Fprintln(w, "\nSettings:")
	fmt.Fprintln(w)
	for _, n := range r.notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
	fmt.Fprintf(w, "- command: %s\n", strings.Join(os.Args, " "))
}

func dash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// cpuPair formats client and server CPU seconds.
func cpuPair(client, server []float64) string {
	if len(server) == 0 {
		return fmt.Sprintf("%.2f / –", bench.Median(client))
	}
	return fmt.Sprintf("%.2f / %.2f", bench.Median(client), bench.Median(server))
}

// rssPair formats peak RSS of the client (this process) and the server process.
func rssPair(client, server []float64) string {
	c := fmt.Sprintf("%.0f", bench.Median(client))
	if len(server) == 0 {
		return c + " MB"
	}
	return fmt.Sprintf("%s / %.0f MB", c, bench.Median(server))
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// meter measures one run: wall time, CPU of this process and of a server
// process, and the peak RSS of both (VmHWM, reset at the start).
type meter struct {
	pid           int
	t0            time.Time
	cpu0, srvCPU0 time.Duration
}

func newMeter(pid int) *meter {
	bench.ResetPeak(0)
	if pid > 0 {
		bench.ResetPeak(pid)
	}
	m := &meter{pid: pid, t0: time.Now(), cpu0: bench.SelfCPU()}
	if pid > 0 {
		m.srvCPU0, _ = bench.ProcCPU(pid)
	}
	return m
}

// sample is what a meter read at the end of a run.
type sample struct {
	wall        time.Duration
	cpu, srvCPU float64 // seconds
	hwm, srvHWM float64 // MB
}

func (m *meter) done() sample {
	s := sample{wall: time.Since(m.t0), cpu: (bench.SelfCPU() - m.cpu0).Seconds()}
	if mem, err := bench.ProcMem(0); err == nil {
		s.hwm = float64(mem.HWM) / (1 << 20)
	}
	if m.pid > 0 {
		c, _ := bench.ProcCPU(m.pid)
		s.srvCPU = (c - m.srvCPU0).Seconds()
		if mem, err := bench.ProcMem(m.pid); err == nil {
			s.srvHWM = float64(mem.HWM) / (1 << 20)
		}
	}
	return s
}

// samples collects the per-run samples of one variant.
type samples struct{ cpu, srvCPU, hwm, srvHWM []float64 }

func (ss *samples) add(s sample) {
	ss.cpu = append(ss.cpu, s.cpu)
	ss.srvCPU = append(ss.srvCPU, s.srvCPU)
	ss.hwm = append(ss.hwm, s.hwm)
	ss.srvHWM = append(ss.srvHWM, s.srvHWM)
}

func (ss *samples) cpuStr() string { return cpuPair(ss.cpu, ss.srvCPU) }
func (ss *samples) rssStr() string { return rssPair(ss.hwm, ss.srvHWM) }
