package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/clock"
)

// Handler processes one consumed message. Returning nil marks the message done
// (its offset is stored for commit); an error asks for a retry, or for the
// dead-letter topic at once when wrapped with [Permanent]. A handler must stop
// promptly and return an error when ctx is cancelled. Handlers of one consumer are
// called sequentially, so messages of a partition are handled in offset order.
type Handler func(ctx context.Context, m *Message) error

// Defaults applied to zero-valued [ConsumerConfig] fields.
const (
	DefaultMaxRetries = 5
	DefaultBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// ConsumerConfig configures one consumer group member.
type ConsumerConfig struct {
	// Group is the consumer group id, e.g. "progress-service-group". Required.
	Group string
	// Topics to subscribe to. Required.
	Topics []string
	// MaxRetries is how many times a failing message is retried after its first
	// attempt before it is dead-lettered. 0 means [DefaultMaxRetries]; a negative
	// value disables retries.
	MaxRetries int
	// Backoff is the delay before the first retry; it doubles per retry (with
	// ±20% jitter) up to MaxBackoff. Defaults [DefaultBackoff], [DefaultMaxBackoff].
	Backoff, MaxBackoff time.Duration
	// Metrics, when set, receives the puchi_consumer_* and puchi_dlq_* series
	// (see metrics.go). Consumers of several groups may share one registry:
	// their series differ by the group label. nil: no metrics.
	Metrics prometheus.Registerer
	// LagInterval is how often puchi_consumer_lag is refreshed when Metrics is
	// set; default [DefaultLagInterval].
	LagInterval time.Duration
	// DLQProducer, when set, writes the dead letters: normally the process's one
	// [Producer], shared by every consumer and the outbox relays, so a process
	// does not run a Kafka client per consumer just for dead letters. It must be
	// connected to the same cluster as the consumer. The consumer only calls
	// [Producer.Publish] on it and never closes it: its owner closes it after
	// [Consumer.Run] has returned (a closed producer makes dead-lettering retry
	// until Run's ctx ends, storing no offset). nil: Run creates a producer of
	// its own and closes it when it returns.
	DLQProducer *Producer
}

func (cc ConsumerConfig) withDefaults() ConsumerConfig {
	switch {
	case cc.MaxRetries == 0:
		cc.MaxRetries = DefaultMaxRetries
	case cc.MaxRetries < 0:
		cc.MaxRetries = 0
	}
	if cc.Backoff <= 0 {
		cc.Backoff = DefaultBackoff
	}
	if cc.MaxBackoff <= 0 {
		cc.MaxBackoff = DefaultMaxBackoff
	}
	cc.MaxBackoff = max(cc.MaxBackoff, cc.Backoff)
	if cc.LagInterval <= 0 {
		cc.LagInterval = DefaultLagInterval
	}
	return cc
}

// Stats are a consumer's cumulative counters since it was created.
type Stats struct {
	Processed    uint64 // messages whose handler returned nil (offset stored)
	Retried      uint64 // retry attempts (not counting first attempts)
	DeadLettered uint64 // messages moved to the dead-letter topic (offset stored)
}

// Consumer is a consumer-group member that calls a [Handler] for each message,
// retries transient failures with exponential backoff and moves permanent or
// exhausted failures to [DLQTopic](group). Offsets are stored only after the
// handler returned nil or the dead letter was acknowledged, and committed in the
// background (auto-commit) and synchronously on shutdown: delivery is
// at-least-once, so handlers must be idempotent (see the inbox package).
type Consumer struct {
	cfg     Config
	cc      ConsumerConfig
	handler Handler
	log     *slog.Logger
	tracer  trace.Tracer
	running atomic.Bool
	metrics *consumerMetrics // nil: no metrics

	// parts holds what handling reuses per partition (see [partState]); only
	// Run's loop goroutine touches it. last is the entry of the previous
	// message, since messages arrive in runs of one partition.
	parts    map[partKey]*partState
	lastKey  partKey
	lastPart *partState

	processed, retried, deadLettered atomic.Uint64
}

// NewConsumer validates the configuration and returns a consumer; nothing
// connects until [Consumer.Run].
func NewConsumer(cfg Config, cc ConsumerConfig, h Handler, log *slog.Logger) (*Consumer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cc.Group == "" {
		return nil, errors.New("kafka: consumer needs a Group")
	}
	if len(cc.Topics) == 0 {
		return nil, fmt.Errorf("kafka: consumer %s needs Topics", cc.Group)
	}
	if h == nil {
		return nil, fmt.Errorf("kafka: consumer %s needs a Handler", cc.Group)
	}
	c := &Consumer{
		cfg:     cfg,
		cc:      cc.withDefaults(),
		handler: h,
		log:     log.With("component", "kafka-consumer", "group", cc.Group),
		tracer:  otel.Tracer(TracerName),
	}
	if cc.Metrics != nil {
		m, err := newConsumerMetrics(cc.Metrics)
		if err != nil {
			return nil, fmt.Errorf("kafka: consumer %s: metrics: %w", cc.Group, err)
		}
		c.metrics = m
	}
	return c, nil
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (c *Consumer) Stats() Stats {
	return Stats{
		Processed:    c.processed.Load(),
		Retried:      c.retried.Load(),
		DeadLettered: c.deadLettered.Load(),
	}
}

// Run ensures the dead-letter topic exists, joins the group and handles messages
// until ctx is done. On shutdown the message in hand is neither dead-lettered nor
// marked done (it is redelivered later), the stored offsets are committed
// synchronously and the group is left. It returns nil after a shutdown caused by
// ctx, or an error if it could not start or the client failed fatally. Run may be
// called only once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("kafka: consumer %s: Run called twice", c.cc.Group)
	}
	dlq := DLQTopic(c.cc.Group)
	if err := EnsureTopics(ctx, c.cfg, dlq); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("kafka: consumer %s: %w", c.cc.Group, err)
	}
	prod := c.cc.DLQProducer
	if prod == nil {
		own, err := NewProducer(c.cfg, c.log)
		if err != nil {
			return fmt.Errorf("kafka: consumer %s: dead-letter producer: %w", c.cc.Group, err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := own.Close(cctx); err != nil {
				c.log.Warn("kafka: closing dead-letter producer", "err", err)
			}
		}()
		prod = own
	}
	kc, err := ck.NewConsumer(c.cfg.consumerConfig(c.cc.Group))
	if err != nil {
		return fmt.Errorf("kafka: consumer %s: %w", c.cc.Group, err)
	}
	if err := kc.SubscribeTopics(c.cc.Topics, nil); err != nil {
		_ = kc.Close()
		return fmt.Errorf("kafka: consumer %s: subscribe %v: %w", c.cc.Group, c.cc.Topics, err)
	}
	c.log.Info("kafka consumer started", "topics", c.cc.Topics)

	var lagDone chan struct{}
	lctx, stopLag := context.WithCancel(ctx)
	if c.metrics != nil {
		lagDone = make(chan struct{})
		go func() {
			defer close(lagDone)
			c.refreshLag(lctx, kc)
		}()
	}
	runErr := c.loop(ctx, kc, prod)
	stopLag()
	if lagDone != nil {
		<-lagDone // kc must outlive the refresher
	}

	if _, err := kc.Commit(); err != nil && !isBenignCommitError(err) {
		c.log.Warn("kafka: final commit failed", "err", err)
	}
	if err := kc.Close(); err != nil {
		c.log.Warn("kafka: closing consumer", "err", err)
	}
	c.log.Info("kafka consumer stopped", "processed", c.processed.Load(), "dead_lettered", c.deadLettered.Load())
	return runErr
}

