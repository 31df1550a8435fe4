package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The domain topics. Each service owns (produces to) the topics listed for it in
// docs/architecture.md; every topic is keyed by user id where one applies.
const (
	TopicUserLearningEvents = "user-learning-events"
	TopicLessonEvents       = "lesson-events"
	TopicProgressEvents     = "progress-events"
	TopicAnalyticsEvents    = "analytics-events"
	TopicUserEvents         = "user-events"
	TopicMediaEvents        = "media-events"
	TopicNotificationEvents = "notification-events"
	TopicVocabularyEvents   = "vocabulary-events"
	TopicQuizEvents         = "quiz-events"
)

// Topics lists every domain topic, for provisioning ([EnsureTopics]) and for
// consumers of everything (analytics). Treat it as read-only.
var Topics = []string{
	TopicUserLearningEvents,
	TopicLessonEvents,
	TopicProgressEvents,
	TopicAnalyticsEvents,
	TopicUserEvents,
	TopicMediaEvents,
	TopicNotificationEvents,
	TopicVocabularyEvents,
	TopicQuizEvents,
}

// DLQTopic returns the dead-letter topic of a consumer group: group + ".dlq".
func DLQTopic(group string) string { return group + ".dlq" }

// TopicInfo is what [DescribeTopics] reports about one topic.
type TopicInfo struct {
	Name       string
	Partitions int
	// Retention is the topic's effective retention.ms (-1ms means unlimited).
	Retention time.Duration
	// RetentionExplicit is true when retention.ms is set on the topic itself
	// rather than inherited from the broker default.
	RetentionExplicit bool
}

const retentionKey = "retention.ms"

// adminTimeout bounds admin calls made with a context that has no deadline.
const adminTimeout = 30 * time.Second

// EnsureTopics makes sure each topic exists with an explicit retention.ms equal to
// cfg.RetentionFor(topic). Missing topics are created with cfg.Partitions and
// cfg.ReplicationFactor; existing topics keep their partition count (adding
// partitions would move keys) and get their retention.ms set when it differs.
// It is idempotent and safe to run concurrently from several processes. It blocks
// until the broker has answered or ctx is done (30s when ctx has no deadline).
func EnsureTopics(ctx context.Context, cfg Config, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, cancel := withAdminTimeout(ctx)
	defer cancel()
	admin, err := ck.NewAdminClient(cfg.adminConfig())
	if err != nil {
		return fmt.Errorf("kafka: admin client: %w", err)
	}
	defer admin.Close()

	seen := make(map[string]bool, len(topics))
	specs := make([]ck.TopicSpecification, 0, len(topics))
	for _, t := range topics {
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		specs = append(specs, ck.TopicSpecification{
			Topic:             t,
			NumPartitions:     cfg.Partitions,
			ReplicationFactor: cfg.ReplicationFactor,
			Config:            map[string]string{retentionKey: msString(cfg.RetentionFor(t))},
		})
	}
	res, err := admin.CreateTopics(ctx, specs, ck.SetAdminOperationTimeout(deadlineLeft(ctx)))
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	var existing []string
	var errs []error
	for _, r := range res {
		switch r.Error.Code() {
		case ck.ErrNoError:
		case ck.ErrTopicAlreadyExists:
			existing = append(existing, r.Topic)
		default:
			errs = append(errs, fmt.Errorf("kafka: create topic %s: %w", r.Topic, r.Error))
		}
	}
	if len(existing) > 0 {
		errs = append(errs, alignRetention(ctx, admin, cfg, existing))
	}
	return errors.Join(errs...)
}

