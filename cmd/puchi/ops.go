package main

// The Kafka operator commands: topics, groups, tail, replay, dlq. The work is
// done by internal/ops; this file parses arguments and prints help.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/puchi-dev/puchi/internal/ops"
	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// opsHelp is the help of each operator command (`puchi CMD --help`,
// `puchi help CMD`).
var opsHelp = map[string]string{
	"topics": `Usage:
  puchi topics [list]                       every topic: partitions, retention, messages retained
  puchi topics describe TOPIC               per partition: leader, replicas, low/high watermarks; configs
  puchi topics create NAME [--partitions N] [--retention DUR]
                                            create a topic (defaults: KAFKA_PARTITIONS, KAFKA_RETENTION)
  puchi topics ensure                       create the domain topics that are missing, align retention

Examples:
  puchi topics list
  puchi topics describe lesson-events
  puchi topics create experiments --partitions 6 --retention 7d
  KAFKA_BROKERS=kafka-1:9092 puchi topics ensure
`,
	"groups": `Usage:
  puchi groups [list]                       every consumer group: state, members, total lag
  puchi groups describe GROUP               per topic/partition: committed offset, high watermark, lag;
                                            total lag; members and their assignments

A partition without a committed offset shows '-' and counts every retained record as
lag (Puchi's consumers start at the oldest record).

Examples:
  puchi groups list
  puchi groups describe progress-service-group
`,
	"tail": `Usage:
  puchi tail TOPIC [--from TIME | --from-beginning] [--max N]

Prints the records of TOPIC as JSON lines, each event decoded from protobuf by its
ce_type, and follows new records until Ctrl-C (or N records). Without --from or
--from-beginning it prints only records produced from now on. It joins no consumer
group and commits nothing.

TIME is RFC 3339 (2025-06-01T10:00:00Z), a date (2025-06-01, local midnight) or a
duration back from now (10m, 2h, 3d): the first record at or after it, per partition.

Examples:
  puchi tail lesson-events
  puchi tail progress-events --from 10m
  puchi tail user-events --from-beginning --max 5
  puchi tail progress-service-group.dlq --from-beginning
`,
	"replay": `Usage:
  puchi replay GROUP --to TIME [--topic TOPIC] [--yes]

Moves the committed offsets of consumer group GROUP back (or forward) to the first
record at or after TIME, so that the group's consumers re-read from there when they
start. Every topic the group has committed on is moved, or only --topic. Prints each
partition's offset before and after. Without --yes it is a dry run.

It refuses while the group has members: stop every instance of the service that
consumes with the group first, replay, then start it again. Handlers are idempotent
(inbox by ce_id), so re-read events that were handled before are skipped unless
their effects were removed.

TIME: RFC 3339 (2025-06-01T10:00:00Z), a date (2025-06-01) or a duration back from
now (30m, 2h, 1d).

Examples:
  puchi replay progress-service-group --to 1h                  # dry run
  puchi replay progress-service-group --to 2025-06-01T10:00:00Z --topic lesson-events --yes
`,
	"dlq": `Usage:
  puchi dlq list GROUP [--json]     the dead letters of GROUP (topic GROUP.dlq): original
                                    topic/partition/offset, error, time, event type, replayed?
  puchi dlq replay GROUP [--yes]    re-produce each dead letter not replayed before to its
                                    original topic (original key, value and headers minus
                                    dlq_*); without --yes, a dry run

Replay records its progress as the committed offsets of the consumer group
GROUP.dlq-replayer, so running it twice does not re-drive the same records. A
re-driven event reaches every group that consumes the topic; the others skip it by
its ce_id. Fix the cause first: a record that fails again is dead-lettered again.

Examples:
  puchi dlq list progress-service-group
  puchi dlq list progress-service-group --json | jq .event
  puchi dlq replay progress-service-group          # dry run: what would be re-driven
  puchi dlq replay progress-service-group --yes
`,
}

