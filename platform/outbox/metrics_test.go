package outbox_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// The backlog and age gauges follow the unsent rows, published_total counts
// delivered rows and parked the rows given up on.
func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		var up atomic.Bool
		pub := &recorder{stopKey: true, fail: func(_, _ int, m kafka.Message) error {
			switch {
			case string(m.Value) == "poison":
				return errTooLarge
			case !up.Load():
				return errors.New("broker down")
			}
			return nil
		}}
		cfg := outbox.RelayConfig{PollInterval: 5 * time.Millisecond, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxAttempts: 1, Metrics: reg}
		r := outbox.NewRelay(d, pub, cfg, nil)
		// A second relay registering on the same registry shares the collectors.
		_ = outbox.NewRelay(d, pub, cfg, nil)
		svc := d.Service()
		gauge := func(name string) float64 {
			v, _ := gathered(t, reg, name, svc)
			return v
		}

		write(t, d, msg("u1", "a"), msg("u2", "b"), msg("u3", "poison"))
		time.Sleep(20 * time.Millisecond) // the oldest row ages
		run(t, r)
		eventually(t, "backlog 2 (the poison row parked)", func() bool {
			return gauge("puchi_outbox_backlog") == 2 && gauge("puchi_outbox_parked") == 1
		})
		if age := gauge("puchi_outbox_oldest_age_seconds"); age < 0.02 {
			t.Errorf("oldest age %v, want ≥ 20ms", age)
		}
		if v := gauge("puchi_outbox_published_total"); v != 0 {
			t.Errorf("published %v while the broker is down", v)
		}
		up.Store(true)
		eventually(t, "backlog drained", func() bool {
			return gauge("puchi_outbox_backlog") == 0 && gauge("puchi_outbox_oldest_age_seconds") == 0
		})
		if v := gauge("puchi_outbox_published_total"); v != 2 {
			t.Errorf("published_total = %v, want 2", v)
		}
		if n := testutil.CollectAndCount(reg, "puchi_outbox_backlog", "puchi_outbox_parked"); n != 2 {
			t.Errorf("%d series, want one per metric", n)
		}
	})
}

func gathered(t *testing.T, reg *prometheus.Registry, name, service string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "service" && lp.GetValue() == service {
					if m.Counter != nil {
						return m.GetCounter().GetValue(), true
					}
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}
