package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Context is one placement as filters and weighers see it: the request
// and, for a request in a server group, where the group's members are.
type Context struct {
	Req *Request
	// Policy is the group's policy ("" without a group); OnHost counts
	// the group's members (placed or claimed) per host.
	Policy string
	OnHost map[string]int
	// Now is when the placement runs (build failures age).
	Now time.Time
}

// Filter removes hosts that cannot take the request.
type Filter interface {
	// Reason completes "N hosts ..." for the hosts it removed, e.g.
	// "out of RAM" or "in another zone".
	Reason(c *Context) string
	// Pass reports whether the host can take the request.
	Pass(h *HostState, c *Context) bool
}

// StandardFilters are the filters in the order they run; a host is
// counted against the first one it fails.
func StandardFilters(r Ratios) []Filter {
	return []Filter{
		AliveFilter{}, ZoneFilter{}, AggregateFilter{}, ImageFilter{}, NeedsFilter{}, StorageFilter{},
		VCPUFilter{Ratio: r.VCPU}, RAMFilter{Ratio: r.RAM}, DiskFilter{Ratio: r.Disk},
		GroupFilter{},
	}
}

// AliveFilter passes hosts SWIM sees alive that nobody drained.
type AliveFilter struct{}

func (AliveFilter) Reason(*Context) string { return "drained or dead" }
func (AliveFilter) Pass(h *HostState, c *Context) bool {
	return h.Alive && !h.drained()
}

// ZoneFilter passes the hosts of the requested zone.
type ZoneFilter struct{}

func (ZoneFilter) Reason(*Context) string { return "in another zone" }
func (ZoneFilter) Pass(h *HostState, c *Context) bool {
	return c.Req.Zone == "" || h.Zone == c.Req.Zone
}

// aggregateScope is the extra-spec prefix nova's
// AggregateInstanceExtraSpecsFilter matches; unscoped keys match too.
const aggregateScope = "aggregate_instance_extra_specs:"

// AggregateFilter passes hosts in an aggregate whose metadata holds every
// extra spec of the flavor that is unscoped or scoped to aggregates (a
// metadata value may list several allowed values, comma separated).
type AggregateFilter struct{}

func (AggregateFilter) Reason(*Context) string { return "not in an aggregate matching the flavor" }
func (AggregateFilter) Pass(h *HostState, c *Context) bool {
	for k, want := range c.Req.ExtraSpecs {
		key, scoped := strings.CutPrefix(k, aggregateScope)
		if !scoped && strings.Contains(k, ":") {
			continue // another filter's scope ("hw:cpu_policy")
		}
		if !aggregatesHold(h.Aggregates, key, want) {
			return false
		}
	}
	return true
}

func aggregatesHold(aggs []*Aggregate, key, want string) bool {
	for _, a := range aggs {
		v, ok := a.Metadata[key]
		if !ok {
			continue
		}
		for _, one := range strings.Split(v, ",") {
			if strings.TrimSpace(one) == want {
				return true
			}
		}
	}
	return false
}

// ImageFilter passes hosts whose architecture and hypervisor match the
// image's properties; an unset property on either side matches.
type ImageFilter struct{}

func (ImageFilter) Reason(c *Context) string {
	return "of another architecture or hypervisor than the image"
}
func (ImageFilter) Pass(h *HostState, c *Context) bool {
	match := func(want, have string) bool { return want == "" || have == "" || want == have }
	return match(c.Req.Arch, h.Arch) && match(c.Req.Hypervisor, h.Hypervisor)
}

// NeedsFilter passes hosts that bridge every physical network the
// instance's networks use.
type NeedsFilter struct{}

func (NeedsFilter) Reason(c *Context) string {
	var want []string
	for _, p := range c.Req.Physnets {
		want = append(want, "physnet "+p)
	}
	return "without " + strings.Join(want, " or ")
}
func (NeedsFilter) Pass(h *HostState, c *Context) bool {
	for _, p := range c.Req.Physnets {
		if !slices.Contains(h.Physnets, p) {
			return false
		}
	}
	return true
}

