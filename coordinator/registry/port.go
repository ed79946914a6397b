package registry

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// PortKind is a NIC on a network. The coordinator's IPAM gives it a MAC
// and one address per subnet unless they are given; duplicates within a
// network are refused.
func PortKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "port", Plural: "ports", Scope: Project, Order: 30,
		NewSpec:      func() any { return &api.PortSpec{} },
		Admit:        admitPort,
		Assigned:     []string{"mac", "fixed_ips"},
		BeforeDelete: deletePort,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"network"},
			"properties": map[string]any{
				"network": str, "mac": str, "host": str, "dns_name": str,
				"security_groups": map[string]any{"type": "array", "items": str},
				"port_security":   map[string]any{"type": "boolean"},
				"allowed_address_pairs": map[string]any{"type": "array", "maxItems": 16, "items": map[string]any{
					"type": "object", "required": []string{"ip_address"}, "properties": map[string]any{"ip_address": str, "mac_address": str}}},
				"owner": map[string]any{"type": "string", "enum": []string{"", api.PortOwnerEndpoint, api.PortOwnerCompute, api.PortOwnerDHCP}},
				"fixed_ips": map[string]any{"type": "array", "items": map[string]any{
					"type": "object", "properties": map[string]any{"subnet": str, "ip": str}}},
			},
		},
	}
}

type subnetInfo struct {
	name   string
	prefix netip.Prefix
	gw     netip.Addr
	spec   api.SubnetSpec
}

func admitPort(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.PortSpec)
	var prev *api.PortSpec
	if a.Prev != nil {
		p := decode[api.PortSpec](*a.Prev)
		prev = &p
		if s.Network != p.Network {
			return api.Fieldf("spec.network", "cannot change from %q to %q", p.Network, s.Network)
		}
	}
	if _, _, err := getNetwork(a.Tx, r.Project, s.Network, "spec.network"); err != nil {
		return err
	}
	if prev == nil {
		if err := linkKeyFree(a.Tx.Keys("port"), *r, netspec.LinkKey); err != nil {
			return err
		}
	}
	switch s.Owner {
	case api.PortOwnerNone, api.PortOwnerEndpoint, api.PortOwnerCompute:
	case api.PortOwnerDHCP, api.PortOwnerRouterInterface:
		if prev == nil || prev.Owner != s.Owner {
			return &api.Error{Code: http.StatusForbidden, Field: "spec.owner", Message: s.Owner + " ports are made by the coordinator"}
		}
	default:
		return api.Fieldf("spec.owner", "%q is not one of \"\", endpoint, compute", s.Owner)
	}
	if s.Host != "" {
		if fe := api.ValidateName("spec.host", s.Host); fe != nil {
			return fe
		}
		if !a.Admin && (prev == nil || prev.Host != s.Host) {
			// A tenant does not pick hosts: instance ports are bound
			// with their instance, endpoint ports are an admin's tool.
			return &api.Error{Code: http.StatusForbidden, Field: "spec.host", Message: "only an admin may bind a port to a host"}
		}
	}
	if s.Owner == api.PortOwnerEndpoint && s.Host == "" {
		return api.Fieldf("spec.host", "an endpoint port needs the host to plug it on")
	}
	if s.DNSName == "" {
		s.DNSName = r.Name
	}
	if fe := api.ValidateName("spec.dns_name", s.DNSName); fe != nil {
		return fe
	}
	for i, g := range s.SecurityGroups {
		if g == DefaultSecurityGroup {
			continue
		}
		if _, err := a.Tx.Get(api.Key{Kind: "securitygroup", Project: r.Project, Name: g}); err != nil {
			return api.Fieldf(fmt.Sprintf("spec.security_groups[%d]", i), "security group %q does not exist in project %q", g, r.Project)
		}
	}
	for i := range s.AllowedAddressPairs {
		ap := &s.AllowedAddressPairs[i]
		pre, hw, err := netspec.ParseAddressPair(ap.IPAddress, ap.MACAddress)
		if err != nil {
			return api.Fieldf(fmt.Sprintf("spec.allowed_address_pairs[%d]", i), "%v", err)
		}
		if !s.PortSecurityEnabled() {
			return api.Fieldf("spec.allowed_address_pairs", "need port_security: without it the port may send from anything")
		}
		ap.IPAddress = pre.String()
		if pre.IsSingleIP() {
			ap.IPAddress = pre.Addr().String()
		}
		if hw != nil {
			ap.MACAddress = hw.String()
		}
	}
	others, err := portsOf(a, r.Project, s.Network)
	if err != nil {
		return err
	}
	if err := admitMAC(s, prev, r.Name, others); err != nil {
		return err
	}
	subnets, err := networkSubnets(a, r.Project, s.Network)
	if err != nil {
		return err
	}
	return admitFixedIPs(s, prev, r.Name, others, subnets)
}

