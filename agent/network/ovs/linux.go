package ovs

import (
	"fmt"
	"github.com/strata-infra/strata/pkg/netspec"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/vishvananda/netlink"
)

// A network with local ports that have security groups gets a Linux
// bridge sbr-<vni> (its hybrid bridge), where those ports plug in and
// security groups filter them (nftables + br_netfilter), as on
// linuxbridge hosts. A veth joins it to the integration bridge: spl-<vni>
// on the Linux bridge, spo-<vni> on OVS with the network's local VLAN.
// Ports without security groups are on the integration bridge itself.
// The names are derived in pkg/netspec.
const (
	PatchLinuxPrefix = netspec.PatchLinuxPrefix // veth end on the network's Linux bridge
	PatchOVSPrefix   = netspec.PatchOVSPrefix   // veth end on the integration bridge
)

// PatchLinuxName is the veth end of network vni on its Linux bridge.
func PatchLinuxName(vni uint32) string { return netspec.PatchLinuxName(vni) }

// PatchOVSName is the veth end of network vni on the integration bridge.
func PatchOVSName(vni uint32) string { return netspec.PatchOVSName(vni) }

// ensureLinux makes the network's hybrid Linux bridge and its veth to OVS.
func (d *Driver) ensureLinux(n network.Network, links map[string]netlink.Link) error {
	mtu := nlink.MTU(n)
	brName := network.BridgeName(n.VNI)
	br, ok := links[brName]
	if ok && (br.Type() != "bridge" || !nlink.Owned(br, network.BridgePrefix)) {
		return fmt.Errorf("bridge %q: a %s link of that name exists and is not Strata's", brName, br.Type())
	}
	alias := network.Alias("net", n.ID)
	if !ok {
		var err error
		if br, err = nlink.Create(d.h, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, MTU: mtu}}, alias, &d.changes); err != nil {
			return fmt.Errorf("create bridge %q: %w", brName, err)
		}
	}
	if err := nlink.Fix(d.h, br, mtu, 0, &d.changes); err != nil {
		return fmt.Errorf("bridge %q: %w", brName, err)
	}
	ln, on := PatchLinuxName(n.VNI), PatchOVSName(n.VNI)
	l, ok := links[ln]
	if ok && !nlink.Owned(l, PatchLinuxPrefix) {
		return fmt.Errorf("link %q exists and is not Strata's", ln)
	}
	if !ok {
		var err error
		if l, err = nlink.Create(d.h, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ln, MTU: mtu}, PeerName: on}, alias, &d.changes); err != nil {
			return fmt.Errorf("create veth %q: %w", ln, err)
		}
		// Packets the kernel hands to OVS's userspace datapath must carry
		// full checksums: turn checksum offload off where they leave the
		// Linux bridge, so the kernel fills them in.
		if err := d.txChecksumOff(ln); err != nil {
			_ = d.h.LinkDel(l) // made again, offload off, on the next pass
			return err
		}
	}
	if err := nlink.Fix(d.h, l, mtu, br.Attrs().Index, &d.changes); err != nil {
		return fmt.Errorf("veth %q: %w", ln, err)
	}
	o, ok := links[on]
	if !ok {
		var err error
		if o, err = d.h.LinkByName(on); err != nil {
			return fmt.Errorf("veth peer %q: %w", on, err)
		}
		if err := d.h.LinkSetAlias(o, alias); err != nil {
			return fmt.Errorf("veth peer %q: %w", on, err)
		}
		if err := d.h.LinkSetIP6AddrGenMode(o, nlink.AddrGenModeNone); err != nil {
			return fmt.Errorf("veth peer %q: %w", on, err)
		}
	}
	if err := nlink.Fix(d.h, o, mtu, 0, &d.changes); err != nil {
		return fmt.Errorf("veth %q: %w", on, err)
	}
	return nil
}

// removeStaleLinux deletes Strata's bridges and veths of networks no
// longer wanted on this host.
func (d *Driver) removeStaleLinux(want map[uint32]bool, links map[string]netlink.Link) []error {
	var errs []error
	for name, l := range links {
		for _, prefix := range []string{PatchLinuxPrefix, network.BridgePrefix} {
			vni, ok := network.VNIFromName(name, prefix)
			if !ok || want[vni] || !nlink.Owned(l, prefix) {
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

// txChecksumOff turns TX checksum offload off on link name.
func (d *Driver) txChecksumOff(name string) error {
	if err := nlink.TxChecksumOff(d.netns, name); err != nil {
		return err
	}
	d.changes.Add(1)
	return nil
}
