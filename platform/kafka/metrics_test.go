package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// metricSum gathers reg and sums the values of name's series whose labels
// include want (counter, gauge, or a histogram's sample count).
func metricSum(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (sum float64, found bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				if !hasLabel(m, k, v) {
					continue series
				}
			}
			found = true
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, found
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == k && lp.GetValue() == v {
			return true
		}
	}
	return false
}

// The outcome counters, the handler histogram and the DLQ counter move, and two
// consumers of different groups share one registry.
func TestConsumerMetricsCountOutcomes(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("metrics")
	kafkatest.EnsureTopics(t, cfg, topic)
	reg := prometheus.NewRegistry()
	g1, g2 := unique("metrics-group"), unique("metrics-group")

	kafkatest.Produce(t, cfg,
		kafkatest.Event(t, topic, "u1", "ok"),
		kafkatest.Event(t, topic, "u1", "flaky"),
		kafkatest.Event(t, topic, "u1", "poison"))
	var flaky int
	h := func(_ context.Context, m *kafka.Message) error {
		switch kafkatest.Text(t, *m) {
		case "flaky":
			if flaky++; flaky == 1 {
				return errors.New("try again")
			}
		case "poison":
			return kafka.Permanent(errors.New("never"))
		}
		return nil
	}
	c1, _ := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: g1, Topics: []string{topic}, Backoff: time.Millisecond, Metrics: reg}, h)
	var seen2 collector
	c2, _ := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: g2, Topics: []string{topic}, Metrics: reg}, seen2.handle)
	kafkatest.WaitFor(t, "both groups done", func() bool {
		return c1.Stats().Processed == 2 && c1.Stats().DeadLettered == 1 && c2.Stats().Processed == 3
	})

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"puchi_consumer_messages_total", map[string]string{"group": g1, "topic": topic, "outcome": kafka.OutcomeOK}, 2},
		{"puchi_consumer_messages_total", map[string]string{"group": g1, "topic": topic, "outcome": kafka.OutcomeRetried}, 1},
		{"puchi_consumer_messages_total", map[string]string{"group": g1, "topic": topic, "outcome": kafka.OutcomeDeadLettered}, 1},
		{"puchi_dlq_messages_total", map[string]string{"group": g1}, 1},
		{"puchi_consumer_handler_seconds", map[string]string{"group": g1, "topic": topic}, 4}, // ok, flaky twice, poison
		{"puchi_consumer_messages_total", map[string]string{"group": g2, "topic": topic, "outcome": kafka.OutcomeOK}, 3},
		{"puchi_consumer_handler_seconds", map[string]string{"group": g2, "topic": topic}, 3},
	} {
		if got, _ := metricSum(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if _, found := metricSum(t, reg, "puchi_dlq_messages_total", map[string]string{"group": g2}); found {
		t.Errorf("group %s has a DLQ series without dead letters", g2)
	}
	if n := testutil.CollectAndCount(reg, "puchi_consumer_messages_total"); n != 4 {
		t.Errorf("%d puchi_consumer_messages_total series, want 4", n)
	}
}

// puchi_consumer_lag is the high watermark minus the position: with N messages
// produced and the handler stuck on message k+1 (in hand, so consumed), it
// shows N-k-1; once the handler is released it drops to 0.
func TestConsumerLagGauge(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Start(t)
	topic := unique("lag")
	group := unique("lag-group")
	kafkatest.EnsureTopics(t, cfg, topic)
	const n, k = 10, 4
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafkatest.Event(t, topic, "u1", "m") // one key: one partition
	}
	kafkatest.Produce(t, cfg, msgs...)

	reg := prometheus.NewRegistry()
	release := make(chan struct{})
	var handled collector
	c, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}, Metrics: reg, LagInterval: 20 * time.Millisecond},
		func(ctx context.Context, m *kafka.Message) error {
			if handled.len() == k {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return handled.handle(ctx, m)
		})
	lag := func() float64 {
		v, _ := metricSum(t, reg, "puchi_consumer_lag", map[string]string{"group": group, "topic": topic})
		return v
	}
	kafkatest.WaitFor(t, "lag = remaining", func() bool { return handled.len() == k && lag() == n-k-1 })
	close(release)
	kafkatest.WaitFor(t, "lag = 0", func() bool { return c.Stats().Processed == n && lag() == 0 })
	stop()
	if _, found := metricSum(t, reg, "puchi_consumer_lag", map[string]string{"group": group}); found {
		t.Error("lag series left after the consumer stopped")
	}
}
