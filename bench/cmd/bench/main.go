// Command bench is Puchi's benchmark suite (`make bench`, issue 6). It starts the
// embedded Kafka broker in a process of its own (this binary re-executed with the
// "broker" subcommand), runs every case at least -runs times and prints one
// markdown table of medians with min–max, CPU seconds and peak RSS, followed by the
// targets as ratios and the exact settings. Targets are reported, never asserted.
//
//	bench [-quick] [-runs 5] [-puchi bin/puchi] [-only publish,consume,...]
//	bench -only outbox-latency -lat-rates 1000 -lat-breakdown -runs 3   (case 3c alone)
//	bench broker -addr 127.0.0.1:0 -data DIR   (internal: the broker process)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// opts are the command-line settings; every size is printed with the table.
type opts struct {
	quick      bool
	runs       int
	puchi      string
	only       map[string]bool
	pgURL      string
	pubEvents  int
	pubWorkers int
	pubBatch   int
	wmWorkers  int
	conEvents  int
	wmEvents   int
	inboxEvts  int
	inboxPG    int
	outboxEvts int
	latSeconds float64
	loadSecs   float64
	learners   int
	lessons    int
	retained   int
	cpuProfile string
	// latRates are the offered rates of the open-loop latency case (events/s).
	latRates []float64
	// latBreakdown adds the per-segment rows of the latency case to the table.
	latBreakdown bool
	// relayLinger, when set, is the linger of the outbox relay's producer in case 3
	// (kafka.Config.Linger: negative disables lingering); nil keeps the default.
	relayLinger *time.Duration
	// linger is kafka.Config.Linger of the whole suite (0: the default).
	linger time.Duration
	// conVariants, when not empty, limits case 2 to these variants: noop, raw,
	// watermill, inbox.
	conVariants map[string]bool
	// pubVariants, when not empty, limits case 1 to these variants: platform,
	// raw, watermill.
	pubVariants map[string]bool
	// conMetrics gives the platform consumers of case 2 a Prometheus registry, as
	// `puchi run` does (the table's rows run without one).
	conMetrics bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "broker" {
		if err := runBroker(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench broker:", err)
			os.Exit(1)
		}
		return
	}
	var o opts
	var only string
	flag.BoolVar(&o.quick, "quick", false, "small sizes and 2 runs, for development")
	flag.IntVar(&o.runs, "runs", 5, "runs per case (medians over these)")
	flag.StringVar(&o.puchi, "puchi", "bin/puchi", "the puchi binary for the gateway, learning and footprint cases")
	flag.StringVar(&only, "only", "", "comma-separated cases to run: publish,consume,outbox,gateway,learning,footprint (default all); outbox-latency runs only the open-loop latency part of outbox")
	flag.StringVar(&o.pgURL, "postgres", "", "PostgreSQL URL for the inbox/outbox cases (default $PUCHI_BENCH_POSTGRES_URL, $PUCHI_TEST_POSTGRES_URL, else a local server if one answers)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	pubWorkers := flag.Int("pub-workers", 4, "goroutines calling Producer.Publish in the publish case")
	pubBatch := flag.Int("pub-batch", 2000, "messages per Producer.Publish call in the publish case")
	latRates := flag.String("lat-rates", "1000,5000", "comma-separated offered rates (events/s) of the outbox latency case")
	latSeconds := flag.Float64("lat-seconds", 0, "seconds per outbox latency run (default 3, -quick 1)")
	flag.BoolVar(&o.latBreakdown, "lat-breakdown", false, "add the outbox latency breakdown rows (wait / produce / deliver, relay rounds) to the table; they are always logged")
	linger := flag.Duration("linger", 0, "linger of every producer of the suite (kafka.Config.Linger; default kafka.DefaultLinger; negative disables lingering)")
	pubVariants := flag.String("publish-variants", "", "comma-separated variants of the publish case: platform,raw,watermill (default all)")
	conVariants := flag.String("consume-variants", "", "comma-separated variants of the consume case: noop,raw,watermill,inbox (default all)")
	flag.BoolVar(&o.conMetrics, "consume-metrics", false, "give the platform consumers of the consume case a Prometheus registry (puchi_consumer_* series), as puchi run does")
	relayLinger := flag.Duration("relay-linger", -2, "linger of the outbox relay's producer in the outbox cases, e.g. 1ms; 0 disables lingering (default: the platform default, kafka.DefaultLinger)")
	flag.Parse()
	if *relayLinger != -2 {
		l := *relayLinger
		if l == 0 {
			l = -1 // kafka.Config: negative disables lingering, zero means the default
		}
		o.relayLinger = &l
	}
	for x := range strings.SplitSeq(*latRates, ",") {
		var f float64
		if _, err := fmt.Sscanf(strings.TrimSpace(x), "%g", &f); err != nil || f <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -lat-rates: %q is not a positive rate\n", x)
			os.Exit(2)
		}
		o.latRates = append(o.latRates, f)
	}
	o.linger = *linger
	o.pubVariants = map[string]bool{}
	for v := range strings.SplitSeq(*pubVariants, ",") {
		switch v = strings.TrimSpace(v); v {
		case "":
		case "platform", "raw", "watermill":
			o.pubVariants[v] = true
		default:
			fmt.Fprintf(os.Stderr, "bench: -publish-variants: unknown variant %q (platform, raw, watermill)\n", v)
			os.Exit(2)
		}
	}
	o.conVariants = map[string]bool{}
	for v := range strings.SplitSeq(*conVariants, ",") {
		switch v = strings.TrimSpace(v); v {
		case "":
		case "noop", "raw", "watermill", "inbox":
			o.conVariants[v] = true
		default:
			fmt.Fprintf(os.Stderr, "bench: -consume-variants: unknown variant %q (noop, raw, watermill, inbox)\n", v)
			os.Exit(2)
		}
	}
	o.only = map[string]bool{}
	for c := range strings.SplitSeq(only, ",") {
		if c = strings.TrimSpace(c); c != "" {
			o.only[c] = true
		}
	}
	o.pubEvents, o.pubWorkers, o.pubBatch, o.wmWorkers = 1_000_000, *pubWorkers, *pubBatch, 512
	o.conEvents, o.wmEvents, o.inboxEvts, o.inboxPG, o.outboxEvts = 1_000_000, 200_000, 5000, 1500, 5000
	o.latSeconds, o.loadSecs, o.learners, o.lessons, o.retained = 3, 5, 50, 3, 1_000_000
	if o.quick {
		if !isSet("runs") {
			o.runs = 2
		}
		o.pubEvents, o.conEvents, o.wmEvents, o.inboxEvts, o.inboxPG, o.outboxEvts = 50_000, 50_000, 20_000, 1000, 300, 2000
		o.latSeconds, o.loadSecs, o.learners, o.lessons, o.retained = 1, 1, 10, 1, 50_000
	}
	if *latSeconds > 0 {
		o.latSeconds = *latSeconds
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func (o opts) want(c string) bool { return len(o.only) == 0 || o.only[c] }

// logf reports progress on stderr; the table goes to stdout.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// startLoad is the 1-minute load average when the run began: other work on the
// machine skews every number, so the table states it.
var startLoad string

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func run(o opts) error {
	startLoad = loadAvg()
	start := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		stopProf, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProf()
	}
	tmp, err := os.MkdirTemp("", "puchi-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	r := &report{o: o}
	needBroker := o.want("publish") || o.want("consume") || o.want("outbox") || o.only["outbox-latency"]
	if needBroker {
		br, err := startBrokerProcess(tmp + "/kafka")
		if err != nil {
			return err
		}
		defer br.stop()
		logf("broker process %d on %s", br.pid, br.addr)
		env := &kenv{o: o, br: br, cfg: kafka.Config{Brokers: br.addr, ClientID: "bench", Linger: o.linger}.WithDefaults(), tmp: tmp}
		if o.want("publish") {
			if err := env.publishCases(ctx, r); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
		if o.want("consume") {
			if err := env.consumeCases(ctx, r); err != nil {
				return fmt.Errorf("consume: %w", err)
			}
		}
		if o.want("outbox") || o.only["outbox-latency"] {
			if err := env.outboxCases(ctx, r, !o.want("outbox")); err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
		}
	}
	if o.want("gateway") || o.want("learning") || o.want("footprint") {
		if err := meshCases(ctx, o, tmp, r); err != nil {
			return fmt.Errorf("mesh: %w", err)
		}
	}
	r.print(os.Stdout, time.Since(start))
	return nil
}

// brokerProc is the embedded broker running in a child process.
type brokerProc struct {
	cmd   *exec.Cmd
	pid   int
	addr  string
	stdin io.WriteCloser
}

// startBrokerProcess re-executes this binary as "bench broker" with its own data
// directory (kfake's DataDir mode, as `puchi run` uses) on a free port.
func startBrokerProcess(dataDir string) (*brokerProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "broker", "-addr", "127.0.0.1:0", "-data", dataDir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("broker process: %w", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ADDR ")
	if !ok {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("broker process said %q", line)
	}
	return &brokerProc{cmd: cmd, pid: cmd.Process.Pid, addr: addr, stdin: stdin}, nil
}

func (b *brokerProc) stop() {
	_ = b.stdin.Close() // the broker exits on EOF
	done := make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = b.cmd.Process.Kill()
	}
}

// runBroker is the "broker" subcommand: start the embedded broker, print its
// address, serve until stdin closes or a signal arrives.
func runBroker(args []string) error {
	fs := flag.NewFlagSet("broker", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	data := fs.String("data", "", "data directory (empty: memory)")
	_ = fs.Parse(args)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := broker.Start(broker.Config{Addr: *addr, DataDir: *data}, log)
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Printf("ADDR %s\n", b.Addrs())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); stop() }()
	<-ctx.Done()
	return nil
}

// machine describes where the run happened.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	_, lib := ck.LibraryVersion()
	return fmt.Sprintf("%d CPUs (%s), %s, %s %s/%s, librdkafka %s; load average at start %s, at end %s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH, lib, startLoad, loadAvg())
}