// isOpsCommand reports whether cmd is an operator command (they print their own
// --help).
func isOpsCommand(cmd string) bool { _, ok := opsHelp[cmd]; return ok }

// printOpsHelp prints the help of an operator command.
func printOpsHelp(w io.Writer, cmd string) {
	fmt.Fprint(w, opsHelp[cmd])
}

// runOps runs the operator command cmd with args.
func runOps(ctx context.Context, cfg *system.Config, cmd string, args []string, stdout io.Writer) error {
	if wantsHelp(args) {
		printOpsHelp(stdout, cmd)
		return nil
	}
	brokers := cfg.Brokers
	if brokers == "" {
		brokers = cfg.BrokerAddr
	}
	kc := cfg.Kafka(brokers)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	usage := func(msg string) error {
		return usageError{msg + "; see 'puchi " + cmd + " --help'"}
	}
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch cmd {
	case "topics":
		return topicsCmd(ctx, kc, sub, args, stdout, usage)
	case "groups":
		return groupsCmd(ctx, kc, sub, args, stdout, usage)
	case "tail":
		return tailCmd(ctx, kc, sub, args, stdout, usage)
	case "replay":
		return replayCmd(ctx, kc, sub, args, stdout, usage)
	case "dlq":
		return dlqCmd(ctx, kc, sub, args, stdout, usage)
	}
	return usage("unknown command " + cmd)
}

func topicsCmd(ctx context.Context, kc kafka.Config, sub string, args []string, w io.Writer, usage func(string) error) error {
	fs := newFlags()
	partitions := fs.Int("partitions", 0, "")
	retention := fs.String("retention", "", "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return usage(err.Error())
	}
	if sub != "create" && (*partitions != 0 || *retention != "") {
		return usage("--partitions and --retention go with 'topics create'")
	}
	wantArgs := map[string]int{"": 0, "list": 0, "ensure": 0, "describe": 1, "create": 1}
	n, ok := wantArgs[sub]
	if !ok {
		return usage(fmt.Sprintf("unknown subcommand %q: topics takes list, describe, create or ensure", sub))
	}
	if len(pos) != n {
		return usage(fmt.Sprintf("'topics %s' takes %d argument(s)", sub, n))
	}
	c, err := ops.Connect(ctx, kc, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "describe":
		d, err := c.DescribeTopic(ctx, pos[0])
		if err != nil {
			return err
		}
		return ops.WriteTopicDetail(w, d)
	case "create":
		var ret time.Duration
		if *retention != "" {
			if ret, err = ops.ParseRetention(*retention); err != nil {
				return usage(err.Error())
			}
		}
		if *partitions < 0 {
			return usage("--partitions must be positive")
		}
		if err := c.CreateTopic(ctx, pos[0], *partitions, ret); err != nil {
			return err
		}
		d, err := c.DescribeTopic(ctx, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "created topic %s on %s\n", pos[0], kc.Brokers)
		return ops.WriteTopicDetail(w, d)
	case "ensure":
		if err := kafka.EnsureTopics(ctx, kc, kafka.Topics...); err != nil {
			return fmt.Errorf("ensure topics on %s: %w", kc.Brokers, err)
		}
		fmt.Fprintf(w, "%d topics ready on %s\n", len(kafka.Topics), kc.Brokers)
	}
	topics, err := c.Topics(ctx)
	if err != nil {
		return err
	}
	return ops.WriteTopics(w, topics)
}

