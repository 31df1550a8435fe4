package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/kafka"
)

// TopicSummary is one line of `puchi topics list`.
type TopicSummary struct {
	Name       string
	Missing    bool // a domain topic that does not exist on the broker
	Partitions int
	Retention  time.Duration // -1ms: unlimited; 0: unknown
	Messages   int64         // records retained: the sum of high - low watermarks
}

// Topics returns every topic on the broker (internal "__" topics left out) and
// every domain topic of [kafka.Topics], the missing ones marked, sorted by name.
func (c *Client) Topics(ctx context.Context) ([]TopicSummary, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	parts, err := c.partitions(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	var tps []TP
	for name, ids := range parts {
		names = append(names, name)
		for _, id := range ids {
			tps = append(tps, TP{name, id})
		}
	}
	wm, err := c.watermarks(ctx, tps)
	if err != nil {
		return nil, err
	}
	cfgs, err := c.topicConfigs(ctx, names)
	if err != nil {
		return nil, err
	}
	var out []TopicSummary
	for name, ids := range parts {
		s := TopicSummary{Name: name, Partitions: len(ids)}
		for _, id := range ids {
			w := wm[TP{name, id}]
			s.Messages += w.High - w.Low
		}
		if e, ok := cfgs[name]["retention.ms"]; ok {
			if ms, err := strconv.ParseInt(e.Value, 10, 64); err == nil {
				s.Retention = time.Duration(ms) * time.Millisecond
			}
		}
		out = append(out, s)
	}
	for _, t := range kafka.Topics {
		if _, ok := parts[t]; !ok {
			out = append(out, TopicSummary{Name: t, Missing: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteTopics prints topics as a table.
func WriteTopics(w io.Writer, topics []TopicSummary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRETENTION\tMESSAGES")
	for _, t := range topics {
		if t.Missing {
			fmt.Fprintf(tw, "%s\tmissing\t-\t-\t('puchi topics ensure' creates it)\n", t.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", t.Name, t.Partitions, formatDuration(t.Retention), t.Messages)
	}
	return tw.Flush()
}

// topicConfigs returns the full configuration of each topic.
func (c *Client) topicConfigs(ctx context.Context, names []string) (map[string]map[string]ck.ConfigEntryResult, error) {
	out := map[string]map[string]ck.ConfigEntryResult{}
	if len(names) == 0 {
		return out, nil
	}
	rs := make([]ck.ConfigResource, len(names))
	for i, n := range names {
		rs[i] = ck.ConfigResource{Type: ck.ResourceTopic, Name: n}
	}
	res, err := c.admin.DescribeConfigs(ctx, rs, ck.SetAdminRequestTimeout(left(ctx)))
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	var errs []error
	for _, r := range res {
		if r.Error.Code() != ck.ErrNoError {
			errs = append(errs, fmt.Errorf("config of topic %s: %w", r.Name, r.Error))
			continue
		}
		out[r.Name] = r.Config
	}
	return out, errors.Join(errs...)
}

// PartitionInfo is one partition in [TopicDetail].
type PartitionInfo struct {
	ID       int32
	Leader   int32
	Replicas []int32
	ISR      []int32
	Low      int64
	High     int64
}

// ConfigEntry is one topic configuration value.
type ConfigEntry struct {
	Name, Value string
	Default     bool // the broker default, not set on the topic
}

// TopicDetail is what `puchi topics describe` shows.
type TopicDetail struct {
	Name       string
	Partitions []PartitionInfo
	Configs    []ConfigEntry // sorted by name
}

// ErrTopicNotFound is returned (wrapped) for a topic that does not exist.
var ErrTopicNotFound = errors.New("topic not found")

// DescribeTopic returns the partitions (leader, replicas, watermarks) and the
// configuration of topic.
func (c *Client) DescribeTopic(ctx context.Context, topic string) (*TopicDetail, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	md, err := c.admin.GetMetadata(&topic, false, int(left(ctx).Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() == ck.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
		return nil, fmt.Errorf("%w: %q on %s ('puchi topics list' shows the topics)", ErrTopicNotFound, topic, c.cfg.Brokers)
	}
	d := &TopicDetail{Name: topic}
	var tps []TP
	for _, p := range tm.Partitions {
		tps = append(tps, TP{topic, p.ID})
		d.Partitions = append(d.Partitions, PartitionInfo{ID: p.ID, Leader: p.Leader, Replicas: p.Replicas, ISR: p.Isrs})
	}
	slices.SortFunc(d.Partitions, func(a, b PartitionInfo) int { return int(a.ID - b.ID) })
	wm, err := c.watermarks(ctx, tps)
	if err != nil {
		return nil, err
	}
	for i := range d.Partitions {
		w := wm[TP{topic, d.Partitions[i].ID}]
		d.Partitions[i].Low, d.Partitions[i].High = w.Low, w.High
	}
	cfgs, err := c.topicConfigs(ctx, []string{topic})
	if err != nil {
		return nil, err
	}
	for name, e := range cfgs[topic] {
		d.Configs = append(d.Configs, ConfigEntry{Name: name, Value: e.Value, Default: e.Source != ck.ConfigSourceDynamicTopic})
	}
	sort.Slice(d.Configs, func(i, j int) bool { return d.Configs[i].Name < d.Configs[j].Name })
	return d, nil
}

// WriteTopicDetail prints d: a partition table, then the configuration (values
// set on the topic first, broker defaults after).
func WriteTopicDetail(w io.Writer, d *TopicDetail) error {
	var total int64
	for _, p := range d.Partitions {
		total += p.High - p.Low
	}
	fmt.Fprintf(w, "Topic %s: %d partitions, %d messages retained\n\n", d.Name, len(d.Partitions), total)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tLEADER\tREPLICAS\tISR\tLOW\tHIGH\tMESSAGES")
	for _, p := range d.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\t%d\t%d\n", p.ID, p.Leader, ints(p.Replicas), ints(p.ISR), p.Low, p.High, p.High-p.Low)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCONFIG (set on the topic)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := 0
	for _, e := range d.Configs {
		if !e.Default {
			fmt.Fprintf(tw, "  %s\t%s%s\n", e.Name, e.Value, hint(e))
			n++
		}
	}
	if n == 0 {
		fmt.Fprintln(tw, "  (none)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "CONFIG (broker defaults)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, e := range d.Configs {
		if e.Default {
			fmt.Fprintf(tw, "  %s\t%s%s\n", e.Name, e.Value, hint(e))
		}
	}
	return tw.Flush()
}

// hint renders *.ms values as durations too.
func hint(e ConfigEntry) string {
	if len(e.Name) < 3 || e.Name[len(e.Name)-3:] != ".ms" {
		return ""
	}
	ms, err := strconv.ParseInt(e.Value, 10, 64)
	if err != nil || ms == 0 {
		return ""
	}
	return "  (" + formatDuration(time.Duration(ms)*time.Millisecond) + ")"
}

func ints(v []int32) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ","
		}
		s += strconv.Itoa(int(x))
	}
	if s == "" {
		return "-"
	}
	return s
}

// CreateTopic creates topic with partitions (0: the configured KAFKA_PARTITIONS)
// and retention (0: the configured retention of that topic), with the configured
// replication factor. An existing topic is an error.
func (c *Client) CreateTopic(ctx context.Context, topic string, partitions int, retention time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if topic == "" {
		return errors.New("topic name is empty")
	}
	if partitions <= 0 {
		partitions = c.cfg.Partitions
	}
	if retention == 0 {
		retention = c.cfg.RetentionFor(topic)
	}
	res, err := c.admin.CreateTopics(ctx, []ck.TopicSpecification{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: c.cfg.ReplicationFactor,
		Config: map[string]string{"retention.ms": strconv.FormatInt(retention.Milliseconds(), 10)},
	}}, ck.SetAdminOperationTimeout(left(ctx)))
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for _, r := range res {
		switch r.Error.Code() {
		case ck.ErrNoError:
		case ck.ErrTopicAlreadyExists:
			return fmt.Errorf("topic %s already exists ('puchi topics describe %s' shows it)", topic, topic)
		default:
			return fmt.Errorf("create topic %s: %w", topic, r.Error)
		}
	}
	return nil
}