// StorageFilter passes hosts configured for every storage backend the
// instance's disks live on: for an instance booting from RBD or with
// volumes, the Ceph pools of its root disk and volumes ("rbd:<pool>"), so
// that its qemu can open them there.
type StorageFilter struct{}

func (StorageFilter) Reason(c *Context) string {
	var pools, other []string
	for _, s := range c.Req.Storage {
		if p, ok := strings.CutPrefix(s, rbdBackend); ok {
			pools = append(pools, p)
		} else {
			other = append(other, s)
		}
	}
	var want []string
	switch len(pools) {
	case 0:
	case 1:
		want = append(want, "Ceph pool "+pools[0])
	default:
		want = append(want, "Ceph pools "+strings.Join(pools, ", "))
	}
	if len(other) > 0 {
		want = append(want, "storage "+strings.Join(other, ", "))
	}
	return "not configured for " + strings.Join(want, " and ")
}
func (StorageFilter) Pass(h *HostState, c *Context) bool {
	for _, s := range c.Req.Storage {
		if !slices.Contains(h.Storage, s) {
			return false
		}
	}
	return true
}

// rbdBackend starts a Ceph pool's backend name (storagespec.Backend; the
// scheduler imports nothing of the API's storage rules).
const rbdBackend = "rbd:"

// ratio is the host's announced ratio, or def when it announces none.
func ratio(announced, def float64) float64 {
	if announced > 0 {
		return announced
	}
	return def
}

// VCPUFilter passes hosts with room for the vCPUs, overcommitted by the
// host's announced ratio, or Ratio when it announces none.
type VCPUFilter struct{ Ratio float64 }

func (VCPUFilter) Reason(*Context) string { return "out of vCPUs" }
func (f VCPUFilter) Pass(h *HostState, c *Context) bool {
	return computespec.Room(h.Capacity.VCPUs, h.Used.VCPUs, c.Req.Resources.VCPUs, ratio(h.Ratios.VCPU, f.Ratio))
}

// RAMFilter passes hosts with room for the RAM, like VCPUFilter.
type RAMFilter struct{ Ratio float64 }

func (RAMFilter) Reason(*Context) string { return "out of RAM" }
func (f RAMFilter) Pass(h *HostState, c *Context) bool {
	return computespec.Room(h.Capacity.RAMMiB, h.Used.RAMMiB, c.Req.Resources.RAMMiB, ratio(h.Ratios.RAM, f.Ratio))
}

// DiskFilter passes hosts with room for the disk, like VCPUFilter.
type DiskFilter struct{ Ratio float64 }

func (DiskFilter) Reason(*Context) string { return "out of disk" }
func (f DiskFilter) Pass(h *HostState, c *Context) bool {
	return computespec.Room(h.Capacity.DiskGiB, h.Used.DiskGiB, c.Req.Resources.DiskGiB, ratio(h.Ratios.Disk, f.Ratio))
}

// GroupFilter keeps a group's hard policy: anti-affinity passes hosts
// without a member, affinity passes the host of the members (any host for
// the first member). Soft policies are weighers.
type GroupFilter struct{}

func (GroupFilter) Reason(c *Context) string {
	if c.Policy == Affinity {
		return fmt.Sprintf("not the host of affinity group %s", groupName(c.Req.Group))
	}
	return fmt.Sprintf("already holding a member of anti-affinity group %s", groupName(c.Req.Group))
}
func (GroupFilter) Pass(h *HostState, c *Context) bool {
	switch c.Policy {
	case AntiAffinity:
		return c.OnHost[h.Name] == 0
	case Affinity:
		return len(c.OnHost) == 0 || c.OnHost[h.Name] > 0
	}
	return true
}

// groupName drops the project from a group key for messages.
func groupName(key string) string {
	_, name, ok := strings.Cut(key, "/")
	if !ok {
		return key
	}
	return name
}
