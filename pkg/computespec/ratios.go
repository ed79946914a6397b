package computespec

import (
	"math"
)

// Ratios are allocation ratios: how far a host's capacity may be
// overcommitted (nova's cpu_allocation_ratio and friends). The agent
// announces its host's capacity and ratios in gossip; the scheduler places
// by them and the agent admits by them, both through FitsAt, so a
// placement the coordinator makes is one the host accepts.
type Ratios struct {
	VCPU float64 `json:"vcpu"`
	RAM  float64 `json:"ram"`
	Disk float64 `json:"disk"`
}

// DefaultRatios are nova's defaults: 16 vCPUs per core, no RAM or disk
// overcommit.
func DefaultRatios() Ratios { return Ratios{VCPU: 16, RAM: 1, Disk: 1} }

// MaxRatio bounds each ratio (and keeps its gossip encoding, in
// thousandths, small).
const MaxRatio = 1000

// Validate says which ratio is out of range; zero is allowed and means
// "not set" (see Or). field prefixes the names ("compute.allocation_ratios").
func (r Ratios) Validate(field string) error {
	for _, x := range []struct {
		name string
		v    float64
	}{{"vcpu", r.VCPU}, {"ram", r.RAM}, {"disk", r.Disk}} {
		if math.IsNaN(x.v) || x.v < 0 || x.v > MaxRatio {
			return fieldErr(field+"."+x.name, "%v is not a ratio between 0 (unset) and %d", x.v, MaxRatio)
		}
	}
	return nil
}

// Or returns r with each unset (zero) ratio taken from d.
func (r Ratios) Or(d Ratios) Ratios {
	pick := func(a, b float64) float64 {
		if a > 0 {
			return a
		}
		return b
	}
	return Ratios{VCPU: pick(r.VCPU, d.VCPU), RAM: pick(r.RAM, d.RAM), Disk: pick(r.Disk, d.Disk)}
}

// Room reports whether want more of one resource fits on a host of
// capacity with used already taken, overcommitted by ratio. Nothing asked
// always fits.
func Room(capacity, used, want int, ratio float64) bool {
	if want == 0 {
		return true
	}
	return float64(used+want) <= float64(capacity)*ratio
}

// FitsAt returns nil when want fits into c with used taken, each resource
// overcommitted by its ratio in r, or a *FieldError on the first flavor
// field that does not. The scheduler's resource filters and the agent's
// admission both decide by Room, at the same ratios.
func (c Capacity) FitsAt(used, want Capacity, r Ratios) error {
	left := func(capacity, used int, ratio float64) int {
		return max(int(math.Floor(float64(capacity)*ratio))-used, 0)
	}
	switch {
	case !Room(c.VCPUs, used.VCPUs, want.VCPUs, r.VCPU):
		return fieldErr("flavor.vcpus", "%d is over the host's %d left (%d vCPUs x ratio %g, %d in use)",
			want.VCPUs, left(c.VCPUs, used.VCPUs, r.VCPU), c.VCPUs, r.VCPU, used.VCPUs)
	case !Room(c.RAMMiB, used.RAMMiB, want.RAMMiB, r.RAM):
		return fieldErr("flavor.ram_mib", "%d MiB is over the host's %d MiB left (%d MiB x ratio %g, %d MiB in use)",
			want.RAMMiB, left(c.RAMMiB, used.RAMMiB, r.RAM), c.RAMMiB, r.RAM, used.RAMMiB)
	case !Room(c.DiskGiB, used.DiskGiB, want.DiskGiB, r.Disk):
		return fieldErr("flavor.disk_gib", "%d GiB is over the host's %d GiB left (%d GiB x ratio %g, %d GiB in use)",
			want.DiskGiB, left(c.DiskGiB, used.DiskGiB, r.Disk), c.DiskGiB, r.Disk, used.DiskGiB)
	}
	return nil
}

// Resources returns the flavor's vCPUs, RAM and disk as a Capacity.
func (f Flavor) Resources() Capacity {
	return Capacity{VCPUs: f.VCPUs, RAMMiB: f.RAMMiB, DiskGiB: f.DiskGiB}
}
