package compute

import (
	"context"

	"libvirt.org/go/libvirtxml"
	"log/slog"
	"time"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Compute is the door of the compute subsystem.
type Compute interface {
	// Set converges the host's Strata domains to desired: defines, starts,
	// stops, reboots and deletes. Calling it again with the same desired
	// state changes nothing. Domains that are not Strata's are never touched.
	Set(ctx context.Context, desired []Instance) error
	// Observe returns a channel that receives a value whenever Status
	// changes (a lifecycle event, a sweep, a Set).
	Observe() <-chan struct{}
	// Status is the last observed state of the host and its instances.
	Status() HostStatus
	// Close stops the connection to libvirtd; domains keep running.
	Close() error
}

// Instance is one wanted instance with its flavor and image resolved.
type Instance struct {
	Spec   computespec.Instance
	Flavor computespec.Flavor
	Image  computespec.Image
	// Boot, when set, boots a kernel directly; the image is still the root
	// disk. Test guests use it; cloud images boot from their disk.
	Boot *DirectBoot
	// Migration, when set, is a move of the instance between this host
	// and Peer in progress (see Driver.Set and api.InstanceMigration).
	Migration *Migration
}

// Migration is an instance's move between this host and Peer.
type Migration struct {
	Peer string // the other host's name in the cluster
	Out  bool   // this host is the source
	Live bool   // the guest keeps running (its root disk is on RBD)
}

// Volumes attaches RBD volumes to domains as librbd network disks, or as
// block disks on krbd devices (agent/storage/attach on a host configured
// for Ceph).
type Volumes interface {
	// RootDisk is the libvirt disk (vda) of an instance booting from v.
	RootDisk(v computespec.Volume) libvirtxml.DomainDisk
	// Claim fences other writers off v before this host's qemu opens it
	// (never two writers); it refuses while another client has it open.
	Claim(ctx context.Context, v computespec.Volume) error
	// Set makes the domain's attached volumes (vdb...) exactly want,
	// claiming each one before it is attached; again changes nothing.
	Set(ctx context.Context, domain string, want []computespec.Volume) error
	// Grow tells a running domain that volume v is now v.SizeBytes.
	Grow(ctx context.Context, domain string, v computespec.Volume) error
	// Ready makes what this host's qemu needs to open volumes (the cephx
	// secret), before a guest arrives by live migration.
	Ready(ctx context.Context) error
	// Release lets go of the host-side devices of every volume not in
	// keep (krbd: flush its cache, take it down, unmap), once the domains
	// that had them are gone.
	Release(ctx context.Context, keep []computespec.Volume) error
}

// DirectBoot boots a kernel and initrd without a boot loader.
type DirectBoot struct {
	Kernel, Initrd, Cmdline string
	// Firmware replaces SeaBIOS, e.g. /usr/share/qemu/qboot.rom (faster).
	Firmware string
}

// Config configures a Driver.
type Config struct {
	Hypervisor Hypervisor
	// Volumes attaches RBD root disks and volumes; nil on a host without
	// Ceph, where an instance with volumes is refused in its status.
	Volumes      Volumes
	DomainPrefix string // DefaultDomainPrefix when empty
	StateDir     string // per-instance disks, seed ISOs and console logs
	// DomainType is DomainKVM or DomainQEMU; empty detects it (DetectDomainType).
	DomainType string
	// Reserved is kept back from the host's capacity for the host itself.
	Reserved computespec.Capacity
	// Ratios are the allocation ratios instances are admitted by (the
	// agent announces the same in gossip); zero ones are nova's defaults.
	Ratios computespec.Ratios
	// Capacity overrides the measured host capacity (before Reserved) when
	// not zero; tests use it.
	Capacity computespec.Capacity
	// NetNS is the namespace of the bridges and taps ("" the agent's own):
	// the driver removes a tap a dead qemu left behind there.
	NetNS string
	// ShutdownTimeout is how long a stop waits for the guest to power off
	// after the ACPI button before it pulls the plug (nova's 60 s).
	ShutdownTimeout time.Duration
	// SweepInterval is how often the whole host is re-read (5 s when 0).
	SweepInterval time.Duration
	// Migrator moves instances between hosts' libvirtds; nil on a host
	// that takes part in no migration (a move is then reported failed).
	Migrator Migrator
	Logger   *slog.Logger
}

// HostStatus is what the agent reports about compute on this host.
type HostStatus struct {
	Connected  bool   // libvirtd reachable now
	DomainType string // kvm or qemu
	// DomainTypeReason says why kvm is not used, when it is not.
	DomainTypeReason string
	Capacity         computespec.Capacity // host less Reserved
	Used             computespec.Capacity // sum of the flavors of Strata's instances
	Instances        []InstanceStatus     // sorted by ID
	LastSweep        time.Time
}

// InstanceStatus is the observed state of one instance.
type InstanceStatus struct {
	ID         string
	Domain     string
	Power      computespec.PowerState // PowerMissing when there is no domain
	DomainType string
	Error      string // why the last Set of it failed, "" when it did not
	ConsoleLog string // the console log's last ConsoleTail bytes
	Changed    time.Time
}

// ConsoleTail is how much of the console log a status carries.
const ConsoleTail = 4096