// alignRetention sets retention.ms on the existing topics whose value differs from
// the configured one.
func alignRetention(ctx context.Context, admin *ck.AdminClient, cfg Config, topics []string) error {
	current, err := describeConfigs(ctx, admin, topics)
	if err != nil {
		return err
	}
	var alter []ck.ConfigResource
	for _, t := range topics {
		want := msString(cfg.RetentionFor(t))
		if e, ok := current[t]; ok && e.Value == want && e.Source == ck.ConfigSourceDynamicTopic {
			continue
		}
		alter = append(alter, ck.ConfigResource{
			Type: ck.ResourceTopic,
			Name: t,
			Config: []ck.ConfigEntry{{
				Name: retentionKey, Value: want, IncrementalOperation: ck.AlterConfigOpTypeSet,
			}},
		})
	}
	if len(alter) == 0 {
		return nil
	}
	res, err := admin.IncrementalAlterConfigs(ctx, alter, ck.SetAdminRequestTimeout(deadlineLeft(ctx)))
	if err != nil {
		return fmt.Errorf("kafka: set retention.ms: %w", err)
	}
	var errs []error
	for _, r := range res {
		if r.Error.Code() != ck.ErrNoError {
			errs = append(errs, fmt.Errorf("kafka: set retention.ms of %s: %w", r.Name, r.Error))
		}
	}
	return errors.Join(errs...)
}

// describeConfigs returns the retention.ms entry of each topic.
func describeConfigs(ctx context.Context, admin *ck.AdminClient, topics []string) (map[string]ck.ConfigEntryResult, error) {
	rs := make([]ck.ConfigResource, len(topics))
	for i, t := range topics {
		rs[i] = ck.ConfigResource{Type: ck.ResourceTopic, Name: t}
	}
	res, err := admin.DescribeConfigs(ctx, rs, ck.SetAdminRequestTimeout(deadlineLeft(ctx)))
	if err != nil {
		return nil, fmt.Errorf("kafka: describe topic configs: %w", err)
	}
	out := make(map[string]ck.ConfigEntryResult, len(res))
	var errs []error
	for _, r := range res {
		if r.Error.Code() != ck.ErrNoError {
			errs = append(errs, fmt.Errorf("kafka: describe config of %s: %w", r.Name, r.Error))
			continue
		}
		out[r.Name] = r.Config[retentionKey]
	}
	return out, errors.Join(errs...)
}

// DescribeTopics reports partition count and retention of each named topic that
// exists; missing topics are absent from the map (not an error). For tests and
// ops; it blocks until the broker answers or ctx is done (30s without deadline).
func DescribeTopics(ctx context.Context, cfg Config, topics ...string) (map[string]TopicInfo, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := withAdminTimeout(ctx)
	defer cancel()
	admin, err := ck.NewAdminClient(cfg.adminConfig())
	if err != nil {
		return nil, fmt.Errorf("kafka: admin client: %w", err)
	}
	defer admin.Close()

	md, err := admin.GetMetadata(nil, true, int(deadlineLeft(ctx).Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("kafka: metadata: %w", err)
	}
	out := make(map[string]TopicInfo, len(topics))
	var present []string
	for _, t := range topics {
		tm, ok := md.Topics[t]
		if !ok || tm.Error.Code() == ck.ErrUnknownTopicOrPart {
			continue
		}
		if tm.Error.Code() != ck.ErrNoError {
			return nil, fmt.Errorf("kafka: metadata of %s: %w", t, tm.Error)
		}
		out[t] = TopicInfo{Name: t, Partitions: len(tm.Partitions)}
		present = append(present, t)
	}
	if len(present) == 0 {
		return out, nil
	}
	cfgs, err := describeConfigs(ctx, admin, present)
	if err != nil {
		return nil, err
	}
	for _, t := range present {
		info := out[t]
		e := cfgs[t]
		if ms, err := strconv.ParseInt(e.Value, 10, 64); err == nil {
			info.Retention = time.Duration(ms) * time.Millisecond
		}
		info.RetentionExplicit = e.Source == ck.ConfigSourceDynamicTopic
		out[t] = info
	}
	return out, nil
}

func msString(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func withAdminTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, adminTimeout)
}

// deadlineLeft is the time until ctx's deadline (at least 1ms).
func deadlineLeft(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return adminTimeout
	}
	return max(time.Until(d), time.Millisecond)
}
