// Package computespec holds the pure types of instances, flavors and images
// that the coordinator validates before a commit and the agent's compute
// driver turns into libvirt domains. It has no dependencies on either side.
//
// Every validation error is a *FieldError naming the field in the API's
// snake_case spelling, e.g. "instance.user_data: 70000 bytes is over the
// 65536-byte limit".
package computespec

import (
	"fmt"
	"net"
	"regexp"
	"strings"
)

// MaxUserData is the largest user-data blob an instance may carry (64 KiB,
// as nova's).
const MaxUserData = 64 << 10

// PowerState is the power state an instance is wanted (or seen) in.
type PowerState string

// Power states. Wanted states are PowerRunning and PowerStopped; the agent
// also reports the others.
const (
	PowerRunning PowerState = "running"
	PowerStopped PowerState = "stopped"
	PowerPaused  PowerState = "paused"
	PowerCrashed PowerState = "crashed"
	PowerUnknown PowerState = "unknown"
	PowerMissing PowerState = "missing" // no domain on the host (yet)
)

// ImageFormat is the on-disk format of an image.
type ImageFormat string

// Image formats the agent can boot.
const (
	FormatQCOW2 ImageFormat = "qcow2"
	FormatRaw   ImageFormat = "raw"
)

// Flavor is an instance size.
type Flavor struct {
	Name       string            `json:"name"`
	VCPUs      int               `json:"vcpus"`
	RAMMiB     int               `json:"ram_mib"`
	DiskGiB    int               `json:"disk_gib"`
	ExtraSpecs map[string]string `json:"extra_specs,omitempty"`
}

// Image is a bootable disk image available on the hosts at Path.
type Image struct {
	ID     string      `json:"id"`
	Format ImageFormat `json:"format"`
	Path   string      `json:"path"`
}

// Port is one NIC of an instance: a port of a network, plugged where the
// host's network side says (Bridge, and Switch, the kind of bridge:
// "linuxbridge" or "openvswitch").
type Port struct {
	ID        string           `json:"id"`
	NetworkID string           `json:"network_id"`
	VNI       uint32           `json:"vni"`
	MAC       net.HardwareAddr `json:"mac"`
	Bridge    string           `json:"bridge,omitempty"`
	Switch    string           `json:"switch,omitempty"`
	// FullChecksums turns the NIC's checksum offload off (libvirt's
	// <host csum='off'/>), so the guest sends complete checksums: for a
	// switch that does not finish them (Open vSwitch's userspace datapath).
	FullChecksums bool `json:"full_checksums,omitempty"`
}

// SwitchOpenVSwitch is Port.Switch for an Open vSwitch bridge.
const SwitchOpenVSwitch = "openvswitch"

// Instance is what an instance is wanted to be.
type Instance struct {
	ID       string     `json:"id"`
	Name     string     `json:"name"` // host name handed to cloud-init; ID when empty
	Flavor   string     `json:"flavor"`
	Image    string     `json:"image"`
	Ports    []Port     `json:"ports,omitempty"`
	UserData []byte     `json:"user_data,omitempty"`
	SSHKey   string     `json:"ssh_key,omitempty"`
	Power    PowerState `json:"power"`
	// Reboots counts the reboots asked for; the agent reboots a running
	// instance once each time it grows.
	Reboots uint64 `json:"reboots,omitempty"`
	// Root, when set, is the RBD image the instance boots from (vda)
	// instead of a disk made from Image.
	Root *Volume `json:"root,omitempty"`
	// Volumes are RBD images attached as vdb, vdc, ... (hot-plugged while
	// it runs). They are not part of the domain's definition hash.
	Volumes []Volume `json:"volumes,omitempty"`
}

// Volume is an RBD image a domain opens through librbd. Serial (the
// volume's name) is what the guest sees in /dev/disk/by-id; SizeBytes is
// the size the volume is wanted at (a running guest is told when it grows).
type Volume struct {
	Pool      string `json:"pool"`
	Image     string `json:"image"`
	Serial    string `json:"serial,omitempty"`
	SizeBytes uint64 `json:"size_bytes,omitempty"`
	// KRBD, when set, maps the image as a kernel block device on the host
	// (with its cache) and hands the domain that device instead of letting
	// qemu open the image.
	KRBD *KRBD `json:"krbd,omitempty"`
}

// KRBD is how a host maps a volume of a krbd volume type: the type's
// cache, defaults filled in (storagespec.CacheOf).
type KRBD struct {
	CacheMode       string `json:"cache_mode"` // none, writeback or writethrough
	CacheBytes      int64  `json:"cache_bytes,omitempty"`
	HighWatermark   int    `json:"high_watermark,omitempty"`
	LowWatermark    int    `json:"low_watermark,omitempty"`
	MaxDirtySeconds int    `json:"max_dirty_seconds,omitempty"`
	// FlushTimeoutSeconds bounds the flush before the host lets the
	// volume go; 0: the host's own.
	FlushTimeoutSeconds int `json:"flush_timeout_seconds,omitempty"`
}

