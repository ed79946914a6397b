package registry

import (
	"fmt"
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
)

// SubnetKind is an IPv4 or IPv6 range of a network. Subnets of one network
// may not overlap; across networks and projects they may.
func SubnetKind() *Kind {
	str := map[string]any{"type": "string"}
	rng := map[string]any{"type": "object", "properties": map[string]any{"start": str, "end": str}}
	route := map[string]any{"type": "object", "properties": map[string]any{"destination": str, "nexthop": str}}
	return &Kind{
		Name: "subnet", Plural: "subnets", Scope: Project, Order: 20,
		NewSpec:      func() any { return &api.SubnetSpec{} },
		Admit:        admitSubnet,
		BeforeDelete: deleteSubnet,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"network", "cidr"},
			"properties": map[string]any{
				"network": str, "cidr": str, "gateway": str,
				"allocation_pools": map[string]any{"type": "array", "items": rng},
				"dns_servers":      map[string]any{"type": "array", "items": str},
				"host_routes":      map[string]any{"type": "array", "items": route},
				"dhcp":             map[string]any{"type": "boolean"},
			},
		},
	}
}

func admitSubnet(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.SubnetSpec)
	if _, err := canonPrefix("spec.cidr", &s.CIDR); err != nil {
		return err
	}
	if a.Prev != nil {
		prev := decode[api.SubnetSpec](*a.Prev)
		if s.Network != prev.Network {
			return api.Fieldf("spec.network", "cannot change from %q to %q", prev.Network, s.Network)
		}
		if s.CIDR != prev.CIDR {
			return api.Fieldf("spec.cidr", "cannot change from %s to %s; make a new subnet", prev.CIDR, s.CIDR)
		}
	}
	if _, _, err := getNetwork(a.Tx, r.Project, s.Network, "spec.network"); err != nil {
		return err
	}
	p, err := parseCIDR(s.CIDR)
	if err != nil {
		return err
	}
	if err := checkOverlap(a, r, s.Network, p); err != nil {
		return err
	}
	gw, err := admitGateway("spec.gateway", &s.Gateway, p)
	if err != nil {
		return err
	}
	if err := admitPools("spec.allocation_pools", &s.AllocationPools, p, gw); err != nil {
		return err
	}
	if err := admitOptions(s, p); err != nil {
		return err
	}
	on := s.DHCPEnabled()
	s.DHCP = &on
	return syncDHCPPort(a, r.Project, s.Network, r.Name, *s, p, gw)
}

func parseCIDR(v string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return p, api.Fieldf("spec.cidr", "%q is not a CIDR such as 10.1.1.0/24", v)
	}
	if p != p.Masked() {
		return p, api.Fieldf("spec.cidr", "%s has host bits set; did you mean %s?", v, p.Masked())
	}
	if (p.Addr().Is4() && p.Bits() > 30) || (p.Addr().Is6() && p.Bits() > 126) {
		return p, api.Fieldf("spec.cidr", "%s is too small to hold a gateway and a port", v)
	}
	return p, nil
}

func checkOverlap(a *Admission, r *api.Resource, network string, p netip.Prefix) error {
	others, err := subnetsOf(a, r.Project, network)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.Name == r.Name {
			continue
		}
		op, err := netip.ParsePrefix(decode[api.SubnetSpec](o).CIDR)
		if err == nil && op.Overlaps(p) {
			return api.Fieldf("spec.cidr", "%s overlaps subnet %q (%s) of network %q", p, o.Name, op, network)
		}
	}
	return nil
}

// admitGateway checks and defaults a gateway field: "" is the first
// address, "none" no gateway.
func admitGateway(field string, v *string, p netip.Prefix) (netip.Addr, error) {
	switch *v {
	case "none":
		return netip.Addr{}, nil
	case "":
		gw := p.Masked().Addr().Next()
		*v = gw.String()
		return gw, nil
	}
	gw, err := canonAddr(field, v)
	if err != nil {
		return gw, err
	}
	if !usable(p, gw) {
		return gw, api.Fieldf(field, "%q is not a usable address of %s (or \"none\")", *v, p)
	}
	return gw, nil
}

// admitPools checks and defaults allocation pools: inside p, not
// overlapping, not holding the gateway.
func admitPools(field string, pools *[]api.IPRange, p netip.Prefix, gw netip.Addr) error {
	if len(*pools) == 0 {
		*pools = []api.IPRange{defaultPool(p, gw)}
	}
	base := field
	type span struct{ lo, hi netip.Addr }
	var seen []span
	for i := range *pools {
		r := &(*pools)[i]
		field := fmt.Sprintf("%s[%d]", base, i)
		lo, err1 := canonAddr(field+".start", &r.Start)
		hi, err2 := canonAddr(field+".end", &r.End)
		switch {
		case err1 != nil || !usable(p, lo):
			return api.Fieldf(field+".start", "%q is not a usable address of %s", r.Start, p)
		case err2 != nil || !usable(p, hi):
			return api.Fieldf(field+".end", "%q is not a usable address of %s", r.End, p)
		case hi.Less(lo):
			return api.Fieldf(field, "start %s is after end %s", lo, hi)
		case gw.IsValid() && !gw.Less(lo) && !hi.Less(gw):
			return api.Fieldf(field, "contains the gateway %s", gw)
		}
		for _, o := range seen {
			if !hi.Less(o.lo) && !o.hi.Less(lo) {
				return api.Fieldf(field, "%s-%s overlaps another pool", lo, hi)
			}
		}
		seen = append(seen, span{lo, hi})
	}
	return nil
}

func admitOptions(s *api.SubnetSpec, p netip.Prefix) error {
	for i := range s.DNSServers {
		if _, err := canonAddr(fmt.Sprintf("spec.dns_servers[%d]", i), &s.DNSServers[i]); err != nil {
			return err
		}
	}
	for i := range s.HostRoutes {
		hr := &s.HostRoutes[i]
		field := fmt.Sprintf("spec.host_routes[%d]", i)
		if _, err := canonPrefix(field+".destination", &hr.Destination); err != nil {
			return err
		}
		nh, err := canonAddr(field+".nexthop", &hr.NextHop)
		if err != nil {
			return err
		}
		if !p.Contains(nh) {
			return api.Fieldf(field+".nexthop", "%q is not an address of %s", hr.NextHop, p)
		}
	}
	return nil
}

func deleteSubnet(a *Admission, r api.Resource) error {
	s := decode[api.SubnetSpec](r)
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return err
	}
	ports, err := portsOf(a, r.Project, s.Network)
	if err != nil {
		return err
	}
	for _, port := range ports {
		ps := decode[api.PortSpec](port)
		if ps.Owner == api.PortOwnerDHCP {
			continue
		}
		for _, ip := range ps.FixedIPs {
			if ip.Subnet == r.Name {
				return Conflictf("subnet %q still has port %q (%s); delete or readdress it first", r.Name, port.Name, ip.IP)
			}
		}
	}
	off := false
	s.DHCP = &off
	return syncDHCPPort(a, r.Project, s.Network, r.Name, s, p, netip.Addr{})
}
