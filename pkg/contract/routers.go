package contract

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Routers builds the routers placed on host ("" for every router), as the
// host applies them. Pieces not all present yet (a subnet, its network or
// the interface port) are left out: a host plan may lag; Check reports
// what the coordinator must never commit.
func (ix *Index) Routers(host string) ([]netspec.Router, error) {
	return ix.routersWhere(func(_ api.Resource, rs api.RouterSpec) bool { return host == "" || rs.Host == host })
}

// routersWhere builds the routers keep selects.
func (ix *Index) routersWhere(keep func(api.Resource, api.RouterSpec) bool) ([]netspec.Router, error) {
	fips := map[key][]api.FloatingIPSpec{}
	fgs := map[key]api.FirewallGroupSpec{}
	fgNames := map[key]string{}
	for _, r := range ix.all {
		switch r.Kind {
		case "floatingip":
			f := Decode[api.FloatingIPSpec](r)
			if f.Router != "" && f.Port != "" {
				fips[key{r.Project, f.Router}] = append(fips[key{r.Project, f.Router}], f)
			}
		case "firewallgroup":
			g := Decode[api.FirewallGroupSpec](r)
			fgs[key{r.Project, g.Router}] = g
			fgNames[key{r.Project, g.Router}] = r.Name
		}
	}
	var out []netspec.Router
	for _, r := range ix.Kind("router") {
		rs := Decode[api.RouterSpec](r)
		if !keep(r, rs) {
			continue
		}
		k := key{r.Project, r.Name}
		rt, err := ix.router(r, rs)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", r.Key(), err)
		}
		for _, f := range fips[k] {
			ps := ix.ports[key{r.Project, f.Port}]
			ip, err1 := netip.ParseAddr(f.IP)
			var fixed netip.Addr
			var err2 error = fmt.Errorf("port %q has no address", f.Port)
			if len(ps.FixedIPs) > 0 {
				fixed, err2 = netip.ParseAddr(ps.FixedIPs[0].IP)
			}
			if err1 != nil || err2 != nil {
				continue // the port went since; the next plan drops the FIP
			}
			rt.FloatingIPs = append(rt.FloatingIPs, netspec.FloatingIP{IP: ip, FixedIP: fixed, PortID: netspec.ResourceID(r.Project, f.Port)})
		}
		sort.Slice(rt.FloatingIPs, func(i, j int) bool { return rt.FloatingIPs[i].IP.Less(rt.FloatingIPs[j].IP) })
		if g, ok := fgs[k]; ok {
			fw, err := ix.firewall(r.Project, fgNames[k], g, rt, r.Name)
			if err != nil {
				return nil, fmt.Errorf("firewall group of %s: %w", r.Key(), err)
			}
			rt.Firewall = fw
		}
		out = append(out, rt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (ix *Index) router(r api.Resource, rs api.RouterSpec) (netspec.Router, error) {
	rt := netspec.Router{ID: netspec.ResourceID(r.Project, r.Name), Project: r.Project}
	if rs.ExternalNetwork != "" {
		ext, ok := ix.external[rs.ExternalNetwork]
		if !ok {
			return rt, fmt.Errorf("external network %q is not in the plan", rs.ExternalNetwork)
		}
		p, err := netip.ParsePrefix(ext.CIDR)
		ip, err2 := netip.ParseAddr(rs.ExternalIP)
		if err != nil || err2 != nil {
			return rt, fmt.Errorf("external address %q on %q", rs.ExternalIP, ext.CIDR)
		}
		gw := &netspec.Gateway{NetworkID: rs.ExternalNetwork, Bridge: netspec.ProviderBridge(ext.PhysicalNetwork), Addr: netip.PrefixFrom(ip, p.Bits())}
		if nh, err := netip.ParseAddr(ext.Gateway); err == nil {
			gw.NextHop = nh
		}
		rt.Gateway, rt.SNAT = gw, rs.SNATEnabled()
	}
	for _, in := range rs.Interfaces {
		ss, ok := ix.subnets[key{r.Project, in.Subnet}]
		ns, ok2 := ix.networks[key{r.Project, ss.Network}]
		name, ps, ok3 := ix.routerPort(r.Project, r.Name, in.Subnet)
		if !ok || !ok2 || !ok3 {
			continue // not all in the plan yet: converges on a later epoch
		}
		p, err := netip.ParsePrefix(ss.CIDR)
		gw, err2 := netip.ParseAddr(ss.Gateway)
		mac, err3 := net.ParseMAC(ps.MAC)
		if err != nil || err2 != nil || err3 != nil {
			return rt, fmt.Errorf("interface on subnet %q: bad cidr, gateway or mac", in.Subnet)
		}
		rt.Interfaces = append(rt.Interfaces, netspec.Interface{ID: netspec.ResourceID(r.Project, name), NetworkID: netspec.NetworkID(ns.SegmentationID),
			Addr: netip.PrefixFrom(gw, p.Bits()), MAC: mac})
	}
	for _, hr := range rs.Routes {
		dst, err := netip.ParsePrefix(hr.Destination)
		nh, err2 := netip.ParseAddr(hr.NextHop)
		if err == nil && err2 == nil {
			rt.Routes = append(rt.Routes, netspec.Route{Dest: dst, NextHop: nh})
		}
	}
	return rt, nil
}

func (ix *Index) firewall(project, name string, g api.FirewallGroupSpec, rt netspec.Router, router string) (*netspec.FirewallGroup, error) {
	fw := &netspec.FirewallGroup{ID: netspec.ResourceID(project, name)}
	in, err := netspec.FirewallPolicyFromAPI("spec.ingress", "in", g.Ingress)
	if err != nil {
		return nil, err
	}
	out, err := netspec.FirewallPolicyFromAPI("spec.egress", "out", g.Egress)
	if err != nil {
		return nil, err
	}
	fw.Ingress, fw.Egress = in, out
	covered := map[string]bool{}
	for _, s := range g.Interfaces {
		covered[s] = true
	}
	for _, in := range rt.Interfaces {
		for sub := range ix.subnets {
			if sub.project == project && netspec.ResourceID(project, api.RouterPortName(router, sub.name)) == in.ID &&
				(len(covered) == 0 || covered[sub.name]) {
				fw.Ports = append(fw.Ports, in.ID)
			}
		}
	}
	sort.Strings(fw.Ports)
	return fw, nil
}

// SecurityGroups lists every group ports may refer to: the stored ones,
// and each project's implicit "default" where none is stored.
func (ix *Index) SecurityGroups() ([]netspec.SecurityGroup, error) {
	var out []netspec.SecurityGroup
	stored := map[string]bool{}
	projects := map[string]bool{}
	for _, r := range ix.Kind("securitygroup") {
		g, err := netspec.SecurityGroupFromAPI(r.Project, r.Name, Decode[api.SecurityGroupSpec](r))
		if err != nil {
			return nil, fmt.Errorf("security group %s: %w", r.Key(), err)
		}
		stored[g.ID] = true
		projects[r.Project] = true
		out = append(out, g)
	}
	for k := range ix.networks {
		projects[k.project] = true
	}
	for p := range projects {
		if id := netspec.GroupID(p, DefaultSecurityGroup); !stored[id] {
			out = append(out, netspec.DefaultSecurityGroup(id))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DefaultSecurityGroup is the group of ports that name none.
const DefaultSecurityGroup = "default"

// PortGroups is the groups a port is filtered by: none for ports the
// coordinator makes (DHCP, router) or with port security off.
func PortGroups(project string, ps api.PortSpec) []string {
	if ps.Owner == api.PortOwnerDHCP || ps.Owner == api.PortOwnerRouterInterface || !ps.PortSecurityEnabled() {
		return nil
	}
	names := ps.SecurityGroups
	if len(names) == 0 {
		names = []string{DefaultSecurityGroup}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = netspec.GroupID(project, n)
	}
	return out
}