// Capacity is an amount of host resources.
type Capacity struct {
	VCPUs   int `json:"vcpus"`
	RAMMiB  int `json:"ram_mib"`
	DiskGiB int `json:"disk_gib"`
}

// FieldError is a validation error on one field.
type FieldError struct {
	Field string // e.g. "instance.ports[0].mac"
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// idRE is what an instance ID may look like: it ends up in domain and
// file names, and holds a full hash (api.HostID).
var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,79}$`)

// imageIDRE is what an image ID (its global name) may look like.
var imageIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// ValidID reports whether id may name an instance on a host.
func ValidID(id string) bool { return idRE.MatchString(id) }

// hostnameRE is an RFC 1123 label.
var hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)

// Validate checks a flavor on its own.
func (f Flavor) Validate() error {
	switch {
	case f.Name == "":
		return fieldErr("flavor.name", "is empty")
	case f.VCPUs < 1 || f.VCPUs > 512:
		return fieldErr("flavor.vcpus", "%d is not in 1..512", f.VCPUs)
	case f.RAMMiB < 64:
		return fieldErr("flavor.ram_mib", "%d is below 64", f.RAMMiB)
	case f.DiskGiB < 0:
		return fieldErr("flavor.disk_gib", "%d is negative", f.DiskGiB)
	}
	for k := range f.ExtraSpecs {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return fieldErr("flavor.extra_specs", "key %q is empty or has white space", k)
		}
	}
	return nil
}

// Validate checks an image on its own.
func (im Image) Validate() error {
	switch {
	case !imageIDRE.MatchString(im.ID):
		return fieldErr("image.id", "%q is not 1-40 of [a-z0-9-] starting with a letter or digit", im.ID)
	case im.Format != FormatQCOW2 && im.Format != FormatRaw:
		return fieldErr("image.format", "%q is neither qcow2 nor raw", im.Format)
	case !strings.HasPrefix(im.Path, "/"):
		return fieldErr("image.path", "%q is not an absolute path", im.Path)
	}
	return nil
}

// Validate checks an instance on its own, without the flavors and images it
// names (see Catalog.Check).
func (in Instance) Validate() error {
	if !idRE.MatchString(in.ID) {
		return fieldErr("instance.id", "%q is not 1-80 of [a-z0-9-] starting with a letter or digit", in.ID)
	}
	if in.Name != "" && !hostnameRE.MatchString(in.Name) {
		return fieldErr("instance.name", "%q is not a host name", in.Name)
	}
	if in.Flavor == "" {
		return fieldErr("instance.flavor", "is empty")
	}
	if in.Image == "" && in.Root == nil {
		return fieldErr("instance.image", "is empty (and no root volume)")
	}
	if len(in.UserData) > MaxUserData {
		return fieldErr("instance.user_data", "%d bytes is over the %d-byte limit", len(in.UserData), MaxUserData)
	}
	if in.SSHKey != "" && (strings.ContainsAny(in.SSHKey, "\r\n") || len(strings.Fields(in.SSHKey)) < 2) {
		return fieldErr("instance.ssh_key", "is not one line of \"type key [comment]\"")
	}
	if in.Power != PowerRunning && in.Power != PowerStopped {
		return fieldErr("instance.power", "%q is neither running nor stopped", in.Power)
	}
	seen := map[string]bool{}
	for i, p := range in.Ports {
		f := fmt.Sprintf("instance.ports[%d]", i)
		switch {
		case p.ID == "":
			return fieldErr(f+".id", "is empty")
		case seen[p.ID]:
			return fieldErr(f+".id", "%q appears twice", p.ID)
		case p.VNI == 0 || p.VNI >= 1<<24:
			return fieldErr(f+".vni", "%d is not in 1..16777215", p.VNI)
		case len(p.MAC) != 6 || p.MAC[0]&1 == 1 || string(p.MAC) == "\x00\x00\x00\x00\x00\x00":
			return fieldErr(f+".mac", "%q is not a unicast Ethernet address", p.MAC)
		}
		seen[p.ID] = true
	}
	return nil
}

// HostName is the name handed to the guest.
func (in Instance) HostName() string {
	if in.Name != "" {
		return in.Name
	}
	return in.ID
}

// LiveMigrationFailed starts the status message of an instance whose live
// migration the source host tried and gave up (the guest runs on there):
// the coordinator then moves the instance back to the source.
const LiveMigrationFailed = "live migration failed: "
