package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	planSends *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_coordinator_http_requests_total", Help: "API requests by method and status code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_coordinator_http_request_seconds", Help: "API request latency (plan long-polls included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"method"}),
		planSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_coordinator_plans_sent_total", Help: "Plans sent to agents, by kind (delta or full).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.planSends)
	}
	return m
}

func (m *metrics) observe(r *http.Request, code int, d time.Duration) {
	m.requests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(r.Method).Observe(d.Seconds())
}

func (m *metrics) plans(full bool) {
	kind := "delta"
	if full {
		kind = "full"
	}
	m.planSends.WithLabelValues(kind).Inc()
}
