package kafka

import (
	"context"
	"errors"
	"strconv"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes counted by puchi_consumer_messages_total.
const (
	OutcomeOK           = "ok"            // the handler returned nil; offset stored
	OutcomeRetried      = "retried"       // one retry attempt (first attempts are not counted)
	OutcomeDeadLettered = "dead_lettered" // moved to the dead-letter topic; offset stored
	OutcomeSkipped      = "skipped"       // left unhandled at shutdown; redelivered later
)

// DefaultLagInterval is how often a consumer with metrics refreshes
// puchi_consumer_lag.
const DefaultLagInterval = 5 * time.Second

// consumerMetrics are the collectors of one registry, shared by every consumer
// registered on it (series are told apart by the group label).
type consumerMetrics struct {
	lag      *prometheus.GaugeVec     // group, topic, partition
	handler  *prometheus.HistogramVec // group, topic
	messages *prometheus.CounterVec   // group, topic, outcome
	dlq      *prometheus.CounterVec   // group
}

func newConsumerMetrics(reg prometheus.Registerer) (*consumerMetrics, error) {
	m := &consumerMetrics{
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "puchi_consumer_lag",
			Help: "Messages behind the high watermark per assigned partition (high watermark minus consumer position).",
		}, []string{"group", "topic", "partition"}),
		handler: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "puchi_consumer_handler_seconds",
			Help:    "Duration of one handler call (each attempt, retries included).",
			Buckets: prometheus.DefBuckets,
		}, []string{"group", "topic"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puchi_consumer_messages_total",
			Help: "Consumed messages by outcome: ok, retried (per retry attempt), dead_lettered, skipped (left at shutdown).",
		}, []string{"group", "topic", "outcome"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puchi_dlq_messages_total",
			Help: "Messages the group moved to its dead-letter topic.",
		}, []string{"group"}),
	}
	var err error
	if m.lag, err = registerOrExisting(reg, m.lag); err != nil {
		return nil, err
	}
	if m.handler, err = registerOrExisting(reg, m.handler); err != nil {
		return nil, err
	}
	if m.messages, err = registerOrExisting(reg, m.messages); err != nil {
		return nil, err
	}
	if m.dlq, err = registerOrExisting(reg, m.dlq); err != nil {
		return nil, err
	}
	return m, nil
}

// registerOrExisting registers c, or returns the identical collector already
// registered on reg (several consumers or services of one process share a
// registry).
func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex, nil
			}
		}
		return c, err
	}
	return c, nil
}

// outcome counts one message outcome; a no-op without metrics.
func (c *Consumer) outcome(topic, outcome string) {
	if c.metrics != nil {
		c.metrics.messages.WithLabelValues(c.cc.Group, topic, outcome).Inc()
	}
}

// topicMetrics returns the children of topic's ok counter and handler
// histogram, for [partState] to keep (resolving the labels of every message
// costs a hash and a lookup each); nil, nil without metrics.
func (c *Consumer) topicMetrics(topic string) (ok prometheus.Counter, handler prometheus.Observer) {
	if c.metrics == nil {
		return nil, nil
	}
	return c.metrics.messages.WithLabelValues(c.cc.Group, topic, OutcomeOK),
		c.metrics.handler.WithLabelValues(c.cc.Group, topic)
}

// lagClient is the part of *ck.Consumer the lag refresher uses.
type lagClient interface {
	Assignment() ([]ck.TopicPartition, error)
	Position([]ck.TopicPartition) ([]ck.TopicPartition, error)
	Committed([]ck.TopicPartition, int) ([]ck.TopicPartition, error)
	QueryWatermarkOffsets(topic string, partition int32, timeoutMs int) (low, high int64, err error)
}

// refreshLag updates puchi_consumer_lag every LagInterval until ctx ends, in its
// own goroutine so that a slow handler (when lag matters most) does not stall it.
// It removes the group's series for partitions no longer assigned, and all of
// them when it returns.
func (c *Consumer) refreshLag(ctx context.Context, kc lagClient) {
	shown := map[[2]string]bool{} // topic, partition
	defer func() {
		for k := range shown {
			c.metrics.lag.DeleteLabelValues(c.cc.Group, k[0], k[1])
		}
	}()
	t := time.NewTicker(c.cc.LagInterval)
	defer t.Stop()
	for {
		now := c.updateLag(ctx, kc)
		for k := range shown {
			if !now[k] {
				c.metrics.lag.DeleteLabelValues(c.cc.Group, k[0], k[1])
			}
		}
		shown = now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// updateLag sets the lag of every assigned partition and returns the series set.
// The position is the next offset the consumer will fetch (the message in hand
// counts as consumed); before the first fetch of a partition it falls back to
// the committed offset, then to the low watermark (auto.offset.reset=earliest).
func (c *Consumer) updateLag(ctx context.Context, kc lagClient) map[[2]string]bool {
	out := map[[2]string]bool{}
	parts, err := kc.Assignment()
	if err != nil || len(parts) == 0 {
		return out
	}
	pos, err := kc.Position(parts)
	if err != nil {
		c.log.Debug("kafka: lag: position", "err", err)
		return out
	}
	var committed map[[2]string]int64 // fetched once, when first needed
	for _, p := range pos {
		if ctx.Err() != nil {
			return out
		}
		if p.Topic == nil {
			continue
		}
		k := [2]string{*p.Topic, strconv.Itoa(int(p.Partition))}
		low, high, err := kc.QueryWatermarkOffsets(*p.Topic, p.Partition, 2000)
		if err != nil {
			c.log.Debug("kafka: lag: watermarks", "topic", *p.Topic, "partition", p.Partition, "err", err)
			continue
		}
		off := int64(p.Offset)
		if off < 0 {
			if committed == nil {
				committed = map[[2]string]int64{}
				if cs, err := kc.Committed(parts, 2000); err == nil {
					for _, cp := range cs {
						if cp.Topic != nil && cp.Offset >= 0 {
							committed[[2]string{*cp.Topic, strconv.Itoa(int(cp.Partition))}] = int64(cp.Offset)
						}
					}
				}
			}
			off = low
			if co, ok := committed[k]; ok {
				off = co
			}
		}
		c.metrics.lag.WithLabelValues(c.cc.Group, k[0], k[1]).Set(float64(max(high-off, 0)))
		out[k] = true
	}
	return out
}
