package cachedvol

import (
	"context"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/pkg/api"
)

// Status is one volume's state on this host, as the agent reports it.
type Status struct {
	Volume string       `json:"volume"`
	Mode   dmcache.Mode `json:"mode"`
	Phase  string       `json:"phase"`
	// Stats is the cache target's state now (zero when it could not be
	// read; StatsError then says why).
	Stats      dmcache.Stats `json:"stats"`
	StatsError string        `json:"stats_error,omitempty"`
	// DirtyBytes is the data only this host holds: read now, or the last
	// count recorded when the cache cannot be read. It is what the
	// coordinator must know of a host it lost.
	DirtyBytes int64 `json:"dirty_bytes"`
	// AtRisk is set when a writeback cache failed with dirty data: the
	// volume takes no writes and DirtyBytes may be lost with the device.
	AtRisk   bool `json:"at_risk,omitempty"`
	Degraded bool `json:"degraded,omitempty"`
	// Flush is the flush before its detach (or the write-back before
	// its unplug): under way, or the last one that failed.
	Flush *Flush `json:"flush,omitempty"`
}

// Report is s as the host's report carries it (volume_caches), for image
// (pool/name): the coordinator shows a flush in it as the volume's status.
func (s Status) Report(image string) api.VolumeCacheReport {
	r := api.VolumeCacheReport{
		Image: image, Mode: string(s.Mode), Phase: s.Phase, DirtyBytes: s.DirtyBytes,
		AtRisk: s.AtRisk, Degraded: s.Degraded, Error: strings.TrimSpace(s.Stats.Error + " " + s.StatsError),
		BlockBytes: s.Stats.BlockBytes, Blocks: s.Stats.Blocks, DirtyBlocks: s.Stats.Dirty,
		ReadHits: s.Stats.ReadHits, ReadMisses: s.Stats.ReadMisses, WriteHits: s.Stats.WriteHits, WriteMisses: s.Stats.WriteMisses,
	}
	if f := s.Flush; f != nil {
		r.Flush = &api.VolumeFlush{DirtyBlocks: f.Dirty, FirstBlocks: f.First, Started: f.Started, Deadline: f.Deadline,
			Message: f.Message(), Error: f.Error}
	}
	return r
}

// Statuses reads every recorded volume's state. It takes no lock: it only
// reads, and runs beside a long flush.
func (m *Manager) Statuses(ctx context.Context) ([]Status, error) {
	recs, err := m.j().all()
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(recs))
	for _, r := range recs {
		s := Status{Volume: r.Volume, Mode: r.Mode, Phase: r.Phase, DirtyBytes: r.LastDirty, Degraded: r.Degraded}
		if f, ok := m.flushOf(r.Volume); ok && (r.Phase == PhaseDetaching || f.BeforeUnplug) {
			s.Flush = &f
		}
		st, err := m.Stats(ctx, r.Volume)
		if err != nil {
			s.StatsError = err.Error()
		} else {
			if st.Error == "" {
				st.Error = r.CacheError
			}
			s.Stats = st
			if st.Mode != dmcache.None || r.Mode == dmcache.None {
				s.DirtyBytes = st.DirtyBytes()
			}
			s.AtRisk = st.Mode == dmcache.Writeback && st.Error != "" && st.Dirty > 0
		}
		out = append(out, s)
	}
	return out, nil
}

// Collector exports each volume's cache state as Prometheus metrics.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

var (
	labels   = []string{"volume", "mode"}
	descs    = map[string]*prometheus.Desc{}
	counters = []struct{ name, help string }{
		{"reads", "Read requests the cache target saw."},
		{"writes", "Write requests the cache target saw."},
		{"read_hits", "Reads served from the cache."},
		{"read_misses", "Reads served from Ceph."},
		{"write_hits", "Writes to blocks already in the cache."},
		{"write_misses", "Writes to blocks not in the cache."},
	}
	gauges = []struct{ name, help string }{
		{"blocks", "Blocks of the volume's cache."},
		{"used_blocks", "Blocks of the cache in use."},
		{"dirty_blocks", "Blocks only this host holds, not yet written to Ceph."},
		{"dirty_bytes", "Bytes only this host holds, not yet written to Ceph (the last count when the cache cannot be read)."},
		{"failed", "1 when the cache target reports an error."},
		{"at_risk", "1 when a failed writeback cache holds dirty data."},
		{"flushing", "1 while the volume is being flushed and detached."},
	}
)

func init() {
	for _, c := range counters {
		descs[c.name] = prometheus.NewDesc("strata_volume_cache_"+c.name+"_total", c.help, labels, nil)
	}
	for _, g := range gauges {
		descs[g.name] = prometheus.NewDesc("strata_volume_cache_"+g.name, g.help, labels, nil)
	}
}

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	sts, err := c.m.Statuses(context.Background())
	if err != nil {
		c.m.log().Error("volume cache metrics", "err", err)
		return
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, s := range sts {
		if s.Mode == dmcache.None {
			continue
		}
		lv := []string{s.Volume, string(s.Mode)}
		st := s.Stats
		for name, v := range map[string]int64{"reads": st.Reads, "writes": st.Writes, "read_hits": st.ReadHits,
			"read_misses": st.ReadMisses, "write_hits": st.WriteHits, "write_misses": st.WriteMisses} {
			ch <- prometheus.MustNewConstMetric(descs[name], prometheus.CounterValue, float64(v), lv...)
		}
		for name, v := range map[string]float64{"blocks": float64(st.Blocks), "used_blocks": float64(st.Used),
			"dirty_blocks": float64(st.Dirty), "dirty_bytes": float64(s.DirtyBytes),
			"failed": b(st.Error != ""), "at_risk": b(s.AtRisk), "flushing": b(s.Phase == PhaseDetaching || s.Flush != nil && s.Flush.Error == "")} {
			ch <- prometheus.MustNewConstMetric(descs[name], prometheus.GaugeValue, v, lv...)
		}
	}
}
