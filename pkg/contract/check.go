package contract

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Violation is one way a set of resources breaks what hosts rely on. Key
// is the resource at fault and Field its offending field (a JSON path).
type Violation struct {
	Key     api.Key
	Field   string
	Message string
}

func (v Violation) Error() string {
	if v.Field != "" {
		return fmt.Sprintf("%s %s: %s", v.Key, v.Field, v.Message)
	}
	return fmt.Sprintf("%s: %s", v.Key, v.Message)
}

// Limits of what hosts accept.
const (
	MaxVNI = 1<<24 - 1
	MinMTU = 576
	MaxMTU = 65000
)

// Check reports every violation in a complete set of resources: a project
// (or several) with the global kinds they refer to. A set without
// violations maps, on every host, to a desired state the host's own checks
// accept. Facts may be nil.
func Check(rs []api.Resource, facts *Facts) []Violation {
	ix := NewIndex(rs)
	c := &checker{ix: ix, facts: facts}
	c.networks()
	c.subnets()
	c.ports()
	c.routers()
	c.floatingIPs()
	c.firewallGroups()
	c.securityGroups()
	c.instances()
	c.names()
	c.out = append(c.out, RouterLinkClashes(rs, nil)...)
	c.out = append(c.out, UnknownHosts(rs, facts.Known)...)
	sort.SliceStable(c.out, func(i, j int) bool { return c.out[i].Key.String() < c.out[j].Key.String() })
	return c.out
}

// Facts are what the coordinator knows of hosts that the resources do not
// say: which hosts exist, which physical networks each maps and which L2
// driver each runs.
type Facts struct {
	// Physnets maps a host to the physical networks its agent bridges;
	// a host missing from the map is not known and not checked.
	Physnets map[string][]string
	// Hosts are the hosts a resource may be bound or placed on: every
	// host an agent token was issued for (registered), that gossip has
	// seen, or that has reported. Nil: not checked.
	Hosts map[string]bool
	// L2Drivers maps a host to its L2 driver ("linuxbridge", "ovs");
	// a host missing from the map is not known and not checked.
	L2Drivers map[string]string
}

// Known reports whether host may be named by a resource: true when the
// facts do not list hosts.
func (f *Facts) Known(host string) bool {
	return f == nil || f.Hosts == nil || f.Hosts[host]
}

// CarriesGRE reports whether host can carry a gre network: only the ovs
// L2 driver can. A host that did not say (or nil Facts) counts as yes.
func (f *Facts) CarriesGRE(host string) bool {
	if f == nil || host == "" {
		return true
	}
	d, known := f.L2Drivers[host]
	return !known || d == "ovs"
}

type checker struct {
	ix    *Index
	facts *Facts
	out   []Violation
}

func (c *checker) add(r api.Resource, field, format string, a ...any) {
	c.out = append(c.out, Violation{Key: r.Key(), Field: field, Message: fmt.Sprintf(format, a...)})
}

func (c *checker) networks() {
	for _, r := range c.ix.Kind("network") {
		ns := Decode[api.NetworkSpec](r)
		if ns.SegmentationID == 0 || ns.SegmentationID > MaxVNI {
			c.add(r, "spec.segmentation_id", "%d is outside 1..%d", ns.SegmentationID, MaxVNI)
		}
		if ns.MTU != 0 && (ns.MTU < MinMTU || ns.MTU > MaxMTU) {
			c.add(r, "spec.mtu", "%d is outside %d..%d", ns.MTU, MinMTU, MaxMTU)
		}
		if ns.Type == "gre" && !c.facts.CarriesGRE(ns.DHCPHost) {
			c.add(r, "spec.dhcp_host", "host %q runs the %s L2 driver, which cannot carry a gre network; use a host on the ovs driver",
				ns.DHCPHost, c.facts.L2Drivers[ns.DHCPHost])
		}
	}
}

func (c *checker) subnets() {
	for _, r := range c.ix.Kind("subnet") {
		ss := Decode[api.SubnetSpec](r)
		if _, ok := c.ix.networks[key{r.Project, ss.Network}]; !ok {
			c.add(r, "spec.network", "network %q does not exist", ss.Network)
		}
		p, err := netip.ParsePrefix(ss.CIDR)
		if err != nil || p != p.Masked() {
			c.add(r, "spec.cidr", "%q is not a network address/length", ss.CIDR)
			continue
		}
		if !ss.DHCPEnabled() {
			continue
		}
		dp, ok := c.ix.ports[key{r.Project, api.DHCPPortName(ss.Network)}]
		if !ok || dp.Owner != api.PortOwnerDHCP || !hasIPIn(dp, r.Name, p) {
			c.add(r, "spec.dhcp", "DHCP is on but the network's DHCP port %q has no address in the subnet", api.DHCPPortName(ss.Network))
		}
	}
}