// loop polls and handles messages until ctx is done or a fatal error.
func (c *Consumer) loop(ctx context.Context, kc *ck.Consumer, prod *Producer) error {
	for ctx.Err() == nil {
		switch e := kc.Poll(100).(type) {
		case nil:
		case *ck.Message:
			if e.TopicPartition.Error != nil {
				c.log.Warn("kafka: consume error", "err", e.TopicPartition.Error)
				continue
			}
			c.handle(ctx, kc, prod, e)
		case ck.Error:
			switch {
			case e.IsFatal():
				return fmt.Errorf("kafka: consumer %s: fatal: %w", c.cc.Group, e)
			case isRebalanceError(e):
				c.log.Info("kafka: rebalance in progress", "err", e)
			default:
				c.log.Warn("kafka: consumer error", "err", e, "code", e.Code())
			}
		default:
			c.log.Debug("kafka: consumer event", "event", e.String())
		}
	}
	return nil
}

// partKey identifies a partition.
type partKey struct {
	topic     string
	partition int32
}

// partState is what handling the messages of one partition reuses instead of
// rebuilding it per message: the span name and constant span attributes, and
// the metric children of its topic (nil without metrics). Read-only once built.
type partState struct {
	spans     processSpans
	ok        prometheus.Counter  // puchi_consumer_messages_total{outcome="ok"}
	handlerHS prometheus.Observer // puchi_consumer_handler_seconds
}

