package compute

import (
	"path/filepath"
	"strings"

	"github.com/strata-infra/strata/pkg/netspec"
)

// Ownership. A domain is Strata's only when its name starts with the
// driver's prefix AND its XML carries a <strata:instance> metadata element
// in MetadataNS whose id matches the name; anything else (a domain made by
// hand with virsh, another tool's) is never started, stopped or undefined.
const (
	MetadataNS     = "https://strata-infra.dev/xmlns/compute/1"
	MetadataPrefix = "strata"
	// DefaultDomainPrefix goes before the instance ID in domain names.
	DefaultDomainPrefix = "strata-"
	// TapPrefix starts the tap of every instance NIC: "stp-" and the port's
	// netspec.LinkKey (15 bytes, IFNAMSIZ), unique in the cluster.
	TapPrefix = netspec.TapPrefix
)

// DomainName is the libvirt name of an instance.
func DomainName(prefix, instanceID string) string { return prefix + instanceID }

// InstanceID returns the instance ID in a domain name, and whether the name
// has the prefix at all.
func InstanceID(prefix, domain string) (string, bool) {
	id, ok := strings.CutPrefix(domain, prefix)
	return id, ok && id != ""
}

// TapName is the host side of an instance NIC on the network's bridge.
func TapName(portID string) string { return netspec.TapName(portID) }

// instanceFiles are the files the agent keeps per instance, all under
// <StateDir>/instances/<id>/ so that delete removes one directory.
type instanceFiles struct {
	Dir, Disk, Seed, Console, Reboots string
}

func filesOf(stateDir, id string) instanceFiles {
	d := filepath.Join(stateDir, "instances", id)
	return instanceFiles{
		Dir:     d,
		Disk:    filepath.Join(d, "disk"),
		Seed:    filepath.Join(d, "seed.iso"),
		Console: filepath.Join(d, "console.log"),
		Reboots: filepath.Join(d, "reboots"),
	}
}
