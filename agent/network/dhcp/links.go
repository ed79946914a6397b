package dhcp

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// ensureLinks makes the namespace and the veth of a DHCP network, plugs the
// host side into the bridge and gives the inside the DHCP port's MAC and
// addresses.
func (d *Driver) ensureLinks(ctx context.Context, ns string, w served) error {
	if !netnsutil.Exists(ns) {
		if err := netnsutil.Create(ns); err != nil {
			return err
		}
		d.linkChanges.Add(1)
	}
	if _, err := w.net.Bridge(); err != nil {
		return err
	}
	name := network.DHCPVethName(w.net.VNI)
	links, err := d.cfg.Links.Links(d.h)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	mtu := nlink.MTU(w.net)
	l, ok := links[name]
	switch {
	case ok && !nlink.Owned(l, network.DHCPVethPrefix):
		return fmt.Errorf("link %q exists and is not Strata's", name)
	case !ok:
		if l, err = d.createVeth(name, ns, w, mtu); err != nil {
			return fmt.Errorf("create veth %q: %w", name, err)
		}
	}
	op := network.OVSPort{VNI: w.net.VNI, MACs: []net.HardwareAddr{w.port.MAC}, NetNS: ns, IfName: network.DHCPIfName, Created: !ok}
	if err := nlink.Attach(ctx, d.h, l, mtu, w.net.PortBinding(w.port), links, op, &d.linkChanges); err != nil {
		return fmt.Errorf("veth %q: %w", name, err)
	}
	return d.ensureInside(ns, w, mtu)
}

func (d *Driver) createVeth(name, ns string, w served, mtu int) (netlink.Link, error) {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:         network.DHCPIfName,
		PeerHardwareAddr: w.port.MAC,
	}
	return nlink.CreateVethIn(d.h, v, ns, network.Alias("dhcp", w.net.ID), &d.linkChanges)
}

func (d *Driver) ensureInside(ns string, w served, mtu int) error {
	h, err := netnsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	for _, name := range []string{"lo", network.DHCPIfName} {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("%q in %q: %w", name, ns, err)
		}
		linkMTU := 0
		if name == network.DHCPIfName {
			if err := d.ensureAddrs(h, l, w); err != nil {
				return fmt.Errorf("%q in %q: %w", name, ns, err)
			}
			linkMTU = mtu
		}
		if err := nlink.Fix(h, l, linkMTU, 0, &d.linkChanges); err != nil {
			return fmt.Errorf("%q in %q: %w", name, ns, err)
		}
	}
	return nil
}

// ensureAddrs gives the DHCP interface exactly the DHCP port's addresses in
// DHCP subnets (link-local IPv6 is left alone) and its MAC.
func (d *Driver) ensureAddrs(h *netlink.Handle, l netlink.Link, w served) error {
	if l.Attrs().HardwareAddr.String() != w.port.MAC.String() {
		if err := h.LinkSetHardwareAddr(l, w.port.MAC); err != nil {
			return fmt.Errorf("set mac: %w", err)
		}
		d.linkChanges.Add(1)
	}
	want := map[string]*net.IPNet{}
	for _, ip := range w.port.IPs {
		if s, ok := subnetOf(w.net, ip); ok {
			ipn := &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(s.CIDR.Bits(), ip.BitLen())}
			want[ipn.String()] = ipn
		}
	}
	have, err := netlinksafe.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range have {
		if _, ok := want[a.IPNet.String()]; ok {
			delete(want, a.IPNet.String())
			continue
		}
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := h.AddrDel(l, &a); err != nil && !nlink.IsNotFound(err) {
			return fmt.Errorf("delete address %s: %w", a.IPNet, err)
		}
		d.linkChanges.Add(1)
	}
	for _, ipn := range want {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("add address %s: %w", ipn, err)
		}
		d.linkChanges.Add(1)
	}
	return nil
}

// removeStale stops the dnsmasq, deletes the namespace, host veth and state
// of every DHCP network of this agent that is no longer wanted.
func (d *Driver) removeStale(want map[string]served) []error {
	prefix := netspec.DHCPNamespacePrefix(d.cfg.NSPrefix)
	ids := map[string]bool{}
	names, err := netnsutil.List(prefix)
	if err != nil {
		return []error{err}
	}
	for _, ns := range names {
		ids[strings.TrimPrefix(ns, prefix)] = true
	}
	ents, _ := os.ReadDir(d.cfg.StateDir)
	for _, e := range ents {
		if e.IsDir() {
			ids[e.Name()] = true
		}
	}
	var errs []error
	for id := range ids {
		if _, ok := want[id]; ok {
			continue
		}
		if err := d.remove(id); err != nil {
			errs = append(errs, fmt.Errorf("dhcp network %q: %w", id, err))
		}
	}
	return append(errs, d.removeStaleVeths(want)...)
}

func (d *Driver) remove(id string) error {
	dir := filepath.Join(d.cfg.StateDir, id)
	if inst := d.runs[id]; inst != nil && inst.proc != nil {
		inst.proc.stop(dir)
		d.stops.Add(1)
	} else if p, _ := adopt(dir); p != nil {
		p.stop(dir)
		d.stops.Add(1)
	}
	delete(d.runs, id)
	if err := netnsutil.Delete(d.Namespace(id)); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %q: %w", dir, err)
	}
	d.log.Info("removed dhcp", "network", id)
	return nil
}

// removeStaleVeths deletes Strata's DHCP veths of VNIs no longer served
// (normally gone with their namespace already).
func (d *Driver) removeStaleVeths(want map[string]served) []error {
	vnis := map[uint32]bool{}
	for _, w := range want {
		vnis[w.net.VNI] = true
	}
	links, err := d.cfg.Links.Links(d.h)
	if err != nil {
		return []error{fmt.Errorf("list links: %w", err)}
	}
	var errs []error
	for _, l := range links {
		vni, ok := network.VNIFromName(l.Attrs().Name, network.DHCPVethPrefix)
		if !ok || vnis[vni] || !nlink.Owned(l, network.DHCPVethPrefix) {
			continue
		}
		if err := d.h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete veth %q: %w", l.Attrs().Name, err))
			continue
		}
		d.linkChanges.Add(1)
	}
	return errs
}
