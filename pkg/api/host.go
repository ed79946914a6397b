package api

import (
	"time"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Liveness states of a gossip member, as memberlist's SWIM sees them.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
	// StateUnknown is a host that reported once but is not in the
	// coordinator's gossip view.
	StateUnknown = "unknown"
)

// Capacity is an amount of vCPUs, RAM and disk: what a host offers after
// its reservations, what its instances use, what a flavor asks. It is the
// one capacity type of the agent, the API and the scheduler.
type Capacity = computespec.Capacity

// Host is the coordinator's view of one agent: liveness and meta from gossip,
// the rest from the agent's last status report.
type Host struct {
	Name       string    `json:"name"`
	Addr       string    `json:"addr"`
	State      string    `json:"state"`
	StateSince time.Time `json:"state_since"`
	Zone       string    `json:"zone,omitempty"`
	Aggregates []string  `json:"aggregates,omitempty"`
	VTEP       string    `json:"vtep,omitempty"`
	Capacity   Capacity  `json:"capacity"`
	// AllocationRatios are the overcommit ratios the agent admits
	// instances by and the scheduler places by (zero: none announced,
	// the coordinator's apply).
	AllocationRatios computespec.Ratios `json:"allocation_ratios"`
	AppliedEpoch     uint64             `json:"applied_epoch"`
	Drained          bool               `json:"drained"`
	// Arch and Physnets come from the agent (gossip meta), for placement.
	Arch     string   `json:"arch,omitempty"`
	Physnets []string `json:"physnets,omitempty"`
	// Hypervisor is the domain type its instances run as (kvm, qemu).
	Hypervisor string `json:"hypervisor,omitempty"`
	// Storage are the storage backends the agent is configured for
	// ("rbd:<pool>"), for placement.
	Storage []string `json:"storage,omitempty"`
	// Reason is why an operator drained the host.
	Reason string      `json:"reason,omitempty"`
	Report *HostReport `json:"report,omitempty"`
	// Failing are the resources this host reports it cannot apply.
	Failing []ResourceReport `json:"failing,omitempty"`
	// Resources counts the resources placed on this host (ports,
	// instances, routers, DHCP of networks).
	Resources int `json:"resources"`
}

// SubsystemStatus is the outcome of one reconciler's latest run.
type SubsystemStatus struct {
	Name        string    `json:"name"`
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	Epoch       uint64    `json:"epoch"`
	LastAttempt time.Time `json:"last_attempt"`
	LastSuccess time.Time `json:"last_success,omitempty"`
	Failures    int       `json:"failures"`
}

// HostReport is what an agent posts to /v1/hosts/{host}/status.
type HostReport struct {
	Host         string            `json:"host"`
	AppliedEpoch uint64            `json:"applied_epoch"`
	PlanEpoch    uint64            `json:"plan_epoch"`
	FullSyncs    uint64            `json:"full_syncs"`
	DeltaSyncs   uint64            `json:"delta_syncs"`
	Version      string            `json:"version,omitempty"`
	Subsystems   []SubsystemStatus `json:"subsystems,omitempty"`
	Resources    []ResourceReport  `json:"resources,omitempty"`
	// Compute is the compute subsystem's view of the host, when it runs.
	Compute *ComputeHost `json:"compute,omitempty"`
	// Network is the network subsystem's view of the host, when it runs.
	Network *NetworkHost `json:"network,omitempty"`
	// Storage is what the host's Ceph clients use (nil without Ceph).
	Storage *StorageHost `json:"storage,omitempty"`
	// Physnets are the physical networks the host bridges (its config's
	// network.physical_networks), sorted; [] for none, nil when the agent
	// does not say. Routers on an external network go only to hosts that
	// bridge its physical network.
	Physnets []string `json:"physnets"`
	// Processes are the children the agent supervises (dnsmasq), with
	// the restarts its liveness checks made.
	Processes []SupervisedProcess `json:"processes,omitempty"`
	// VolumeCaches are the host's krbd volumes and their caches. The
	// dirty bytes are what only this host holds (the last count when the
	// cache cannot be read): the coordinator keeps the last report of a
	// host it lost, and with it what that host held.
	VolumeCaches []VolumeCacheReport `json:"volume_caches,omitempty"`
	// StorageController is true when the host runs the storage
	// controller: it reports on every volume and snapshot.
	StorageController bool      `json:"storage_controller,omitempty"`
	Reported          time.Time `json:"reported"`
}

// VolumeCacheReport is one krbd volume on its host.
type VolumeCacheReport struct {
	Image string `json:"image"` // pool/image
	Mode  string `json:"mode"`  // none, writeback or writethrough
	Phase string `json:"phase"` // attaching, attached or detaching
	// DirtyBytes is the data only this host holds, not yet in Ceph.
	DirtyBytes int64 `json:"dirty_bytes"`
	// AtRisk: the writeback cache failed holding DirtyBytes; the volume
	// takes no writes. Degraded: the writethrough cache failed and the
	// volume runs uncached (nothing lost).
	AtRisk   bool   `json:"at_risk,omitempty"`
	Degraded bool   `json:"degraded,omitempty"`
	Error    string `json:"error,omitempty"`
	// Hit and miss counts and the cache's size, in blocks of BlockBytes.
	BlockBytes  int64 `json:"block_bytes,omitempty"`
	Blocks      int64 `json:"blocks,omitempty"`
	DirtyBlocks int64 `json:"dirty_blocks"`
	ReadHits    int64 `json:"read_hits,omitempty"`
	ReadMisses  int64 `json:"read_misses,omitempty"`
	WriteHits   int64 `json:"write_hits,omitempty"`
	WriteMisses int64 `json:"write_misses,omitempty"`
	// Flush is the flush of the cache before the host lets the image go
	// (a detach, the instance's deletion or move): under way, or the last
	// one that failed; the coordinator shows it as the volume's status.
	Flush *VolumeFlush `json:"flush,omitempty"`
}

