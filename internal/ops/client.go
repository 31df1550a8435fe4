package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/kafka"
)

// Timeouts of the operator commands: connecting is short so that a broker that is
// not running is reported in seconds; whole operations get longer.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 30 * time.Second
)

// Client is an admin connection for the operator commands. It logs nothing
// (librdkafka's log is off: failures come back as errors).
type Client struct {
	cfg     kafka.Config
	admin   *ck.AdminClient
	timeout time.Duration
}

// UnreachableError reports that no broker answered within the connect timeout.
type UnreachableError struct {
	Brokers string
	Timeout time.Duration
	Err     error
	// SASLUser is the SASL user the client authenticated as ("" without SASL): a
	// broker that rejects the credentials looks unreachable to librdkafka.
	SASLUser string
}

func (e *UnreachableError) Error() string {
	if e.SASLUser != "" {
		return fmt.Sprintf("cannot reach Kafka at %s within %s as SASL user %q: check KAFKA_BROKERS and the credentials "+
			"(KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD): %v", e.Brokers, e.Timeout, e.SASLUser, e.Err)
	}
	return fmt.Sprintf("cannot reach Kafka at %s within %s (set KAFKA_BROKERS to your cluster; "+
		"unset, puchi uses PUCHI_BROKER_ADDR). Is it running? Start one with 'make run' or 'puchi broker': %v",
		e.Brokers, e.Timeout, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// clientConfig is the librdkafka configuration every ops client starts from:
// the bootstrap servers and the SASL/TLS settings of cfg (the same ones the
// services use, see [kafka.Config.SecurityConfig]), client id puchi-ops,
// librdkafka's own logging off.
func clientConfig(cfg kafka.Config, extra ck.ConfigMap) *ck.ConfigMap {
	m := ck.ConfigMap{
		"bootstrap.servers":                  cfg.Brokers,
		"client.id":                          "puchi-ops",
		"log_level":                          0,
		"enable.metrics.push":                false,
		"socket.connection.setup.timeout.ms": 5000,
	}
	for k, v := range cfg.SecurityConfig() {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return &m
}

// Connect opens an admin client on cfg.Brokers and checks that a broker answers
// within connectTimeout (0: [DefaultConnectTimeout]); otherwise it returns an
// [*UnreachableError].
func Connect(ctx context.Context, cfg kafka.Config, connectTimeout time.Duration) (*Client, error) {
	if strings.TrimSpace(cfg.Brokers) == "" {
		return nil, errors.New("no Kafka brokers configured: set KAFKA_BROKERS (or PUCHI_BROKER_ADDR for the embedded broker)")
	}
	if err := cfg.ValidateSecurity(); err != nil {
		return nil, err
	}
	if connectTimeout <= 0 {
		connectTimeout = DefaultConnectTimeout
	}
	admin, err := ck.NewAdminClient(clientConfig(cfg, nil))
	if err != nil {
		return nil, fmt.Errorf("kafka admin client for %s (KAFKA_BROKERS): %w", cfg.Brokers, err)
	}
	if err := probe(ctx, admin, connectTimeout); err != nil {
		admin.Close()
		if kerr := (ck.Error{}); errors.As(err, &kerr) && kerr.Code() == ck.ErrAuthentication {
			return nil, fmt.Errorf("kafka at %s refused the credentials (check KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD): %w", cfg.Brokers, err)
		}
		ue := &UnreachableError{Brokers: cfg.Brokers, Timeout: connectTimeout, Err: err}
		if cfg.SASLMechanism != "" {
			ue.SASLUser = cfg.SASLUsername
		}
		return nil, ue
	}
	return &Client{cfg: cfg.WithDefaults(), admin: admin, timeout: DefaultTimeout}, nil
}

// probe asks for the broker list (no topics) within d or until ctx ends.
func probe(ctx context.Context, admin *ck.AdminClient, d time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := admin.GetMetadata(nil, false, int(d.Milliseconds()))
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close releases the admin client.
func (c *Client) Close() { c.admin.Close() }

// Brokers returns the bootstrap servers the client talks to.
func (c *Client) Brokers() string { return c.cfg.Brokers }

// op bounds one operation by the client's timeout (unless ctx ends sooner).
func (c *Client) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func left(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return DefaultTimeout
}

// TP names one partition of a topic.
type TP struct {
	Topic     string
	Partition int32
}

func (t TP) String() string { return fmt.Sprintf("%s[%d]", t.Topic, t.Partition) }

func sortTPs(tps []TP) {
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}

// partitions returns the partition ids of each named topic that exists (all
// topics when names is empty, internal "__" topics left out).
func (c *Client) partitions(ctx context.Context, names ...string) (map[string][]int32, error) {
	var md *ck.Metadata
	var err error
	if len(names) == 1 {
		md, err = c.admin.GetMetadata(&names[0], false, int(left(ctx).Milliseconds()))
	} else {
		md, err = c.admin.GetMetadata(nil, true, int(left(ctx).Milliseconds()))
	}
	if err != nil {
		return nil, fmt.Errorf("metadata from %s: %w", c.cfg.Brokers, err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string][]int32{}
	for name, tm := range md.Topics {
		if len(names) > 0 && !want[name] || len(names) == 0 && strings.HasPrefix(name, "__") {
			continue
		}
		if tm.Error.Code() == ck.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
			continue
		}
		var ids []int32
		for _, p := range tm.Partitions {
			ids = append(ids, p.ID)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		out[name] = ids
	}
	return out, nil
}

// Watermarks are a partition's low (oldest retained offset) and high (next
// offset to be written) watermarks.
type Watermarks struct{ Low, High int64 }

// listOffsets runs ListOffsets with spec on every partition of tps.
func (c *Client) listOffsets(ctx context.Context, tps []TP, spec ck.OffsetSpec) (map[TP]int64, error) {
	out := make(map[TP]int64, len(tps))
	if len(tps) == 0 {
		return out, nil
	}
	req := make(map[ck.TopicPartition]ck.OffsetSpec, len(tps))
	for _, tp := range tps {
		topic := tp.Topic
		req[ck.TopicPartition{Topic: &topic, Partition: tp.Partition}] = spec
	}
	res, err := c.admin.ListOffsets(ctx, req, ck.SetAdminRequestTimeout(left(ctx)))
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	var errs []error
	for k, info := range res.ResultInfos {
		tp := TP{Topic: *k.Topic, Partition: k.Partition}
		if info.Error.Code() != ck.ErrNoError {
			errs = append(errs, fmt.Errorf("list offsets of %s: %w", tp, info.Error))
			continue
		}
		out[tp] = int64(info.Offset)
	}
	return out, errors.Join(errs...)
}

// watermarks returns the low and high watermarks of every partition of tps.
func (c *Client) watermarks(ctx context.Context, tps []TP) (map[TP]Watermarks, error) {
	low, err := c.listOffsets(ctx, tps, ck.EarliestOffsetSpec)
	if err != nil {
		return nil, err
	}
	high, err := c.listOffsets(ctx, tps, ck.LatestOffsetSpec)
	if err != nil {
		return nil, err
	}
	out := make(map[TP]Watermarks, len(tps))
	for _, tp := range tps {
		out[tp] = Watermarks{Low: low[tp], High: high[tp]}
	}
	return out, nil
}

// offsetsAt returns, per partition, the offset of the first record with a
// timestamp at or after t; partitions with no such record get their high
// watermark (the position after the last record).
func (c *Client) offsetsAt(ctx context.Context, tps []TP, t time.Time) (map[TP]int64, error) {
	at, err := c.listOffsets(ctx, tps, ck.NewOffsetSpecForTimestamp(t.UnixMilli()))
	if err != nil {
		return nil, err
	}
	var missing []TP
	for _, tp := range tps {
		if o, ok := at[tp]; !ok || o < 0 {
			missing = append(missing, tp)
		}
	}
	if len(missing) > 0 {
		high, err := c.listOffsets(ctx, missing, ck.LatestOffsetSpec)
		if err != nil {
			return nil, err
		}
		for _, tp := range missing {
			at[tp] = high[tp]
		}
	}
	return at, nil
}

// committed returns the committed offsets of group (all partitions it has
// committed on when tps is nil); partitions without a commit are absent.
func (c *Client) committed(ctx context.Context, group string, tps []TP) (map[TP]int64, error) {
	var parts []ck.TopicPartition
	for _, tp := range tps {
		topic := tp.Topic
		parts = append(parts, ck.TopicPartition{Topic: &topic, Partition: tp.Partition})
	}
	res, err := c.admin.ListConsumerGroupOffsets(ctx,
		[]ck.ConsumerGroupTopicPartitions{{Group: group, Partitions: parts}},
		ck.SetAdminRequireStableOffsets(false))
	if kerr := (ck.Error{}); errors.As(err, &kerr) && kerr.Code() == ck.ErrGroupIDNotFound {
		return map[TP]int64{}, nil // a group that never committed
	}
	if err != nil {
		return nil, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	out := map[TP]int64{}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			if p.Error != nil {
				var kerr ck.Error
				if errors.As(p.Error, &kerr) && kerr.Code() == ck.ErrNoError {
					continue
				}
				return nil, fmt.Errorf("committed offset of group %s on %s[%d]: %w", group, *p.Topic, p.Partition, p.Error)
			}
			if p.Offset >= 0 {
				out[TP{Topic: *p.Topic, Partition: p.Partition}] = int64(p.Offset)
			}
		}
	}
	return out, nil
}

// commit sets the committed offsets of group (which must have no active
// members).
func (c *Client) commit(ctx context.Context, group string, offsets map[TP]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	var parts []ck.TopicPartition
	for tp, o := range offsets {
		topic := tp.Topic
		parts = append(parts, ck.TopicPartition{Topic: &topic, Partition: tp.Partition, Offset: ck.Offset(o)})
	}
	res, err := c.admin.AlterConsumerGroupOffsets(ctx, []ck.ConsumerGroupTopicPartitions{{Group: group, Partitions: parts}},
		ck.SetAdminRequestTimeout(left(ctx)))
	if err != nil {
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	var errs []error
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			if p.Error != nil {
				var kerr ck.Error
				if errors.As(p.Error, &kerr) && kerr.Code() == ck.ErrNoError {
					continue
				}
				errs = append(errs, fmt.Errorf("commit offset of group %s on %s[%d]: %w", group, *p.Topic, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}

// ParseTime reads a point in time for --from/--to: RFC 3339
// ("2025-06-01T10:00:00Z"), a date ("2025-06-01", local midnight), or a
// duration meaning that long before now ("10m", "2h30m", "3d").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2025-06-01T10:00:00Z), a date (2025-06-01) or a duration back from now (10m, 2h, 3d)", s)
}

// formatDuration prints a retention compactly: "30d", "12h", "90m", "unlimited".
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "unlimited"
	case d == 0:
		return "-"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// ParseRetention reads a retention for topics create: a Go duration or a
// number of days ("7d"), or "unlimited"/"-1".
func ParseRetention(s string) (time.Duration, error) {
	switch s {
	case "unlimited", "-1":
		return -time.Millisecond, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Millisecond {
		return 0, fmt.Errorf("retention %q: want a duration (72h, 7d) or 'unlimited'", s)
	}
	return d, nil
}