func admitMAC(s *api.PortSpec, prev *api.PortSpec, name string, others []api.Resource) error {
	taken := map[string]string{}
	for _, o := range others {
		if o.Name != name {
			taken[decode[api.PortSpec](o).MAC] = o.Name
		}
	}
	if s.MAC == "" && prev != nil {
		s.MAC = prev.MAC
	}
	if s.MAC == "" {
		for i := 0; i < 16; i++ {
			if m := newMAC(); taken[m] == "" {
				s.MAC = m
				return nil
			}
		}
		return Conflictf("could not find a free MAC address")
	}
	hw, err := net.ParseMAC(s.MAC)
	if err != nil || len(hw) != 6 || hw[0]&1 == 1 || hw.String() == "00:00:00:00:00:00" {
		return api.Fieldf("spec.mac", "%q is not a unicast Ethernet address", s.MAC)
	}
	s.MAC = hw.String()
	if other, dup := taken[s.MAC]; dup {
		return api.Fieldf("spec.mac", "%s is already used by port %q on this network", s.MAC, other)
	}
	return nil
}

func networkSubnets(a *Admission, project, network string) ([]subnetInfo, error) {
	rs, err := subnetsOf(a, project, network)
	if err != nil {
		return nil, err
	}
	var out []subnetInfo
	for _, r := range rs {
		ss := decode[api.SubnetSpec](r)
		p, err := netip.ParsePrefix(ss.CIDR)
		if err != nil {
			continue
		}
		gw, _ := netip.ParseAddr(ss.Gateway)
		out = append(out, subnetInfo{name: r.Name, prefix: p, gw: gw, spec: ss})
	}
	return out, nil
}

func admitFixedIPs(s *api.PortSpec, prev *api.PortSpec, name string, others []api.Resource, subnets []subnetInfo) error {
	used := map[netip.Addr]string{}
	for _, o := range others {
		if o.Name == name {
			continue
		}
		for _, ip := range decode[api.PortSpec](o).FixedIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil {
				used[a] = o.Name
			}
		}
	}
	if len(s.FixedIPs) == 0 && prev != nil {
		s.FixedIPs = prev.FixedIPs
	}
	if len(s.FixedIPs) == 0 {
		// One address from every subnet of the network, as neutron does.
		for _, sn := range subnets {
			s.FixedIPs = append(s.FixedIPs, api.FixedIP{Subnet: sn.name})
		}
	}
	mine := map[netip.Addr]bool{}
	for a := range used {
		mine[a] = false // taken, by another port
	}
	from := map[string]netip.Addr{} // where each subnet's search goes on
	for i := range s.FixedIPs {
		if err := admitFixedIP(&s.FixedIPs[i], fmt.Sprintf("spec.fixed_ips[%d]", i), used, mine, from, subnets); err != nil {
			return err
		}
	}
	return nil
}

