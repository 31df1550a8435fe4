// Command puchi is the one binary of Puchi: `puchi run` starts everything in one
// process (embedded Kafka + SQLite), `puchi serve <svc...>` runs chosen services
// (what a container runs), `puchi gateway` the REST edge, `puchi broker` only the
// embedded broker, `puchi topics` provisions or lists topics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	_ "time/tzdata" // IANA zones for timezone validation on machines without zoneinfo

	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/broker"
	"github.com/puchi-dev/puchi/platform/config"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/services/content"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "puchi:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stdout)
		return nil
	}
	cmd, rest := args[0], args[1:]
	if cmd == "help" && len(rest) == 1 && isOpsCommand(rest[0]) {
		printOpsHelp(stdout, rest[0])
		return nil
	}
	if (wantsHelp(rest) && !isOpsCommand(cmd)) || cmd == "help" || cmd == "-h" || cmd == "--help" {
		printHelp(stdout)
		return nil
	}
	cfg := &system.Config{}
	if err := config.Load(cfg, os.LookupEnv); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	ctx := context.Background()
	switch cmd {
	case "run":
		if rest, err := intFlag(rest, "replicas", &cfg.Replicas); err != nil || len(rest) > 0 {
			return usageError{"run takes only --replicas N (configure it with environment variables, see 'puchi help')"}
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		return serve(ctx, cfg, system.Options{Embedded: cfg.Brokers == "", Services: system.ServiceNames(cfg), Gateway: true, BindHost: "127.0.0.1"}, stdout)
	case "serve":
		rest, err := intFlag(rest, "instance", &cfg.Instance)
		if err != nil {
			return usageError{err.Error()}
		}
		if len(rest) == 0 {
			return usageError{"serve needs service names; have: " + strings.Join(system.ServiceNames(cfg), ", ")}
		}
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("configuration:\n%w", err)
		}
		return serve(ctx, cfg, system.Options{Services: rest}, stdout)
	case "gateway":
		return serve(ctx, cfg, system.Options{Gateway: true}, stdout)
	case "broker":
		return runBroker(ctx, cfg, stdout)
	case "topics", "groups", "tail", "replay", "dlq":
		return runOps(ctx, cfg, cmd, rest, stdout)
	case "content":
		return contentCmd(ctx, cfg, rest, stdout)
	case "analytics":
		return analyticsCmd(ctx, cfg, rest, stdout)
	case "version":
		fmt.Fprintln(stdout, "puchi", version)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q; see 'puchi help'", cmd)}
}

var version = "dev"

// intFlag removes "--name N" or "--name=N" from args and stores N in dst.
func intFlag(args []string, name string, dst *int) ([]string, error) {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		v, ok := "", false
		switch {
		case a == "--"+name || a == "-"+name:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("--%s needs a number", name)
			}
			v, ok = args[i+1], true
			i++
		case strings.HasPrefix(a, "--"+name+"="):
			v, ok = strings.TrimPrefix(a, "--"+name+"="), true
		}
		if !ok {
			out = append(out, a)
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--%s: %q is not a positive number", name, v)
		}
		*dst = n
	}
	return out, nil
}

func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

func serve(ctx context.Context, cfg *system.Config, opt system.Options, stdout io.Writer) error {
	start := time.Now()
	sys, err := system.Build(ctx, cfg, opt)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "puchi is up in %s (data: %s, database: %s)\n", time.Since(start).Round(time.Millisecond), cfg.DataDir, databaseKind(cfg))
	for _, l := range sys.Listening() {
		fmt.Fprintln(stdout, "  "+l)
	}
	fmt.Fprintln(stdout, "Ctrl-C stops it cleanly.")
	return sys.Run(ctx)
}

func databaseKind(cfg *system.Config) string {
	if cfg.DatabaseURL != "" {
		return "PostgreSQL"
	}
	return "SQLite"
}