// VolumeFlush is a krbd volume's flush on its host: DirtyBlocks left of
// FirstBlocks when it began. Error is set when it failed (ran out its
// deadline, or the cache failed): the volume stays mapped there with its
// cache, nothing dropped.
type VolumeFlush struct {
	DirtyBlocks int64     `json:"dirty_blocks"`
	FirstBlocks int64     `json:"first_blocks"`
	Started     time.Time `json:"started"`
	Deadline    time.Time `json:"deadline"`
	Message     string    `json:"message"`
	Error       string    `json:"error,omitempty"`
}

// NetworkHost is how a host carries tenant networks.
type NetworkHost struct {
	L2Driver string `json:"l2_driver"` // "linuxbridge" or "ovs"
	// Datapath is the OVS datapath: "system" (kernel) or "netdev"
	// (userspace, where the kernel has no openvswitch module).
	Datapath       string `json:"datapath,omitempty"`
	DatapathReason string `json:"datapath_reason,omitempty"`
	FlowGeneration uint32 `json:"flow_generation,omitempty"`
	FlowRestores   int64  `json:"flow_restores,omitempty"` // flow tables put back after an ovs-vswitchd restart
}

// SupervisedProcess is one child the agent watches: restarted when it
// exits or stops answering its liveness probe.
type SupervisedProcess struct {
	Name          string    `json:"name"`
	PID           int       `json:"pid,omitempty"` // 0: not running now
	Restarts      int       `json:"restarts"`
	LastRestart   time.Time `json:"last_restart,omitzero"`
	LastReason    string    `json:"last_reason,omitempty"` // "exited", "hung: no DNS answer to 3 probes"
	ProbeFailures int       `json:"probe_failures,omitempty"`
}

// ResourceReport is a host's observation of one resource in its plan.
type ResourceReport struct {
	Key
	ResourceStatus
}

// HostStatusLine is one row of the cluster status.
type HostStatusLine struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	AppliedEpoch uint64 `json:"applied_epoch"`
	// PlanEpoch is the latest epoch that changed this host's plan: the
	// host is converged once it applied it, whatever the cluster epoch
	// (a commit to resources no host of it holds does not concern it).
	PlanEpoch uint64 `json:"plan_epoch"`
	Converged bool   `json:"converged"`
	Errors    int    `json:"errors"`
	Resources int    `json:"resources"`
	// Reason says why this host keeps the fleet from converging.
	Reason string `json:"reason,omitempty"`
}

// ClusterStatus answers GET /v1/status.
type ClusterStatus struct {
	Epoch     uint64 `json:"epoch"`
	Converged bool   `json:"converged"`
	// Reasons say, host by host, what keeps the fleet from converging.
	Reasons []string         `json:"reasons,omitempty"`
	Hosts   []HostStatusLine `json:"hosts"`
	// Failing are the resources some host cannot apply, with its error.
	Failing []ResourceReport `json:"failing,omitempty"`
}

// HostConfigSpec is the spec of kind "hostconfig": an operator's settings
// for the host of the same name.
type HostConfigSpec struct {
	Drained bool   `json:"drained,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// HostIdentitySpec is the spec of kind "hostidentity", named after its
// host: the address the host gossips from and its VTEP, registered by the
// host's own agent credential. Gossip members claiming the host's name
// with anything else are ignored by the coordinator and every agent.
//
// A coordinator registers its own (Role coordinator) from its store when
// it starts: a coordinator name is bound to its gossip address just as a
// host's, and no agent may register under it.
type HostIdentitySpec struct {
	Addr string `json:"addr"`
	VTEP string `json:"vtep,omitempty"`
	// Role is "" for a host's agent, IdentityCoordinator for a
	// coordinator.
	Role string `json:"role,omitempty"`
}

// IdentityCoordinator is the role of a coordinator's hostidentity.
const IdentityCoordinator = "coordinator"

// GossipKeyringName is the one resource of kind "gossipkeyring".
const GossipKeyringName = "cluster"

// GossipKeyringSpec is the spec of kind "gossipkeyring": the keys (base64)
// every member decrypts with, and the one it encrypts with. Agents get it
// in their plans; `stratactl gossip rotate-key` changes it.
type GossipKeyringSpec struct {
	Keys    []string `json:"keys"`
	Primary string   `json:"primary"`
}

// GossipRotateResult answers POST /v1/gossip/rotate-key.
type GossipRotateResult struct {
	Primary string `json:"primary"` // fingerprint of the new key
	Epoch   uint64 `json:"epoch"`
}
