package scheduler

// Weigher scores a feasible host; the scheduler normalises each weigher's
// scores over the ranked hosts to [0, 1] and sums them times the
// weigher's multiplier, as nova does, so multipliers compare across
// weighers whatever their units.
type Weigher interface {
	Weigh(h *HostState, c *Context) float64
	Multiplier() float64
}

// StandardWeighers are RAM and vCPU spread (or pack), the soft group
// policies and recent build failures.
func StandardWeighers(cfg Config) []Weigher {
	sign := 1.0
	if !cfg.Spread {
		sign = -1
	}
	return []Weigher{
		RAMWeigher{Mult: sign * cfg.RAMWeight, Ratio: cfg.Ratios.RAM},
		CPUWeigher{Mult: sign * cfg.CPUWeight, Ratio: cfg.Ratios.VCPU},
		GroupWeigher{Mult: cfg.GroupWeight},
		FailureWeigher{Mult: cfg.FailureWeight},
	}
}

// RAMWeigher scores free RAM: a positive multiplier spreads, a negative
// one packs.
type RAMWeigher struct{ Mult, Ratio float64 }

func (w RAMWeigher) Multiplier() float64 { return w.Mult }
func (w RAMWeigher) Weigh(h *HostState, c *Context) float64 {
	return float64(h.Capacity.RAMMiB)*ratio(h.Ratios.RAM, w.Ratio) - float64(h.Used.RAMMiB)
}

// CPUWeigher scores free vCPUs, like RAMWeigher.
type CPUWeigher struct{ Mult, Ratio float64 }

func (w CPUWeigher) Multiplier() float64 { return w.Mult }
func (w CPUWeigher) Weigh(h *HostState, c *Context) float64 {
	return float64(h.Capacity.VCPUs)*ratio(h.Ratios.VCPU, w.Ratio) - float64(h.Used.VCPUs)
}

// GroupWeigher keeps the soft policies: members of a soft-affinity group
// draw the next one to their hosts, members of a soft-anti-affinity group
// push it away.
type GroupWeigher struct{ Mult float64 }

func (w GroupWeigher) Multiplier() float64 { return w.Mult }
func (w GroupWeigher) Weigh(h *HostState, c *Context) float64 {
	switch c.Policy {
	case SoftAffinity:
		return float64(c.OnHost[h.Name])
	case SoftAntiAffinity:
		return -float64(c.OnHost[h.Name])
	}
	return 0
}

// FailureWeigher sinks hosts whose recent builds failed.
type FailureWeigher struct{ Mult float64 }

func (w FailureWeigher) Multiplier() float64 { return w.Mult }
func (w FailureWeigher) Weigh(h *HostState, c *Context) float64 {
	return -float64(len(recentFailures(h.Failures, c.Now)))
}
