package outbox

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricsInterval is the least time between two refreshes of the backlog gauges
// by [Relay.Run]; they are refreshed after a round once it has passed.
const MetricsInterval = time.Second

// relayMetrics are the collectors of one registry, shared by every relay
// registered on it (series are told apart by the service label).
type relayMetrics struct {
	backlog   *prometheus.GaugeVec
	oldest    *prometheus.GaugeVec
	parked    *prometheus.GaugeVec
	published *prometheus.CounterVec
}

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	m := &relayMetrics{
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "puchi_outbox_backlog",
			Help: "Outbox rows waiting to be published (unsent, not parked).",
		}, []string{"service"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "puchi_outbox_oldest_age_seconds",
			Help: "Age of the oldest outbox row waiting to be published; 0 when none waits.",
		}, []string{"service"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "puchi_outbox_parked",
			Help: "Outbox rows parked after repeated permanent failures; non-zero needs an operator (outbox.Retry).",
		}, []string{"service"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "puchi_outbox_published_total",
			Help: "Outbox rows delivered to Kafka and marked sent.",
		}, []string{"service"}),
	}
	var err error
	if m.backlog, err = registerOrExisting(reg, m.backlog); err != nil {
		return nil, err
	}
	if m.oldest, err = registerOrExisting(reg, m.oldest); err != nil {
		return nil, err
	}
	if m.parked, err = registerOrExisting(reg, m.parked); err != nil {
		return nil, err
	}
	if m.published, err = registerOrExisting(reg, m.published); err != nil {
		return nil, err
	}
	return m, nil
}

// registerOrExisting registers c, or returns the identical collector already
// registered on reg (several services of one process share a registry).
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

// refreshMetrics sets the backlog, oldest-age and parked gauges from the
// database (two cheap counts and one indexed lookup); a no-op without metrics.
func (r *Relay) refreshMetrics(ctx context.Context) {
	if r.metrics == nil {
		return
	}
	svc := r.db.Service()
	n, oldest, err := r.Backlog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.DebugContext(ctx, "outbox metrics: backlog", "err", err)
		}
		return
	}
	r.metrics.backlog.WithLabelValues(svc).Set(float64(n))
	r.metrics.oldest.WithLabelValues(svc).Set(oldest.Seconds())
	p, err := r.Parked(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.DebugContext(ctx, "outbox metrics: parked", "err", err)
		}
		return
	}
	r.metrics.parked.WithLabelValues(svc).Set(float64(p))
}

// countPublished adds n rows marked sent; a no-op without metrics.
func (r *Relay) countPublished(n int) {
	if r.metrics != nil && n > 0 {
		r.metrics.published.WithLabelValues(r.db.Service()).Add(float64(n))
	}
}
