package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// routeProto marks the routes the driver adds, so it deletes only its own.
const routeProto = netlink.RouteProtocol(0xb5)

// leg is one veth of a router: host side on a bridge, router side inside.
type leg struct {
	host, inner string
	bind        network.L2Binding
	vni         uint32 // the tenant network of an internal leg; 0 for the gateway
	mtu         int    // the tenant network's; 0: the bridge's
	addrs       []netip.Prefix
	mac         net.HardwareAddr // of the inner side; nil: any
}

func legs(r netspec.Router, nets map[string]network.Network) []leg {
	var ls []leg
	if g := r.Gateway; g != nil {
		l := leg{host: HostGatewayLeg(r.ID), inner: GatewayLeg(r.ID), bind: network.L2Binding{Bridge: g.Bridge, Type: network.L2LinuxBridge},
			addrs: []netip.Prefix{g.Addr}}
		for _, f := range r.FloatingIPs {
			l.addrs = append(l.addrs, netip.PrefixFrom(f.IP, 32))
		}
		ls = append(ls, l)
	}
	for _, in := range r.Interfaces {
		n := nets[in.NetworkID]
		ls = append(ls, leg{host: HostInternalLeg(r.ID, in.ID), inner: InternalLeg(in.ID), bind: n.L2, vni: n.VNI,
			mtu: nlink.MTU(n), addrs: []netip.Prefix{in.Addr}, mac: in.MAC})
	}
	return ls
}

// ensureLegs makes the veths of r and puts their host sides on the bridges
// (a tenant network's leg on an Open vSwitch host: on the integration
// bridge).
func (d *Driver) ensureLegs(ctx context.Context, r netspec.Router, ns string, nets map[string]network.Network, links map[string]netlink.Link) error {
	for _, lg := range legs(r, nets) {
		mtu := lg.mtu
		if lg.bind.Type != network.L2OpenVSwitch {
			br, ok := links[lg.bind.Bridge]
			if !ok {
				return fmt.Errorf("bridge %q not found", lg.bind.Bridge)
			}
			mtu = br.Attrs().MTU
		}
		l, ok := links[lg.host]
		if ok && !nlink.Owned(l, lg.host[:4]) {
			return fmt.Errorf("link %q exists and is not Strata's", lg.host)
		}
		if !ok {
			var err error
			if l, err = d.createVeth(lg, ns, network.Alias("router", r.ID)); err != nil {
				return fmt.Errorf("create leg %q: %w", lg.host, err)
			}
		}
		op := network.OVSPort{VNI: lg.vni, NetNS: ns, IfName: lg.inner, Created: !ok}
		if lg.mac != nil {
			op.MACs = []net.HardwareAddr{lg.mac}
		}
		if err := nlink.Attach(ctx, d.h, l, mtu, lg.bind, links, op, &d.changes); err != nil {
			return fmt.Errorf("leg %q: %w", lg.host, err)
		}
	}
	return nil
}

func (d *Driver) createVeth(lg leg, ns, alias string) (netlink.Link, error) {
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: lg.host}, PeerName: lg.inner, PeerHardwareAddr: lg.mac}
	return nlink.CreateVethIn(d.h, v, ns, alias, &d.changes)
}