func groupsCmd(ctx context.Context, kc kafka.Config, sub string, args []string, w io.Writer, usage func(string) error) error {
	pos, err := parseFlags(newFlags(), args)
	if err != nil {
		return usage(err.Error())
	}
	switch {
	case (sub == "" || sub == "list") && len(pos) == 0:
	case sub == "describe" && len(pos) == 1:
	case sub == "describe":
		return usage("'groups describe' takes one group")
	default:
		return usage("groups takes 'list' or 'describe GROUP'")
	}
	c, err := ops.Connect(ctx, kc, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	if sub == "describe" {
		d, err := c.DescribeGroup(ctx, pos[0])
		if err != nil {
			return err
		}
		return ops.WriteGroupDetail(w, d)
	}
	groups, err := c.Groups(ctx)
	if err != nil {
		return err
	}
	return ops.WriteGroups(w, groups)
}

func tailCmd(ctx context.Context, kc kafka.Config, topic string, args []string, w io.Writer, usage func(string) error) error {
	fs := newFlags()
	from := fs.String("from", "", "")
	fromBeginning := fs.Bool("from-beginning", false, "")
	max := fs.Int("max", 0, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return usage(err.Error())
	}
	if topic == "" || len(pos) > 0 {
		return usage("tail takes one topic: puchi tail TOPIC [--from TIME | --from-beginning] [--max N]")
	}
	opt := ops.TailOptions{Brokers: kc.Brokers, Topic: topic, FromBeginning: *fromBeginning, Max: *max}
	if *from != "" {
		if *fromBeginning {
			return usage("--from and --from-beginning exclude each other")
		}
		if opt.From, err = ops.ParseTime(*from, time.Now()); err != nil {
			return usage(err.Error())
		}
	}
	if *max < 0 {
		return usage("--max must be positive")
	}
	return ops.Tail(ctx, opt, w)
}

func replayCmd(ctx context.Context, kc kafka.Config, group string, args []string, w io.Writer, usage func(string) error) error {
	fs := newFlags()
	to := fs.String("to", "", "")
	topic := fs.String("topic", "", "")
	yes := fs.Bool("yes", false, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return usage(err.Error())
	}
	if group == "" || len(pos) > 0 {
		return usage("replay takes one group: puchi replay GROUP --to TIME [--topic TOPIC] [--yes]")
	}
	if *to == "" {
		return usage("replay needs --to TIME")
	}
	t, err := ops.ParseTime(*to, time.Now())
	if err != nil {
		return usage(err.Error())
	}
	c, err := ops.Connect(ctx, kc, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	opt := ops.ReplayOptions{Group: group, To: t, Topic: *topic, Apply: *yes}
	moves, err := c.Replay(ctx, opt)
	if moves != nil {
		if werr := ops.WriteReplay(w, opt, moves); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func dlqCmd(ctx context.Context, kc kafka.Config, sub string, args []string, w io.Writer, usage func(string) error) error {
	fs := newFlags()
	asJSON := fs.Bool("json", false, "")
	yes := fs.Bool("yes", false, "")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return usage(err.Error())
	}
	switch {
	case (sub == "list" || sub == "replay") && len(pos) == 1:
	case sub == "list" || sub == "replay":
		return usage(fmt.Sprintf("'dlq %s' takes one consumer group", sub))
	default:
		return usage("dlq takes 'list GROUP' or 'replay GROUP'")
	}
	if sub == "list" && *yes || sub == "replay" && *asJSON {
		return usage("--json goes with 'dlq list', --yes with 'dlq replay'")
	}
	group := pos[0]
	c, err := ops.Connect(ctx, kc, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	if sub == "list" {
		recs, err := c.DLQ(ctx, group)
		if err != nil {
			return err
		}
		return ops.WriteDLQ(w, group, recs, *asJSON)
	}
	res, err := c.ReplayDLQ(ctx, group, *yes)
	if res != nil {
		if werr := ops.WriteDLQReplay(w, group, res); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func newFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("puchi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses args with flags and positional arguments in any order
// ("topics create NAME --partitions 3" as well as "--partitions 3 NAME") and
// returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			return nil, fmt.Errorf("unknown flag %s", a)
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 >= len(args) {
			return nil, fmt.Errorf("flag %s needs a value", a)
		}
		i++
		flags = append(flags, args[i])
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errors.New("unknown flag")
		}
		return nil, err
	}
	return pos, nil
}