// admitFixedIP checks or allocates one address. taken holds every address
// in use on the network (true: by this port); an allocation goes on from
// where the last one in the subnet stopped, so a port's addresses cost one
// walk of the pools, not one per address, and nothing is copied.
func admitFixedIP(f *api.FixedIP, field string, used map[netip.Addr]string, taken map[netip.Addr]bool, from map[string]netip.Addr, subnets []subnetInfo) error {
	var sn *subnetInfo
	for i := range subnets {
		if subnets[i].name == f.Subnet {
			sn = &subnets[i]
		}
	}
	if f.Subnet != "" && sn == nil {
		return api.Fieldf(field+".subnet", "subnet %q is not a subnet of this network", f.Subnet)
	}
	if f.IP == "" {
		if sn == nil {
			return api.Fieldf(field, "give a subnet, an ip, or both")
		}
		ip, err := allocateFrom(sn.spec.AllocationPools, taken, sn.gw, from[sn.name])
		if err != nil {
			return Conflictf("subnet %q: %v", sn.name, err)
		}
		f.IP = ip.String()
		taken[ip], from[sn.name] = true, ip
		return nil
	}
	ip, err := canonAddr(field+".ip", &f.IP)
	if err != nil {
		return err
	}
	if sn == nil {
		for i := range subnets {
			if subnets[i].prefix.Contains(ip) {
				sn = &subnets[i]
			}
		}
		if sn == nil {
			return api.Fieldf(field+".ip", "%s is outside every subnet of this network", ip)
		}
		f.Subnet = sn.name
	}
	switch {
	case !sn.prefix.Contains(ip):
		return api.Fieldf(field+".ip", "%s is outside subnet %q (%s)", ip, sn.name, sn.prefix)
	case !usable(sn.prefix, ip):
		return api.Fieldf(field+".ip", "%s is the network or broadcast address of %s", ip, sn.prefix)
	case ip == sn.gw:
		return api.Fieldf(field+".ip", "%s is the gateway of subnet %q", ip, sn.name)
	case taken[ip]:
		return api.Fieldf(field+".ip", "%s is listed twice", ip)
	}
	if other, dup := used[ip]; dup {
		return api.Fieldf(field+".ip", "%s is already used by port %q", ip, other)
	}
	f.IP = ip.String()
	taken[ip] = true
	return nil
}

// deletePort refuses to orphan a floating IP; router and DHCP ports go
// with their router or subnet.
func deletePort(a *Admission, r api.Resource) error {
	ps := decode[api.PortSpec](r)
	switch ps.Owner {
	case api.PortOwnerDHCP:
		return Conflictf("port %q is network %q's DHCP port; it goes when the network's subnets stop serving DHCP", r.Name, ps.Network)
	case api.PortOwnerRouterInterface:
		routers, err := a.Tx.List("router", r.Project, false)
		if err != nil {
			return err
		}
		for _, rt := range routers {
			for _, in := range decode[api.RouterSpec](rt).Interfaces {
				if api.RouterPortName(rt.Name, in.Subnet) == r.Name {
					return Conflictf("port %q is router %q's interface on subnet %q; it goes with that interface (routers remove-interface)", r.Name, rt.Name, in.Subnet)
				}
			}
		}
	}
	fips, err := a.Tx.List("floatingip", r.Project, false)
	if err != nil {
		return err
	}
	for _, f := range fips {
		if decode[api.FloatingIPSpec](f).Port == r.Name {
			return Conflictf("port %q has floating ip %q; disassociate it first", r.Name, f.Name)
		}
	}
	return nil
}

// linkKeyFree refuses a new port whose link names (tap, endpoint veth)
// would be another port's, in any project: those names carry only a
// short hash (netspec.LinkKey), so the coordinator keeps it unique.
func linkKeyFree(ports []api.Key, r api.Resource, linkKey func(portID string) string) error {
	mine := linkKey(netspec.ResourceID(r.Project, r.Name))
	for _, k := range ports {
		if k.Project == r.Project && k.Name == r.Name {
			continue
		}
		if linkKey(netspec.ResourceID(k.Project, k.Name)) == mine {
			return Conflictf("port name %q: its host link names would be those of another port in the cluster; choose another name", r.Name)
		}
	}
	return nil
}