// ensureInside converges what is inside the namespace: forwarding on, lo
// and the legs up with exactly their addresses, stale legs gone, routes.
func (d *Driver) ensureInside(r netspec.Router, ns string) error {
	if err := d.ensureForwarding(ns); err != nil {
		return err
	}
	h, err := netnsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	list, err := netlinksafe.LinkList(h)
	if err != nil {
		return fmt.Errorf("list links in %q: %w", ns, err)
	}
	wantLegs := map[string]leg{}
	for _, lg := range legs(r, nil) {
		wantLegs[lg.inner] = lg
	}
	var errs []error
	for _, l := range list {
		name := l.Attrs().Name
		lg, wanted := wantLegs[name]
		switch {
		case name == "lo":
			errs = append(errs, nlink.Fix(h, l, 0, 0, &d.changes))
		case wanted:
			if err := nlink.Fix(h, l, 0, 0, &d.changes); err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", name, err))
				continue
			}
			if lg.mac != nil && l.Attrs().HardwareAddr.String() != lg.mac.String() {
				if err := h.LinkSetHardwareAddr(l, lg.mac); err != nil {
					errs = append(errs, fmt.Errorf("%q: set mac %s: %w", name, lg.mac, err))
					continue
				}
				d.changes.Add(1)
			}
			errs = append(errs, d.ensureAddrs(h, l, lg.addrs))
		case strings.HasPrefix(name, netspec.RouterInnerInternal) || strings.HasPrefix(name, netspec.RouterInnerGateway):
			if err := h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete stale leg %q: %w", name, err))
			}
			d.changes.Add(1)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("in %q: %w", ns, err)
	}
	return d.ensureRoutes(h, r)
}

func (d *Driver) ensureForwarding(ns string) error {
	return netnsutil.Do(ns, func() error {
		const p = "/proc/sys/net/ipv4/ip_forward"
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if strings.TrimSpace(string(b)) == "1" {
			return nil
		}
		d.changes.Add(1)
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("turn on forwarding: %w", err)
		}
		return nil
	})
}

// ensureAddrs gives l exactly the IPv4 addresses want.
func (d *Driver) ensureAddrs(h *netlink.Handle, l netlink.Link, want []netip.Prefix) error {
	have, err := netlinksafe.AddrList(h, l, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("list addresses of %q: %w", l.Attrs().Name, err)
	}
	haveSet := map[string]bool{}
	wantSet := map[string]bool{}
	for _, p := range want {
		wantSet[p.String()] = true
	}
	for _, a := range have {
		ones, _ := a.Mask.Size()
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		k := netip.PrefixFrom(ip, ones).String()
		haveSet[k] = true
		if !wantSet[k] {
			if err := h.AddrDel(l, &a); err != nil && !nlink.IsNotFound(err) {
				return fmt.Errorf("delete %s from %q: %w", k, l.Attrs().Name, err)
			}
			d.changes.Add(1)
		}
	}
	for _, p := range want {
		if haveSet[p.String()] {
			continue
		}
		ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("add %s to %q: %w", p, l.Attrs().Name, err)
		}
		d.changes.Add(1)
	}
	return nil
}

// ensureRoutes makes the default route (via the gateway's next hop) and the
// static routes, and deletes the routes of ours that are not wanted.
func (d *Driver) ensureRoutes(h *netlink.Handle, r netspec.Router) error {
	want := map[string]netspec.Route{}
	if r.Gateway != nil && r.Gateway.NextHop.IsValid() {
		rt := netspec.Route{Dest: netip.MustParsePrefix("0.0.0.0/0"), NextHop: r.Gateway.NextHop}
		want[rt.Dest.String()+" "+rt.NextHop.String()] = rt
	}
	for _, rt := range r.Routes {
		want[rt.Dest.String()+" "+rt.NextHop.String()] = rt
	}
	have, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Protocol: routeProto, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	seen := map[string]bool{}
	for _, rt := range have {
		dst := "0.0.0.0/0"
		if rt.Dst != nil {
			dst = rt.Dst.String()
		}
		k := dst + " " + rt.Gw.String()
		if _, ok := want[k]; ok {
			seen[k] = true
			continue
		}
		if err := h.RouteDel(&rt); err != nil && !nlink.IsNotFound(err) {
			return fmt.Errorf("delete route %s: %w", k, err)
		}
		d.changes.Add(1)
	}
	for k, rt := range want {
		if seen[k] {
			continue
		}
		dst := &net.IPNet{IP: rt.Dest.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dest.Bits(), 32)}
		if err := h.RouteReplace(&netlink.Route{Dst: dst, Gw: rt.NextHop.AsSlice(), Protocol: routeProto}); err != nil {
			return fmt.Errorf("add route %s: %w", k, err)
		}
		d.changes.Add(1)
	}
	return nil
}