func runBroker(ctx context.Context, cfg *system.Config, stdout io.Writer) error {
	log := system.NewLogger(cfg, os.Stderr)
	bc, err := cfg.EmbeddedBroker()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	b, err := broker.Start(bc, log)
	if err != nil {
		return fmt.Errorf("embedded broker on %s (PUCHI_BROKER_ADDR): %w", cfg.BrokerAddr, err)
	}
	defer b.Close()
	kc := cfg.Kafka(b.Addrs())
	if err := kafka.EnsureTopics(ctx, kc, kafka.Topics...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "embedded Kafka broker on %s (data: %s/kafka); %d topics ready. Ctrl-C stops it.\n", b.Addrs(), cfg.DataDir, len(kafka.Topics))
	sctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-sctx.Done()
	return nil
}

// contentCmd validates or imports a course file (YAML or JSON, the format of
// services/content) through the lesson and quiz services' RPCs.
func contentCmd(ctx context.Context, cfg *system.Config, args []string, stdout io.Writer) error {
	if len(args) != 2 || (args[0] != "import" && args[0] != "validate") {
		return usageError{"usage: puchi content import|validate FILE"}
	}
	data, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	b, err := content.Parse(data)
	if err != nil {
		return fmt.Errorf("%s:\n%w", args[1], err)
	}
	n := b.Counts()
	fmt.Fprintf(stdout, "%s: %d units, %d lessons, %d words, %d exercises, %d quizzes\n", args[1], n.Units, n.Lessons, n.Words, n.Exercises, n.Quizzes)
	if args[0] == "validate" {
		return nil
	}
	issuer, err := adminIssuer(cfg)
	if err != nil {
		return err
	}
	lc, err := dialService(cfg, "lesson", time.Minute)
	if err != nil {
		return err
	}
	defer lc.Close()
	qc, err := dialService(cfg, "quiz", time.Minute)
	if err != nil {
		return err
	}
	defer qc.Close()
	sum, err := system.ImportContent(ctx, issuer, lc.ClientConn, qc.ClientConn, b)
	if err != nil {
		return fmt.Errorf("import (are the lesson and quiz services running? 'make run'): %w", err)
	}
	verb := "updated"
	if sum.Created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "course %s %s: %d units, %d lessons, %d quizzes\n", sum.CourseID, verb, sum.Units, sum.Lessons, sum.Quizzes)
	return nil
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `puchi — the Puchi language-learning backend

Usage:
  puchi run [--replicas N]  everything in one process: embedded Kafka (unless KAFKA_BROKERS
                            is set), SQLite under PUCHI_DATA_DIR (unless PUCHI_DATABASE_URL),
                            every service and the REST gateway on :8000
  puchi serve [--instance N] SERVICE...
                            run the named services against KAFKA_BROKERS (instance N
                            listens on the default ports + 100*(N-1))
  puchi gateway             run the REST gateway against running services
  puchi broker              run only the embedded Kafka broker (PUCHI_BROKER_ADDR)
  puchi topics list|describe TOPIC|create NAME|ensure
                            topics: partitions, retention, messages; watermarks, configs
  puchi groups list|describe GROUP
                            consumer groups: state, members; per-partition committed offset and lag
  puchi content validate|import FILE
                            check a course file (YAML/JSON), or load it through the running
                            lesson and quiz services (re-importing updates in place)
  puchi tail TOPIC [--from TIME | --from-beginning] [--max N]
                            print a topic's events as JSON lines, decoded by their ce_type
  puchi replay GROUP --to TIME [--topic T] [--yes]
                            move an idle group's offsets back to TIME (dry run without --yes)
  puchi dlq list|replay GROUP [--yes]
                            show a group's dead letters; re-drive them to their topics once
  puchi analytics rebuild [--since TIME]
                            rebuild the analytics projections from the Kafka log; prints progress
  puchi version             print the version
  puchi help                this text

Services: user (gRPC :50051, admin :8001), lesson (:50052, :8002), progress (:50053,
:8003), quiz (:50056, :8007), vocabulary (:50057, :8006). 'run' binds service ports to 127.0.0.1
(only the gateway listens on every interface); 'serve' binds them to all interfaces.
Per service: PUCHI_<SVC>_GRPC_ADDR and PUCHI_<SVC>_ADMIN_ADDR (listen), PUCHI_<SVC>_ADDR
(where the gateway dials it; default 127.0.0.1:<port>).

Environment:
`)
	fmt.Fprint(w, config.Usage(&system.Config{}))
}
