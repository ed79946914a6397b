package linuxbridge

import (
	"fmt"
	"net"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/vishvananda/netlink"
)

// vxlanPort is the IANA VXLAN UDP port.
const vxlanPort = 4789

// addrGenModeNone keeps the kernel from giving tenant-facing devices an IPv6
// link-local address: the host takes no part in tenant L2.
const addrGenModeNone = 1

// owned reports whether link is Strata's: its name has one of our prefixes
// and its alias carries our tag.
func owned(l netlink.Link, prefix string) bool {
	a := l.Attrs()
	return strings.HasPrefix(a.Name, prefix) && strings.HasPrefix(a.Alias, network.AliasPrefix)
}

// netDevices is what one network needs on the host.
type netDevices struct {
	net    network.Network
	mtu    int
	bridge string
	vxlan  string
}

func devicesFor(n network.Network) netDevices {
	mtu := n.MTU
	if mtu == 0 {
		mtu = network.DefaultMTU
	}
	return netDevices{net: n, mtu: mtu, bridge: network.BridgeName(n.VNI), vxlan: network.VXLANName(n.VNI)}
}

// ensureBridge makes the bridge of a network, or checks and fixes the one
// that exists. It refuses a link of that name that is not a Strata bridge.
func (d *Driver) ensureBridge(nd netDevices, links map[string]netlink.Link) (netlink.Link, error) {
	l, ok := links[nd.bridge]
	if ok && (l.Type() != "bridge" || !owned(l, network.BridgePrefix)) {
		return nil, fmt.Errorf("bridge %q: a %s link of that name exists and is not Strata's", nd.bridge, l.Type())
	}
	if !ok {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nd.bridge, MTU: nd.mtu}}
		var err error
		if l, err = d.create(br, network.Alias("net", nd.net.ID)); err != nil {
			return nil, fmt.Errorf("create bridge %q: %w", nd.bridge, err)
		}
	}
	if err := d.fixLink(l, nd.mtu, 0); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", nd.bridge, err)
	}
	return l, nil
}

// ensureVXLAN makes the VXLAN device of a network on its bridge. A device
// whose identity (VNI, local VTEP, port, underlay) differs is recreated: the
// only case where Strata replaces a device.
func (d *Driver) ensureVXLAN(nd netDevices, st network.HostState, underlay int, br netlink.Link, links map[string]netlink.Link) (netlink.Link, error) {
	want := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: nd.vxlan, MTU: nd.mtu},
		VxlanId:      int(nd.net.VNI),
		VtepDevIndex: underlay,
		SrcAddr:      net.IP(st.LocalVTEP.AsSlice()),
		Port:         vxlanPort,
		Learning:     false,
		Proxy:        true,
	}
	l, ok := links[nd.vxlan]
	if ok && (l.Type() != "vxlan" || !owned(l, network.VXLANPrefix)) {
		return nil, fmt.Errorf("vxlan %q: a %s link of that name exists and is not Strata's", nd.vxlan, l.Type())
	}
	if ok && !sameVXLAN(l.(*netlink.Vxlan), want) {
		d.log.Warn("recreating vxlan device with changed identity", "vxlan", nd.vxlan, "network", nd.net.ID)
		if err := d.h.LinkDel(l); err != nil {
			return nil, fmt.Errorf("delete vxlan %q: %w", nd.vxlan, err)
		}
		d.changes.Add(1)
		ok = false
	}
	if !ok {
		var err error
		if l, err = d.create(want, network.Alias("net", nd.net.ID)); err != nil {
			return nil, fmt.Errorf("create vxlan %q: %w", nd.vxlan, err)
		}
	}
	if err := d.fixLink(l, nd.mtu, br.Attrs().Index); err != nil {
		return nil, fmt.Errorf("vxlan %q: %w", nd.vxlan, err)
	}
	return l, nil
}

func sameVXLAN(have, want *netlink.Vxlan) bool {
	return have.VxlanId == want.VxlanId &&
		(want.VtepDevIndex == 0 || have.VtepDevIndex == want.VtepDevIndex) &&
		have.SrcAddr.Equal(want.SrcAddr) &&
		have.Port == want.Port &&
		!have.Learning && have.Proxy
}

// create adds a link, tags it, turns off IPv6 address generation on it and
// re-reads it. A half-made link is deleted again.
func (d *Driver) create(l netlink.Link, alias string) (_ netlink.Link, err error) {
	name := l.Attrs().Name
	if err := d.h.LinkAdd(l); err != nil {
		return nil, err
	}
	d.changes.Add(1)
	defer func() {
		if err != nil {
			_ = d.h.LinkDel(l)
		}
	}()
	if err := d.h.LinkSetAlias(l, alias); err != nil {
		return nil, fmt.Errorf("set alias: %w", err)
	}
	if err := d.h.LinkSetIP6AddrGenMode(l, addrGenModeNone); err != nil {
		return nil, fmt.Errorf("set addrgenmode: %w", err)
	}
	got, err := d.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	d.log.Info("created link", "link", name, "type", l.Type())
	return got, nil
}

// fixLink sets MTU, master (when master > 0) and up, each only when it
// differs from what the link has.
func (d *Driver) fixLink(l netlink.Link, mtu, master int) error {
	a := l.Attrs()
	if a.MTU != mtu {
		if err := d.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set mtu %d: %w", mtu, err)
		}
		d.changes.Add(1)
	}
	if master > 0 && a.MasterIndex != master {
		if err := d.h.LinkSetMasterByIndex(l, master); err != nil {
			return fmt.Errorf("set master: %w", err)
		}
		d.changes.Add(1)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := d.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		d.changes.Add(1)
	}
	return nil
}

// removeStale deletes Strata's bridges and VXLAN devices of networks no
// longer wanted. Links that are not Strata's are never touched.
func (d *Driver) removeStale(want map[uint32]bool, links map[string]netlink.Link) error {
	var errs []error
	for name, l := range links {
		for _, prefix := range []string{network.VXLANPrefix, network.BridgePrefix} {
			vni, ok := network.VNIFromName(name, prefix)
			if !ok || want[vni] || !owned(l, prefix) {
				continue
			}
			if err := d.h.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %q: %w", name, err))
				continue
			}
			d.changes.Add(1)
			d.log.Info("deleted link", "link", name)
		}
	}
	return joinErrs(errs)
}
