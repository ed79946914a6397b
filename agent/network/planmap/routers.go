package planmap

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// index holds the plan's network resources by project/name.
type index struct {
	networks map[netKey]api.NetworkSpec
	subnets  map[netKey]api.SubnetSpec
	ports    map[netKey]api.PortSpec
	external map[string]api.ExternalNetworkSpec
}

func newIndex(s *plan.Snapshot) index {
	ix := index{networks: map[netKey]api.NetworkSpec{}, subnets: map[netKey]api.SubnetSpec{},
		ports: map[netKey]api.PortSpec{}, external: map[string]api.ExternalNetworkSpec{}}
	for _, r := range s.Resources {
		k := netKey{r.Project, r.Name}
		switch r.Kind {
		case "network":
			ix.networks[k] = decode[api.NetworkSpec](r)
		case "subnet":
			ix.subnets[k] = decode[api.SubnetSpec](r)
		case "port":
			ix.ports[k] = decode[api.PortSpec](r)
		case "externalnetwork":
			ix.external[r.Name] = decode[api.ExternalNetworkSpec](r)
		}
	}
	return ix
}

func decode[T any](r api.Resource) T {
	var v T
	_ = json.Unmarshal(r.Spec, &v)
	return v
}

// routerPort is a router's interface port on a subnet, which carries the
// MAC the router's leg must have.
func routerPort(ix index, project, router, subnet string) (string, api.PortSpec, bool) {
	name := api.RouterPortName(router, subnet)
	ps, ok := ix.ports[netKey{project, name}]
	return name, ps, ok && ps.Owner == api.PortOwnerRouterInterface
}

// Routers builds the routers placed on this host.
func Routers(s *plan.Snapshot, ix index, host string) ([]netspec.Router, error) {
	fips := map[netKey][]api.FloatingIPSpec{}
	fgs := map[netKey]api.FirewallGroupSpec{}
	fgNames := map[netKey]string{}
	for _, r := range s.Resources {
		switch r.Kind {
		case "floatingip":
			f := decode[api.FloatingIPSpec](r)
			if f.Router != "" && f.Port != "" {
				fips[netKey{r.Project, f.Router}] = append(fips[netKey{r.Project, f.Router}], f)
			}
		case "firewallgroup":
			g := decode[api.FirewallGroupSpec](r)
			fgs[netKey{r.Project, g.Router}] = g
			fgNames[netKey{r.Project, g.Router}] = r.Name
		}
	}
	var out []netspec.Router
	for _, r := range s.Kind("router") {
		rs := decode[api.RouterSpec](r)
		if rs.Host != host {
			continue
		}
		k := netKey{r.Project, r.Name}
		rt, err := router(ix, r, rs)
		if err != nil {
			return nil, fmt.Errorf("router %s: %w", r.Key(), err)
		}
		for _, f := range fips[k] {
			ps := ix.ports[netKey{r.Project, f.Port}]
			ip, err1 := netip.ParseAddr(f.IP)
			var fixed netip.Addr
			var err2 error = fmt.Errorf("port %q has no address", f.Port)
			if len(ps.FixedIPs) > 0 {
				fixed, err2 = netip.ParseAddr(ps.FixedIPs[0].IP)
			}
			if err1 != nil || err2 != nil {
				continue // the port went since; the next plan drops the FIP
			}
			rt.FloatingIPs = append(rt.FloatingIPs, netspec.FloatingIP{IP: ip, FixedIP: fixed, PortID: PortID(r.Project, f.Port)})
		}
		sort.Slice(rt.FloatingIPs, func(i, j int) bool { return rt.FloatingIPs[i].IP.Less(rt.FloatingIPs[j].IP) })
		if g, ok := fgs[k]; ok {
			fw, err := firewall(r.Project, fgNames[k], g, rt, ix, r.Name)
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

func router(ix index, r api.Resource, rs api.RouterSpec) (netspec.Router, error) {
	rt := netspec.Router{ID: PortID(r.Project, r.Name), Project: r.Project}
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
		gw := &netspec.Gateway{NetworkID: rs.ExternalNetwork, Bridge: network.ProviderBridgeName(ext.PhysicalNetwork), Addr: netip.PrefixFrom(ip, p.Bits())}
		if nh, err := netip.ParseAddr(ext.Gateway); err == nil {
			gw.NextHop = nh
		}
		rt.Gateway, rt.SNAT = gw, rs.SNATEnabled()
	}
	for _, in := range rs.Interfaces {
		ss, ok := ix.subnets[netKey{r.Project, in.Subnet}]
		ns, ok2 := ix.networks[netKey{r.Project, ss.Network}]
		name, ps, ok3 := routerPort(ix, r.Project, r.Name, in.Subnet)
		if !ok || !ok2 || !ok3 {
			continue // not all in the plan yet: converges on a later epoch
		}
		p, err := netip.ParsePrefix(ss.CIDR)
		gw, err2 := netip.ParseAddr(ss.Gateway)
		mac, err3 := net.ParseMAC(ps.MAC)
		if err != nil || err2 != nil || err3 != nil {
			return rt, fmt.Errorf("interface on subnet %q: bad cidr, gateway or mac", in.Subnet)
		}
		rt.Interfaces = append(rt.Interfaces, netspec.Interface{ID: PortID(r.Project, name), NetworkID: NetworkID(ns.SegmentationID),
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

func firewall(project, name string, g api.FirewallGroupSpec, rt netspec.Router, ix index, router string) (*netspec.FirewallGroup, error) {
	fw := &netspec.FirewallGroup{ID: PortID(project, name)}
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
			if sub.project == project && PortID(project, api.RouterPortName(router, sub.name)) == in.ID &&
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
func SecurityGroups(s *plan.Snapshot, ix index) ([]netspec.SecurityGroup, error) {
	var out []netspec.SecurityGroup
	stored := map[string]bool{}
	for _, r := range s.Kind("securitygroup") {
		g, err := netspec.SecurityGroupFromAPI(r.Project, r.Name, decode[api.SecurityGroupSpec](r))
		if err != nil {
			return nil, fmt.Errorf("security group %s: %w", r.Key(), err)
		}
		stored[g.ID] = true
		out = append(out, g)
	}
	projects := map[string]bool{}
	for k := range ix.networks {
		projects[k.project] = true
	}
	for _, r := range s.Kind("securitygroup") {
		projects[r.Project] = true
	}
	for p := range projects {
		if id := netspec.GroupID(p, "default"); !stored[id] {
			out = append(out, netspec.DefaultSecurityGroup(id))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// portGroups is the groups a port is filtered by: none for ports the
// coordinator makes (DHCP, router) or with port security off.
func portGroups(project string, ps api.PortSpec) []string {
	if ps.Owner == api.PortOwnerDHCP || ps.Owner == api.PortOwnerRouterInterface || !ps.PortSecurityEnabled() {
		return nil
	}
	names := ps.SecurityGroups
	if len(names) == 0 {
		names = []string{"default"}
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = netspec.GroupID(project, n)
	}
	return out
}
