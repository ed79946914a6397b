package config

import (
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Compute configures the compute subsystem (libvirt domains).
type Compute struct {
	// Enabled turns the subsystem on; off by default, so that a host
	// without libvirtd runs the rest of the agent.
	Enabled bool `json:"enabled"`
	// LibvirtSocket is libvirtd's read-write unix socket.
	LibvirtSocket string `json:"libvirt_socket"`
	// DomainPrefix starts the name of every domain Strata makes; domains
	// without it (and without Strata's metadata) are never touched.
	DomainPrefix string `json:"domain_prefix"`
	// DomainType is kvm, qemu (TCG) or empty to detect whether /dev/kvm
	// works.
	DomainType string `json:"domain_type"`
	// InstancesDir holds each instance's disk, seed ISO and console log;
	// empty is <state_dir>/compute.
	InstancesDir string `json:"instances_dir"`
	// ShutdownTimeout is how long a stop waits for the guest after the
	// ACPI power button before it pulls the plug.
	ShutdownTimeout time.Duration `json:"shutdown_timeout"`
	// DirectBoot boots every guest's kernel and initrd directly: test and
	// lab guests only; production guests boot their disk.
	DirectBoot DirectBoot `json:"direct_boot"`
	// MigrationURI is how this host's libvirtd (live migration, peer to
	// peer) and agent (a cold migration's disk copy) reach another host's
	// libvirtd; "{host}" is that host's name in the cluster. Default
	// qemu+tls://{host}/system (libvirtd's TLS listener, certificates
	// under /etc/pki); qemu+tcp://{host}/system on a trusted network;
	// qemu+unix:///system?socket=/run/{host}/libvirt-sock for libvirtds
	// on one machine (the lab).
	MigrationURI string `json:"migration_uri"`
	// MigrationDataURI, when set, is where qemu sends a live migration's
	// memory straight ("tcp://{host}-migration.example"); empty tunnels
	// it through the libvirtds' connection (MigrationURI: encrypted with
	// TLS, but slower).
	MigrationDataURI string `json:"migration_data_uri"`
	// AllocationRatios are how far this host's vCPUs, RAM and disk (after
	// reserved) are overcommitted: the agent announces them in gossip
	// with its capacity, the scheduler places by them and the agent
	// admits instances by them, through one check (computespec FitsAt).
	// Default nova's: vcpu 16, ram 1, disk 1.
	AllocationRatios computespec.Ratios `json:"allocation_ratios"`
}

// DirectBoot is a kernel to boot guests with instead of their disk.
type DirectBoot struct {
	Kernel   string `json:"kernel"`
	Initrd   string `json:"initrd"`
	Cmdline  string `json:"cmdline"`
	Firmware string `json:"firmware"` // e.g. /usr/share/qemu/qboot.rom
}

// DefaultCompute is the compute section's defaults.
func DefaultCompute() Compute {
	return Compute{LibvirtSocket: "/run/libvirt/libvirt-sock", DomainPrefix: "strata-", ShutdownTimeout: 60 * time.Second,
		MigrationURI: "qemu+tls://{host}/system", AllocationRatios: computespec.DefaultRatios()}
}

func (c *Compute) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.Enabled, "compute", c.Enabled, "run the compute subsystem (libvirt domains)")
	fs.StringVar(&c.LibvirtSocket, "libvirt-socket", c.LibvirtSocket, "libvirtd's read-write unix socket")
	fs.StringVar(&c.DomainPrefix, "domain-prefix", c.DomainPrefix, "prefix of the libvirt domains Strata makes")
	fs.StringVar(&c.DomainType, "domain-type", c.DomainType, "libvirt domain type: kvm, qemu (TCG) or empty to detect")
	fs.StringVar(&c.InstancesDir, "instances-dir", c.InstancesDir, "directory for instance disks, seed ISOs and console logs (empty: <state-dir>/compute)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a stop waits for the guest before pulling the plug")
	fs.StringVar(&c.DirectBoot.Kernel, "guest-kernel", c.DirectBoot.Kernel, "boot every guest with this kernel (tests and labs only)")
	fs.StringVar(&c.DirectBoot.Initrd, "guest-initrd", c.DirectBoot.Initrd, "initrd for --guest-kernel")
	fs.StringVar(&c.DirectBoot.Cmdline, "guest-cmdline", c.DirectBoot.Cmdline, "kernel command line for --guest-kernel")
	fs.StringVar(&c.MigrationURI, "migration-uri", c.MigrationURI, "libvirt URI of another host's libvirtd for migrations; {host} is its name")
	fs.StringVar(&c.MigrationDataURI, "migration-data-uri", c.MigrationDataURI, "where qemu sends a live migration's memory ({host}); empty: tunnelled through libvirtd")
	fs.Float64Var(&c.AllocationRatios.VCPU, "cpu-allocation-ratio", c.AllocationRatios.VCPU, "vCPUs placed and admitted per host CPU")
	fs.Float64Var(&c.AllocationRatios.RAM, "ram-allocation-ratio", c.AllocationRatios.RAM, "RAM placed and admitted per host RAM (1: no overcommit)")
	fs.Float64Var(&c.AllocationRatios.Disk, "disk-allocation-ratio", c.AllocationRatios.Disk, "disk placed and admitted per host disk")
	fs.StringVar(&c.DirectBoot.Firmware, "guest-firmware", c.DirectBoot.Firmware, "firmware for --guest-kernel, e.g. /usr/share/qemu/qboot.rom")
}

func (c *Compute) validate() error {
	if !c.Enabled {
		return nil
	}
	if err := c.AllocationRatios.Validate("compute.allocation_ratios"); err != nil {
		return err
	}
	switch {
	case c.AllocationRatios.VCPU == 0 || c.AllocationRatios.RAM == 0 || c.AllocationRatios.Disk == 0:
		return api.Fieldf("compute.allocation_ratios", "%+v: every ratio must be above 0", c.AllocationRatios)
	case c.LibvirtSocket == "":
		return api.Fieldf("compute.libvirt_socket", "must be set")
	case c.DomainPrefix == "" || len(c.DomainPrefix) > 20:
		return api.Fieldf("compute.domain_prefix", "must be 1..20 characters")
	case c.DomainType != "" && c.DomainType != "kvm" && c.DomainType != "qemu":
		return api.Fieldf("compute.domain_type", "%q is not kvm, qemu or empty", c.DomainType)
	case c.ShutdownTimeout < 0:
		return api.Fieldf("compute.shutdown_timeout", "%s is negative", c.ShutdownTimeout)
	case c.MigrationURI != "" && !strings.Contains(c.MigrationURI, "{host}") && !strings.Contains(c.MigrationURI, "socket="):
		return api.Fieldf("compute.migration_uri", "%q names no {host}: every peer would be the same libvirtd", c.MigrationURI)
	case (c.DirectBoot.Kernel == "") != (c.DirectBoot.Initrd == ""):
		return api.Fieldf("compute.direct_boot", "needs both kernel and initrd, or neither")
	}
	return nil
}
