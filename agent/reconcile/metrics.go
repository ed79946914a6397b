package reconcile

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	applied  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_agent_reconcile_total", Help: "Reconcile runs by subsystem and result.",
		}, []string{"subsystem", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_agent_reconcile_seconds", Help: "Reconcile run time by subsystem.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"subsystem"}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "strata_agent_applied_epoch", Help: "Cluster epoch of the last plan every subsystem converged on.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.runs, m.duration, m.applied)
	}
	return m
}

func (m *metrics) observe(subsystem string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.runs.WithLabelValues(subsystem, result).Inc()
	m.duration.WithLabelValues(subsystem).Observe(d.Seconds())
}
