package linuxbridge

import (
	"fmt"
	"net"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/vishvananda/netlink"
)

// vxlanPort is the IANA VXLAN UDP port.
const vxlanPort = 4789

// netDevices is what one network needs on the host.
type netDevices struct {
	net    network.Network
	mtu    int
	bridge string
	vxlan  string
}

func devicesFor(n network.Network) netDevices {
	return netDevices{net: n, mtu: nlink.MTU(n), bridge: network.BridgeName(n.VNI), vxlan: network.VXLANName(n.VNI)}
}

// ensureBridge makes the bridge of a network, or checks and fixes the one
// that exists. It refuses a link of that name that is not a Strata bridge.
func (d *Driver) ensureBridge(nd netDevices, links map[string]netlink.Link) (netlink.Link, error) {
	l, ok := links[nd.bridge]
	if ok && (l.Type() != "bridge" || !nlink.Owned(l, network.BridgePrefix)) {
		return nil, fmt.Errorf("bridge %q: a %s link of that name exists and is not Strata's", nd.bridge, l.Type())
	}
	if !ok {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nd.bridge, MTU: nd.mtu}}
		var err error
		if l, err = d.create(br, nd.net.ID); err != nil {
			return nil, fmt.Errorf("create bridge %q: %w", nd.bridge, err)
		}
	}
	if err := nlink.Fix(d.h, l, nd.mtu, 0, &d.changes); err != nil {
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
	if ok && (l.Type() != "vxlan" || !nlink.Owned(l, network.VXLANPrefix)) {
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
		if l, err = d.create(want, nd.net.ID); err != nil {
			return nil, fmt.Errorf("create vxlan %q: %w", nd.vxlan, err)
		}
	}
	if err := nlink.Fix(d.h, l, nd.mtu, br.Attrs().Index, &d.changes); err != nil {
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

// removeStale deletes Strata's bridges and VXLAN devices of networks no
// longer wanted. Links that are not Strata's are never touched.
func (d *Driver) removeStale(want map[uint32]bool, links map[string]netlink.Link) error {
	var errs []error
	for name, l := range links {
		for _, prefix := range []string{network.VXLANPrefix, network.BridgePrefix} {
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
	return joinErrs(errs)
}

func (d *Driver) create(l netlink.Link, networkID string) (netlink.Link, error) {
	got, err := nlink.Create(d.h, l, network.Alias("net", networkID), &d.changes)
	if err == nil {
		d.log.Info("created link", "link", l.Attrs().Name, "type", l.Type(), "network", networkID)
	}
	return got, err
}
