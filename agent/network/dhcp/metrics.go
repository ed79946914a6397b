package dhcp

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the driver's Prometheus metrics, read from its counters
// at each scrape: the supervisor's restarts by reason (a dnsmasq that died,
// or one that was alive but hung) and how many dnsmasq it supervises.
func (d *Driver) Collectors() []prometheus.Collector {
	const restarts, help = "strata_agent_dnsmasq_restarts_total", "dnsmasq processes the supervisor restarted, by reason (died: the process exited; hung: it stopped answering DNS probes)."
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: restarts, Help: help, ConstLabels: prometheus.Labels{"reason": "died"}},
			func() float64 { c := d.Counters(); return float64(c.Restarts - c.Hung) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: restarts, Help: help, ConstLabels: prometheus.Labels{"reason": "hung"}},
			func() float64 { return float64(d.hung.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_agent_dnsmasq_processes", Help: "dnsmasq processes the agent supervises (one per network with DHCP on this host)."},
			func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(len(d.runs)) }),
	}
}