// part returns the state of topic/partition, building it on first use. The
// map holds one entry per partition this member has handled, bounded by the
// partitions of its topics.
func (c *Consumer) part(topic string, partition int32) *partState {
	k := partKey{topic, partition}
	if c.lastPart != nil && c.lastKey == k {
		return c.lastPart
	}
	ps := c.parts[k]
	if ps == nil {
		ps = &partState{spans: newProcessSpans(topic, partition, c.cc.Group)}
		ps.ok, ps.handlerHS = c.topicMetrics(topic)
		if c.parts == nil {
			c.parts = make(map[partKey]*partState)
		}
		c.parts[k] = ps
	}
	c.lastKey, c.lastPart = k, ps
	return ps
}

// handle runs one message through handler, retries and dead-lettering, then
// stores its offset — unless ctx ended first.
func (c *Consumer) handle(ctx context.Context, kc *ck.Consumer, prod *Producer, km *ck.Message) {
	m := consumedMessage(km)
	ps := c.part(m.Topic, m.Partition)
	hctx, span := ps.spans.start(ctx, c.tracer, &m)
	defer span.End()

	err := c.attempt(hctx, ps, &m)
	switch {
	case err == nil:
		c.processed.Add(1)
		if ps.ok != nil {
			ps.ok.Inc()
		}
	case ctx.Err() != nil:
		span.SetStatus(codes.Error, "shutdown")
		c.outcome(m.Topic, OutcomeSkipped)
		c.log.Info("kafka: shutdown while handling; message will be redelivered", "msg", m.String(), "err", err)
		return
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, "dead-lettered")
		if derr := c.deadLetter(hctx, prod, km, err); derr != nil {
			// Only ctx ending stops deadLetter: leave the offset for redelivery.
			c.log.Info("kafka: shutdown while dead-lettering; message will be redelivered", "msg", m.String())
			c.outcome(m.Topic, OutcomeSkipped)
			return
		}
		c.deadLettered.Add(1)
		c.outcome(m.Topic, OutcomeDeadLettered)
		if c.metrics != nil {
			c.metrics.dlq.WithLabelValues(c.cc.Group).Inc()
		}
	}
	if _, err := kc.StoreMessage(km); err != nil {
		// Typically the partition was revoked meanwhile: its new owner redelivers.
		c.log.Info("kafka: offset not stored", "msg", m.String(), "err", err)
	}
}

