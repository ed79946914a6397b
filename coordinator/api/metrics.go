package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	longPolls *prometheus.HistogramVec
	planSends *prometheus.CounterVec
}

// planRoute is the agents' long-poll: its latency is mostly waiting for
// the next commit, so it has its own histogram and never skews the API's.
const planRoute = "GET /v1/hosts/{host}/plan"

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_coordinator_http_requests_total", Help: "API requests by route (the mux pattern), method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_coordinator_http_request_seconds", Help: "API request latency by route; plan long-polls are in strata_coordinator_plan_poll_seconds.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "method"}),
		longPolls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "strata_coordinator_plan_poll_seconds", Help: "How long agents' plan long-polls were held, by status code.",
			Buckets: []float64{0.01, 0.1, 1, 5, 15, 30, 60, 120},
		}, []string{"code"}),
		planSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strata_coordinator_plans_sent_total", Help: "Plans sent to agents, by kind (delta or full).",
		}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.longPolls, m.planSends)
	}
	return m
}

func (m *metrics) observe(r *http.Request, code int, d time.Duration) {
	route := r.Pattern
	if route == "" || route == "/" {
		route = "unmatched" // one label for every unknown path, never the path itself
	}
	m.requests.WithLabelValues(route, r.Method, strconv.Itoa(code)).Inc()
	if route == planRoute {
		m.longPolls.WithLabelValues(strconv.Itoa(code)).Observe(d.Seconds())
		return
	}
	m.latency.WithLabelValues(route, r.Method).Observe(d.Seconds())
}

func (m *metrics) plans(full bool) {
	kind := "delta"
	if full {
		kind = "full"
	}
	m.planSends.WithLabelValues(kind).Inc()
}

// clusterCollector reads the fleet's health at scrape time: hosts by
// gossip state, drained and unconverged hosts, how far the slowest live
// host lags the epoch, the store's size and the gossip pool's size. It
// reads gossip, the reports and the host configs; never a scan of every
// resource, so a scrape stays cheap on a large store.
type clusterCollector struct {
	store *store.Store
	hosts HostSource
	// need is the epoch a host must have applied: the last that changed
	// its plan.
	need func(string) uint64

	hostsDesc, drained, unconverged, lag, size, members, epoch *prometheus.Desc
}

func newClusterCollector(st *store.Store, hosts HostSource, need func(string) uint64) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("strata_coordinator_"+name, help, labels, nil)
	}
	return &clusterCollector{
		store: st, hosts: hosts, need: need,
		hostsDesc:   d("hosts", "Hosts by gossip state (alive, suspect, dead, left).", "state"),
		drained:     d("hosts_drained", "Hosts an operator drained."),
		unconverged: d("hosts_unconverged", "Live hosts that have not applied the last epoch that changed their plan."),
		lag:         d("epoch_lag", "Epochs the slowest live host is behind the last epoch that changed its plan."),
		size:        d("store_bytes", "Size of the desired-state store."),
		members:     d("gossip_members", "Members in the gossip pool, this coordinator included."),
		epoch:       d("epoch", "Current cluster epoch."),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hostsDesc, c.drained, c.unconverged, c.lag, c.size, c.members, c.epoch} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	epoch := c.store.Epoch()
	ch <- prometheus.MustNewConstMetric(c.epoch, prometheus.GaugeValue, float64(epoch))
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(c.store.Size()))
	var hosts []api.Host
	if c.hosts != nil {
		hosts = c.hosts.Hosts()
	}
	ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(len(hosts)))
	reports, _ := c.store.Reports()
	byState := map[string]int{api.StateAlive: 0, api.StateSuspect: 0, api.StateDead: 0, api.StateLeft: 0}
	unconverged, lag := 0, uint64(0)
	for _, h := range hosts {
		byState[h.State]++
		if h.State != api.StateAlive && h.State != api.StateSuspect {
			continue
		}
		applied := h.AppliedEpoch
		if rep, ok := reports[h.Name]; ok && rep.AppliedEpoch > applied {
			applied = rep.AppliedEpoch
		}
		want := min(c.need(h.Name), epoch)
		if applied < want {
			unconverged++
			lag = max(lag, want-applied)
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(c.hostsDesc, prometheus.GaugeValue, float64(n), state)
	}
	drained := 0
	_ = c.store.View(func(tx *store.Tx) error {
		cfgs, err := tx.List("hostconfig", "", false)
		for _, hc := range cfgs {
			if registry.HostConfig(hc).Drained {
				drained++
			}
		}
		return err
	})
	ch <- prometheus.MustNewConstMetric(c.drained, prometheus.GaugeValue, float64(drained))
	ch <- prometheus.MustNewConstMetric(c.unconverged, prometheus.GaugeValue, float64(unconverged))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(lag))
}
