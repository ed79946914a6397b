package ovs

import (
	"fmt"
	"github.com/strata-infra/strata/pkg/netspec"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/vishvananda/netlink"
)

// An older agent gave a network with local ports that have security
// groups a Linux bridge sbr-<vni> (its hybrid bridge), joined to the
// integration bridge by a veth: spl-<vni> on the Linux bridge, spo-<vni>
// on OVS. Security groups are flows on the integration bridge now; these
// names remain so that what the older agent made is found and removed.
// The names are derived in pkg/netspec.
const (
	PatchLinuxPrefix = netspec.PatchLinuxPrefix // veth end on the network's Linux bridge
	PatchOVSPrefix   = netspec.PatchOVSPrefix   // veth end on the integration bridge
)

// PatchLinuxName is the veth end of network vni on its Linux bridge.
func PatchLinuxName(vni uint32) string { return netspec.PatchLinuxName(vni) }

// PatchOVSName is the veth end of network vni on the integration bridge.
func PatchOVSName(vni uint32) string { return netspec.PatchOVSName(vni) }

// removeStaleLinux deletes the hybrid bridges and veths an older agent
// made for ports with security groups.
func (d *Driver) removeStaleLinux(links map[string]netlink.Link) []error {
	var errs []error
	for name, l := range links {
		for _, prefix := range []string{PatchLinuxPrefix, network.BridgePrefix} {
			_, ok := network.VNIFromName(name, prefix)
			if !ok || !nlink.Owned(l, prefix) {
				continue
			}
			if err := d.h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %q: %w", name, err))
				continue
			}
			d.changes.Add(1)
			d.log.Info("deleted link", "link", name)
		}
	}
	return errs
}