func hasIPIn(ps api.PortSpec, subnet string, p netip.Prefix) bool {
	for _, f := range ps.FixedIPs {
		if a, err := netip.ParseAddr(f.IP); err == nil && f.Subnet == subnet && p.Contains(a) {
			return true
		}
	}
	return false
}

func (c *checker) ports() {
	macs := map[key]string{} // project+network/mac -> port
	for _, r := range c.ix.Kind("port") {
		ps := c.ix.ports[key{r.Project, r.Name}]
		if n, ok := c.ix.networks[key{r.Project, ps.Network}]; !ok {
			c.add(r, "spec.network", "network %q does not exist", ps.Network)
		} else if n.Type == "gre" && !c.facts.CarriesGRE(ps.Host) {
			c.add(r, "spec.host", "host %q runs the %s L2 driver, which cannot carry gre network %q; use a host on the ovs driver",
				ps.Host, c.facts.L2Drivers[ps.Host], ps.Network)
		}
		mac, err := net.ParseMAC(ps.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
			c.add(r, "spec.mac", "%q is not a unicast Ethernet address", ps.MAC)
		} else {
			k := key{r.Project + "/" + ps.Network, mac.String()}
			if other, dup := macs[k]; dup {
				c.add(r, "spec.mac", "%s is already used by port %q on this network", mac, other)
			}
			macs[k] = r.Name
		}
		for i, f := range ps.FixedIPs {
			sp, ok := c.ix.subnets[key{r.Project, f.Subnet}]
			a, err := netip.ParseAddr(f.IP)
			p, err2 := netip.ParsePrefix(sp.CIDR)
			if !ok || err != nil || err2 != nil || sp.Network != ps.Network || !p.Contains(a) {
				c.add(r, fmt.Sprintf("spec.fixed_ips[%d]", i), "%q is not an address of subnet %q of network %q", f.IP, f.Subnet, ps.Network)
			}
		}
		for i, g := range ps.SecurityGroups {
			if _, ok := c.groupNamed(r.Project, g); !ok && g != DefaultSecurityGroup {
				c.add(r, fmt.Sprintf("spec.security_groups[%d]", i), "security group %q does not exist", g)
			}
		}
		c.owner(r, ps)
	}
}

func (c *checker) groupNamed(project, name string) (api.Resource, bool) {
	for _, g := range c.ix.Kind("securitygroup") {
		if g.Project == project && g.Name == name {
			return g, true
		}
	}
	return api.Resource{}, false
}

// owner checks that a port the coordinator made still has its owner: a
// network-owned port goes only with it.
func (c *checker) owner(r api.Resource, ps api.PortSpec) {
	switch ps.Owner {
	case api.PortOwnerDHCP:
		if r.Name != api.DHCPPortName(ps.Network) {
			c.add(r, "spec.owner", "a DHCP port of network %q must be named %q", ps.Network, api.DHCPPortName(ps.Network))
		}
	case api.PortOwnerRouterInterface:
		for _, rt := range c.ix.Kind("router") {
			if rt.Project != r.Project {
				continue
			}
			for _, in := range Decode[api.RouterSpec](rt).Interfaces {
				if api.RouterPortName(rt.Name, in.Subnet) == r.Name {
					return
				}
			}
		}
		c.add(r, "spec.owner", "router interface port has no router interface that owns it")
	}
}

func (c *checker) routers() {
	byHost := map[string][]netspec.Router{}
	for _, r := range c.ix.Kind("router") {
		rs := Decode[api.RouterSpec](r)
		if rs.ExternalNetwork != "" {
			ext, ok := c.ix.external[rs.ExternalNetwork]
			switch {
			case !ok:
				c.add(r, "spec.external_network", "external network %q does not exist", rs.ExternalNetwork)
			case c.facts != nil && rs.Host != "" && !c.facts.Maps(rs.Host, ext.PhysicalNetwork):
				c.add(r, "spec.external_network", "host %q does not map physical network %q of external network %q", rs.Host, ext.PhysicalNetwork, rs.ExternalNetwork)
			}
		}
		for i, in := range rs.Interfaces {
			field := fmt.Sprintf("spec.interfaces[%d].subnet", i)
			ss, ok := c.ix.subnets[key{r.Project, in.Subnet}]
			if !ok {
				c.add(r, field, "subnet %q does not exist", in.Subnet)
				continue
			}
			if _, ok := c.ix.networks[key{r.Project, ss.Network}]; !ok {
				c.add(r, field, "network %q of subnet %q does not exist", ss.Network, in.Subnet)
			}
			if _, _, ok := c.ix.routerPort(r.Project, r.Name, in.Subnet); !ok {
				c.add(r, field, "interface port %q is missing", api.RouterPortName(r.Name, in.Subnet))
			}
		}
		rts, err := c.ix.routersWhere(func(o api.Resource, _ api.RouterSpec) bool { return o.Key() == r.Key() })
		if err == nil && len(rts) == 1 {
			err = rts[0].Validate()
			byHost[rs.Host] = append(byHost[rs.Host], rts[0])
		}
		if err != nil {
			c.add(r, "spec", "hosts would refuse it: %v", err)
		}
	}
	for host, rts := range byHost {
		if err := netspec.ValidateRouters(rts); err != nil && host != "" {
			c.out = append(c.out, Violation{Key: api.Key{Kind: "host", Name: host}, Message: fmt.Sprintf("routers on this host: %v", err)})
		}
	}
}

