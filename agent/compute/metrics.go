package compute

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the driver's Prometheus metrics, read at each scrape:
// whether libvirtd answered the last listing, and how often a working
// connection was lost.
func (d *Driver) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "strata_agent_libvirt_connected", Help: "1 when libvirtd answered the agent's last listing, 0 while it cannot be reached."},
			func() float64 {
				d.mu.Lock()
				defer d.mu.Unlock()
				if d.connected {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "strata_agent_libvirt_disconnects_total", Help: "Times a working libvirtd connection was lost."},
			func() float64 { d.mu.Lock(); defer d.mu.Unlock(); return float64(d.disconnects) }),
	}
}
