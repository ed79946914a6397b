// Package scheduler places instances on hosts: nova-scheduler's filters
// and weighers over an in-memory state indexed by host, with Nomad's shape
// (feasibility, then ranking of a bounded sample) and AllocMetric-style
// reasons when nothing fits.
//
// The package is pure: it imports no store, HTTP or gossip code. The
// coordinator feeds it hosts from gossip membership and placements from
// commits; nothing here scans the store per request.
//
// Claims are optimistic (Omega's shared state, Placement's generations):
// Place ranks hosts under a read lock, then takes the write lock only to
// verify the chosen host still fits and still keeps the group's hard
// policy, and reserves it; a host that changed under it is a conflict and
// the placement retries. A claim holds its resources until the commit that
// records the instance confirms it, or the commit fails and releases it.
package scheduler

import (
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Resources is an amount of vCPUs, RAM and disk: the one capacity type the
// agent announces, the API shows and the scheduler counts.
type Resources = api.Capacity

// Host is what the scheduler knows of one host: liveness and capacity from
// gossip, drain from the operator, zone and properties from the agent.
type Host struct {
	Name    string
	Alive   bool
	Drained bool
	Zone    string
	// Capacity is what the host offers after its own reservations.
	Capacity Resources
	// Ratios are the allocation ratios the host's agent announces and
	// admits instances by; a zero ratio (an agent that announces none)
	// takes the scheduler's Config.Ratios.
	Ratios Ratios
	// Arch ("x86_64", "aarch64") and Hypervisor ("kvm", "qemu") are
	// matched against image properties; empty means unknown and matches.
	Arch       string
	Hypervisor string
	// Physnets are the physical networks the host bridges.
	Physnets []string
	// Storage are the storage backends the host is configured for:
	// "rbd:<pool>" per Ceph pool.
	Storage []string
	// Aggregates are the aggregates the host's agent config puts it in:
	// the host is a member of each as if the aggregate listed it, and
	// takes the aggregate's metadata from the API (a name no aggregate
	// has yet carries no metadata until one is made).
	Aggregates []string
}

// Group policies of a server group.
const (
	Affinity         = "affinity"
	AntiAffinity     = "anti-affinity"
	SoftAffinity     = "soft-affinity"
	SoftAntiAffinity = "soft-anti-affinity"
)

// Policies lists every group policy, for validation.
var Policies = []string{Affinity, AntiAffinity, SoftAffinity, SoftAntiAffinity}

// Request is one instance asking for a host.
type Request struct {
	// Instance is a unique key ("project/name"); a claim is held under it.
	Instance  string
	Resources Resources
	// ExtraSpecs are the flavor's extra specs, matched against aggregate
	// metadata (see AggregateFilter).
	ExtraSpecs map[string]string
	// Zone, when set, restricts the request to hosts of that zone.
	Zone string
	// Group is the server group key ("project/group"), or empty.
	Group string
	// Arch and Hypervisor are the image's properties; empty matches any.
	Arch, Hypervisor string
	// Physnets and Storage are what the instance needs of its host:
	// physical networks, and storage backends ("rbd:<pool>" for each
	// pool its root disk and volumes live in).
	Physnets []string
	Storage  []string
	// Host, when set, is the only host considered (an admin's choice).
	Host string
	// Avoid is a host the request must not land on (a migration's source).
	Avoid string
	// Failed are hosts where the instance's build failed; it is moved
	// off them, never back.
	Failed []string
}

// Ratios are the allocation ratios: how far a host's capacity may be
// overcommitted (nova's cpu_allocation_ratio and friends). Each agent
// announces its own; the agent admits and the scheduler places by the
// same rule (computespec.Capacity.FitsAt).
type Ratios = computespec.Ratios

// DefaultRatios are nova's defaults: 16 vCPUs per core, no RAM or disk
// overcommit.
func DefaultRatios() Ratios { return computespec.DefaultRatios() }

// Config tunes a scheduler.
type Config struct {
	// Ratios apply to hosts whose agent announces none.
	Ratios Ratios
	// Spread weighs free RAM and vCPUs up (spread); false packs.
	Spread bool
	// RAMWeight, CPUWeight, GroupWeight and FailureWeight multiply the
	// normalised weigher scores (nova's *_weight_multiplier).
	RAMWeight, CPUWeight, GroupWeight, FailureWeight float64
	// Sample is how many feasible hosts are ranked per placement (the
	// scan starts at a random host and stops when it has that many); 0
	// ranks every feasible host.
	Sample int
	// Retries bounds the attempts when a chosen host changed under a claim.
	Retries int
}

// DefaultConfig spreads, weighs RAM first, ranks a sample of 32 hosts.
func DefaultConfig() Config {
	return Config{Ratios: DefaultRatios(), Spread: true, RAMWeight: 1, CPUWeight: 0.5,
		GroupWeight: 2, FailureWeight: 3, Sample: 32, Retries: 8}
}
