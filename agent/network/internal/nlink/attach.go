package nlink

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/strata-infra/strata/agent/network"
	"github.com/vishvananda/netlink"
)

// Attach puts host-side link l where binding b says, with MTU mtu: as a
// port of a Linux bridge (found in links), or, on an Open vSwitch binding,
// as a port of the integration bridge through b.Plug (p names the link's
// network and addresses). Each change counts in n.
func Attach(ctx context.Context, h *netlink.Handle, l netlink.Link, mtu int, b network.L2Binding, links map[string]netlink.Link, p network.OVSPort, n *atomic.Int64) error {
	if b.Type != network.L2OpenVSwitch {
		br, ok := links[b.Bridge]
		if !ok {
			return fmt.Errorf("bridge %q not found", b.Bridge)
		}
		return Fix(h, l, mtu, br.Attrs().Index, n)
	}
	if b.Plug == nil {
		return fmt.Errorf("open vswitch bridge %q: no driver to plug %q into it", b.Bridge, l.Attrs().Name)
	}
	if OnLinuxBridge(l, links) { // it moves from its hybrid bridge
		if err := h.LinkSetNoMaster(l); err != nil {
			return fmt.Errorf("leave bridge: %w", err)
		}
		n.Add(1)
	}
	if err := Fix(h, l, mtu, 0, n); err != nil {
		return err
	}
	p.Link = l.Attrs().Name
	return b.Plug.PlugPort(ctx, p)
}

// OnLinuxBridge reports whether l is a port of a Linux bridge in links
// (not of an Open vSwitch kernel datapath, which is a master too).
func OnLinuxBridge(l netlink.Link, links map[string]netlink.Link) bool {
	m := l.Attrs().MasterIndex
	if m == 0 {
		return false
	}
	for _, x := range links {
		if x.Attrs().Index == m {
			return x.Type() == "bridge"
		}
	}
	return false
}