// attempt calls the handler, retrying retryable errors with backoff. It returns
// nil, the last handler error, or ctx's error when ctx ended during a backoff.
func (c *Consumer) attempt(ctx context.Context, ps *partState, m *Message) error {
	for retry := 0; ; retry++ {
		err := c.call(ctx, ps, m)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		if IsPermanent(err) || retry >= c.cc.MaxRetries {
			c.log.Warn("kafka: handler failed; dead-lettering", "msg", m.String(),
				"err", err, "attempts", retry+1, "permanent", IsPermanent(err))
			return err
		}
		c.retried.Add(1)
		c.outcome(m.Topic, OutcomeRetried)
		d := c.backoff(retry)
		c.log.Warn("kafka: handler failed; retrying", "msg", m.String(), "err", err, "attempt", retry+1, "backoff", d)
		if !clock.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// call runs the handler, turning a panic into a retryable error, and records
// its duration when there are metrics.
func (c *Consumer) call(ctx context.Context, ps *partState, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("kafka: handler panic", "msg", m.String(), "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("kafka: handler panic: %v", r)
		}
	}()
	// The handler gets its own copy so it cannot alter what is dead-lettered.
	cp := *m
	if ps.handlerHS == nil {
		return c.handler(ctx, &cp)
	}
	start := time.Now()
	defer func() { ps.handlerHS.Observe(time.Since(start).Seconds()) }()
	return c.handler(ctx, &cp)
}

// backoff is the delay before retry number retry+1: Backoff·2^retry capped at
// MaxBackoff, with ±20% jitter.
func (c *Consumer) backoff(retry int) time.Duration {
	d := c.cc.Backoff
	for range retry {
		d *= 2
		if d >= c.cc.MaxBackoff {
			d = c.cc.MaxBackoff
			break
		}
	}
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) * 2
	return d - d/5 + jitter
}

// deadLetter produces km to the group's dead-letter topic with the original
// headers plus the dlq_* headers, and waits for that record's own delivery
// report (acks=all; [Producer.Publish] answers per message, also on a producer
// shared with other writers). It retries failed produces until they succeed or
// ctx ends (then it returns ctx's error).
func (c *Consumer) deadLetter(ctx context.Context, prod *Producer, km *ck.Message, cause error) error {
	orig := consumedMessage(km)
	h := make(map[string]string, len(orig.Headers)+6)
	for k, v := range orig.Headers {
		h[k] = v
	}
	h[HeaderDLQTopic] = orig.Topic
	h[HeaderDLQPartition] = strconv.Itoa(int(orig.Partition))
	h[HeaderDLQOffset] = strconv.FormatInt(orig.Offset, 10)
	h[HeaderDLQError] = cause.Error()
	h[HeaderDLQGroup] = c.cc.Group
	h[HeaderDLQTime] = time.Now().UTC().Format(time.RFC3339Nano)
	dm := Message{Topic: DLQTopic(c.cc.Group), Partition: -1, Key: orig.Key, Value: orig.Value, Headers: h}
	for retry := 0; ; retry++ {
		err := prod.Publish(ctx, []Message{dm})[0]
		if err == nil {
			c.log.Warn("kafka: message dead-lettered", "msg", orig.String(), "dlq", dm.Topic, "err", cause)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Error("kafka: dead-letter produce failed; retrying", "msg", orig.String(), "err", err)
		if !clock.Sleep(ctx, c.backoff(retry)) {
			return ctx.Err()
		}
	}
}

// isRebalanceError reports errors that are normal while the group rebalances.
func isRebalanceError(err error) bool {
	var ke ck.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case ck.ErrIllegalGeneration, ck.ErrRebalanceInProgress, ck.ErrUnknownMemberID, ck.ErrState:
		return true
	}
	return false
}

// isBenignCommitError reports commit errors that lose nothing: nothing to commit,
// or a rebalance (the new owner resumes from the last committed offset).
func isBenignCommitError(err error) bool {
	var ke ck.Error
	if errors.As(err, &ke) && ke.Code() == ck.ErrNoOffset {
		return true
	}
	return isRebalanceError(err)
}