// Maps reports whether host bridges physnet; a host that did not say
// which it bridges (or nil Facts) counts as yes.
func (f *Facts) Maps(host, physnet string) bool {
	if f == nil {
		return true
	}
	nets, known := f.Physnets[host]
	if !known {
		return true
	}
	for _, n := range nets {
		if n == physnet {
			return true
		}
	}
	return false
}

func (c *checker) floatingIPs() {
	for _, r := range c.ix.Kind("floatingip") {
		f := Decode[api.FloatingIPSpec](r)
		if f.Router == "" {
			continue
		}
		var rs api.RouterSpec
		found := false
		for _, rt := range c.ix.Kind("router") {
			if rt.Project == r.Project && rt.Name == f.Router {
				rs, found = Decode[api.RouterSpec](rt), true
			}
		}
		ps, hasPort := c.ix.ports[key{r.Project, f.Port}]
		switch {
		case !found:
			c.add(r, "spec.router", "router %q does not exist", f.Router)
		case rs.ExternalNetwork != f.ExternalNetwork:
			c.add(r, "spec.router", "router %q has no gateway on external network %q", f.Router, f.ExternalNetwork)
		case !hasPort || len(ps.FixedIPs) == 0:
			c.add(r, "spec.port", "port %q does not exist or has no address", f.Port)
		case !routes(rs, ps.FixedIPs[0].Subnet):
			c.add(r, "spec.port", "router %q has no interface on subnet %q of port %q", f.Router, ps.FixedIPs[0].Subnet, f.Port)
		}
	}
}

func routes(rs api.RouterSpec, subnet string) bool {
	for _, in := range rs.Interfaces {
		if in.Subnet == subnet {
			return true
		}
	}
	return false
}

func (c *checker) firewallGroups() {
	for _, r := range c.ix.Kind("firewallgroup") {
		g := Decode[api.FirewallGroupSpec](r)
		var rs api.RouterSpec
		found := false
		for _, rt := range c.ix.Kind("router") {
			if rt.Project == r.Project && rt.Name == g.Router {
				rs, found = Decode[api.RouterSpec](rt), true
			}
		}
		if !found {
			c.add(r, "spec.router", "router %q does not exist", g.Router)
			continue
		}
		for i, s := range g.Interfaces {
			if !routes(rs, s) {
				c.add(r, fmt.Sprintf("spec.interfaces[%d]", i), "router %q has no interface on subnet %q", g.Router, s)
			}
		}
	}
}

func (c *checker) securityGroups() {
	gs, err := c.ix.SecurityGroups()
	if err == nil {
		err = netspec.ValidateSecurityGroups(gs)
	}
	if err == nil {
		return
	}
	// Name the group at fault: validate each one against all the IDs.
	for _, r := range c.ix.Kind("securitygroup") {
		g, err := netspec.SecurityGroupFromAPI(r.Project, r.Name, Decode[api.SecurityGroupSpec](r))
		if err != nil {
			var fe *api.FieldError
			if errors.As(err, &fe) {
				c.add(r, fe.Field, "%s", fe.Message)
			} else {
				c.add(r, "spec", "%v", err)
			}
			continue
		}
		if err := netspec.ValidateSecurityGroups(withOthers(gs, g)); err != nil {
			c.add(r, "spec.rules", "hosts would refuse it: %v", err)
		}
	}
}

// withOthers is the defaults plus g, each other stored group reduced to
// its ID, so a remote group reference resolves but only g's rules count.
func withOthers(all []netspec.SecurityGroup, g netspec.SecurityGroup) []netspec.SecurityGroup {
	out := []netspec.SecurityGroup{g}
	for _, o := range all {
		if o.ID != g.ID {
			out = append(out, netspec.SecurityGroup{ID: o.ID})
		}
	}
	return out
}
