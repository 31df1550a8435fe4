package telemetry

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is a Prometheus registry for one service, pre-loaded with the Go
// runtime and process collectors. Components register their collectors on it
// (it is a prometheus.Registerer) and the admin server serves [Metrics.Handler]
// on /metrics. Safe for concurrent use.
type Metrics struct {
	*prometheus.Registry
}

// NewMetrics returns a registry with the Go and process collectors.
// Each service gets its own, so `puchi run` can host several services
// without name clashes.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Metrics{Registry: r}
}

// Handler serves the registry in the Prometheus exposition format. Errors
// while gathering are reported in the response, not hidden.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		Registry:          m.Registry, // exposes promhttp_metric_handler_errors_total
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	})
}
