package api

import (
	"time"
)

// FlavorSpec is the spec of kind "flavor": an instance size. The flavor's
// name is the resource name.
type FlavorSpec struct {
	VCPUs      int               `json:"vcpus"`
	RAMMiB     int               `json:"ram_mib"`
	DiskGiB    int               `json:"disk_gib"`
	ExtraSpecs map[string]string `json:"extra_specs,omitempty"`
}

// ImageSpec is the spec of kind "image": a bootable disk image, either a
// file at a local path that every host running an instance of it can read,
// or (with Pool) an RBD image in Ceph that volumes and root disks are
// copy-on-write clones of.
type ImageSpec struct {
	// Format is "qcow2" or "raw" (an image in Ceph is raw).
	Format string `json:"format"`
	// Path is the file; for an image in Ceph, the file it was imported from.
	Path string `json:"path"`
	// Pool, when set, is the Ceph pool holding the image as RBD image
	// "image-<name>" with the protected snapshot "base" (`stratactl images
	// import` puts it there).
	Pool string `json:"pool,omitempty"`
	// SizeBytes is the image's virtual size (set by import): volumes made
	// from it are at least this large.
	SizeBytes uint64 `json:"size_bytes,omitempty"`
	// Architecture ("x86_64", "aarch64") and HypervisorType ("kvm",
	// "qemu") restrict the hosts its instances are placed on; empty is any.
	Architecture   string `json:"architecture,omitempty"`
	HypervisorType string `json:"hypervisor_type,omitempty"`
}

// Wanted power states of an instance.
const (
	PowerRunning = "running"
	PowerStopped = "stopped"
)

// InstanceSpec is the spec of kind "instance". The coordinator fills in
// Host (placement) and NetworkPorts (one port per entry of Networks, owner
// "compute", bound to Host, made in the same commit).
type InstanceSpec struct {
	Flavor string `json:"flavor"`
	// Image is what the root disk is made from: for an image in Ceph, the
	// coordinator makes the volume RootVolume, a copy-on-write clone of
	// it, in the commit that creates the instance; for a local file, the
	// host copies it. Image and BootVolume are alternatives.
	Image string `json:"image,omitempty"`
	// BootVolume is an existing volume of the project the instance boots
	// from (its root disk, vda). It cannot change.
	BootVolume string `json:"boot_volume,omitempty"`
	// RootVolume is the volume the coordinator made from Image (an image
	// in Ceph); it is deleted with the instance.
	RootVolume string `json:"root_volume,omitempty"`
	// Volumes are volumes of the project attached to the instance (vdb,
	// vdc, ... in this order), hot-plugged while it runs.
	Volumes []string `json:"volumes,omitempty"`
	// Networks are network names of the project; the coordinator makes a
	// port on each.
	Networks []string `json:"networks,omitempty"`
	// Ports are existing port names of the project; the coordinator binds
	// them to the instance's host with owner "compute".
	Ports []string `json:"ports,omitempty"`
	// UserData is handed to cloud-init as it is: text (cloud-config, a
	// script), at most 64 KiB.
	UserData string `json:"user_data,omitempty"`
	SSHKey   string `json:"ssh_key,omitempty"`
	// Power is the wanted power state: running (the default) or stopped.
	Power string `json:"power,omitempty"`
	// Reboots counts reboots asked for; the host reboots a running
	// instance once each time it grows. It never goes down.
	Reboots uint64 `json:"reboots,omitempty"`
	// Starts counts start requests. A guest that stopped outside Strata
	// (powered off inside, qemu killed) stays stopped and is reported so
	// until the instance changes; `stratactl instances start` bumps Starts
	// so that a start is a change even when Power already says running.
	Starts uint64 `json:"starts,omitempty"`
	// Zone asks for an availability zone (a host's zone comes from its
	// agent config); empty is any. It cannot change.
	Zone string `json:"zone,omitempty"`
	// Group is a server group of the project whose policy the placement
	// keeps. It cannot change.
	Group string `json:"group,omitempty"`
	// Host is where the instance runs: given by an admin, else chosen by
	// the scheduler at create. While the instance is stopped, an admin may
	// move it by naming another host, and anyone may by raising
	// Migrations (the scheduler picks another host) or changing Flavor (a
	// resize, on any host with room).
	Host string `json:"host,omitempty"`
	// Migrations counts cold migrations asked for; it never goes down.
	Migrations uint64 `json:"migrations,omitempty"`
	// LiveMigrations counts live migrations asked for: the instance keeps
	// running while it moves (its root disk must be on RBD). It never goes
	// down. An admin may name the host in the same write.
	LiveMigrations uint64 `json:"live_migrations,omitempty"`
	// Migration is set by the coordinator while the instance moves from
	// another host to Host, and cleared when Host reports it there.
	Migration *InstanceMigration `json:"migration,omitempty"`
	// NetworkPorts are the ports the coordinator made for Networks, in
	// the same order; it deletes them with the instance.
	NetworkPorts []string `json:"network_ports,omitempty"`
	// BuildFailures are the hosts that reported they could not build the
	// instance (no domain, an error), oldest first. The coordinator sets
	// it when it moves such an instance to another host (nova's
	// reschedule), at most MaxBuildAttempts hosts in all.
	BuildFailures []string `json:"build_failures,omitempty"`
	// Evacuations are the moves off fenced hosts, oldest first: set by
	// the coordinator's recovery controller only, each after the fence of
	// the host it left was recorded.
	Evacuations []Evacuation `json:"evacuations,omitempty"`
	// AcceptDataLoss lets the recovery controller restart the instance
	// elsewhere although its volumes had dirty writeback-cache blocks on
	// the dead host (an admin's decision, `instances evacuate
	// --accept-data-loss`).
	AcceptDataLoss bool `json:"accept_data_loss,omitempty"`
}

