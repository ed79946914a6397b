// Package nlink holds the link helpers the network drivers share: create a
// tagged link, fix its MTU/master/up state only where it differs, and tell
// Strata's links from everyone else's.
package nlink

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// AddrGenModeNone keeps the kernel from giving a tenant-facing device an IPv6
// link-local address: the host takes no part in tenant L2.
const AddrGenModeNone = 1

// Owned reports whether l is Strata's: its name has prefix and its alias
// carries network.AliasPrefix.
func Owned(l netlink.Link, prefix string) bool {
	a := l.Attrs()
	return strings.HasPrefix(a.Name, prefix) && strings.HasPrefix(a.Alias, network.AliasPrefix)
}

// Create adds l, tags it with alias, turns off IPv6 address generation and
// re-reads it. A half-made link is deleted again. Each change counts in n.
func Create(h *netlink.Handle, l netlink.Link, alias string, n *atomic.Int64) (_ netlink.Link, err error) {
	name := l.Attrs().Name
	if err := h.LinkAdd(l); err != nil {
		return nil, err
	}
	n.Add(1)
	defer func() {
		if err != nil {
			_ = h.LinkDel(l)
		}
	}()
	if err := h.LinkSetAlias(l, alias); err != nil {
		return nil, fmt.Errorf("set alias: %w", err)
	}
	if err := h.LinkSetIP6AddrGenMode(l, AddrGenModeNone); err != nil {
		return nil, fmt.Errorf("set addrgenmode: %w", err)
	}
	got, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("read back: %w", err)
	}
	return got, nil
}

// Fix sets MTU (when mtu > 0), master (when master > 0) and up, each only
// when it differs from what l has.
func Fix(h *netlink.Handle, l netlink.Link, mtu, master int, n *atomic.Int64) error {
	a := l.Attrs()
	if mtu > 0 && a.MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set mtu %d: %w", mtu, err)
		}
		n.Add(1)
	}
	if master > 0 && a.MasterIndex != master {
		if err := h.LinkSetMasterByIndex(l, master); err != nil {
			return fmt.Errorf("set master: %w", err)
		}
		n.Add(1)
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set up: %w", err)
		}
		n.Add(1)
	}
	return nil
}

// IsNotFound reports a link, neighbour or address that is already gone.
func IsNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, unix.EADDRNOTAVAIL)
}

// MTU is the network's MTU, DefaultMTU when unset.
func MTU(n network.Network) int {
	if n.MTU == 0 {
		return network.DefaultMTU
	}
	return n.MTU
}

// CreateVethIn creates veth v with its peer in the network namespace ns,
// as Create does (alias, counting, a half-made link deleted again).
func CreateVethIn(h *netlink.Handle, v *netlink.Veth, ns, alias string, n *atomic.Int64) (netlink.Link, error) {
	target, err := netns.GetFromPath(netnsutil.Path(ns))
	if err != nil {
		return nil, fmt.Errorf("open netns %q: %w", ns, err)
	}
	defer target.Close()
	v.PeerNamespace = netlink.NsFd(target)
	return Create(h, v, alias, n)
}