// InstanceMigration is a move in progress (kept in InstanceSpec.Migration
// by the coordinator). While it lasts, the instance is in the plans of both
// hosts:
//
//   - cold (the instance stopped): Source keeps the stopped domain and its
//     local disk; Host copies the disk from Source (a root disk on RBD is
//     not copied: Host defines the domain on the same image) and defines
//     the domain. The instance's ports are bound to Host from the start.
//   - live (the instance running, root disk on RBD): Source's libvirtd
//     migrates the running domain to Host's (peer to peer); Host sets up
//     the instance's networks beforehand but defines nothing. The ports
//     stay bound to Source until the move is done.
//
// The move is done when Host reports the instance with a domain (running,
// for a live one) at the instance's epoch: the coordinator then clears
// Migration (and rebinds a live instance's ports to Host) in a commit of
// its own, and Source deletes what is left of it. A live migration that
// Source reports failed moves the instance back: Host = Source, Migration
// cleared, the placement status says why.
type InstanceMigration struct {
	Source string `json:"source"`
	Live   bool   `json:"live,omitempty"`
}

// MaxBuildAttempts is how many hosts an instance's build is tried on
// before it stays where it is (nova's max_attempts).
const MaxBuildAttempts = 3

// AggregateSpec is the spec of kind "aggregate" (admin, global): a named
// set of hosts with key/value metadata, matched against flavors' extra
// specs ("disk": "ssd", or scoped "aggregate_instance_extra_specs:disk").
type AggregateSpec struct {
	Hosts    []string          `json:"hosts,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ServerGroupSpec is the spec of kind "servergroup" (project): instances
// naming the group are placed by its policy: affinity, anti-affinity,
// soft-affinity or soft-anti-affinity. The policy cannot change.
type ServerGroupSpec struct {
	Policy string `json:"policy"`
}

// InstanceID is the instance's ID on hosts (domain and file names): its
// HostID, so that no two instances of any projects ever meet on a host.
func InstanceID(project, name string) string { return HostID(project, name) }

// InstanceAddress is one address of an instance, from its port.
type InstanceAddress struct {
	Port    string   `json:"port"`
	Network string   `json:"network"`
	MAC     string   `json:"mac"`
	IPs     []string `json:"ips,omitempty"`
}

// InstanceDetail is the Detail of an instance's status: what its host
// observes. The status State is the power state (running, stopped, paused,
// crashed, missing) and Message says why it is not what is wanted.
type InstanceDetail struct {
	ID         string            `json:"id"`
	Domain     string            `json:"domain"`
	DomainType string            `json:"domain_type"`
	Power      string            `json:"power"`
	Addresses  []InstanceAddress `json:"addresses,omitempty"`
	// ConsoleTail is the end of the serial console log.
	ConsoleTail string `json:"console_tail,omitempty"`
	// PowerChanged is when the host last saw the power state change.
	PowerChanged time.Time `json:"power_changed,omitempty"`
	// PlanReceived is when the agent first reconciled the instance at its
	// current epoch, and Started when the Set that started its domain
	// returned: together the agent's share of create-to-ping.
	PlanReceived time.Time `json:"plan_received,omitempty"`
	Started      time.Time `json:"started,omitempty"`
	// VolumeCache is each cached volume's state (the SSD cache's dirty
	// blocks), the last the host reported: the coordinator reads it when
	// the host dies.
	VolumeCache []VolumeCache `json:"volume_cache,omitempty"`
}

// ComputeHost is what a host's compute subsystem reports about itself.
type ComputeHost struct {
	Connected bool `json:"connected"` // libvirtd reachable
	// DomainType is kvm where /dev/kvm works, else qemu (TCG);
	// DomainTypeReason says why kvm is not used.
	DomainType       string    `json:"domain_type"`
	DomainTypeReason string    `json:"domain_type_reason,omitempty"`
	Capacity         Capacity  `json:"capacity"` // after the host's reservations
	Used             Capacity  `json:"used"`     // the flavors of its instances
	Instances        int       `json:"instances"`
	LastSweep        time.Time `json:"last_sweep,omitempty"`
}
