package contracttest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// call is one API request the generator makes.
type call struct {
	method, path string
	body         any
}

func (c call) String() string { return c.method + " " + c.path + " " + fmt.Sprint(c.body) }

// gen draws API calls from small pools of names, so creates, updates and
// deletes keep hitting the same resources and their references, with a
// share of input that must be refused.
type gen struct {
	r        *rand.Rand
	projects []string
}

var (
	hosts    = []string{"h1", "h2", "h3"}
	nets     = []string{"n1", "n2", "n3"}
	subnets  = []string{"s1", "s2", "s3", "s4"}
	ports    = []string{"p1", "p2", "p3", "p4", "p5"}
	groups   = []string{"sg1", "sg2", strings.Repeat("g", 60)}
	routers  = []string{"r1", "r2"}
	fips     = []string{"f1", "f2", "f3"}
	fwgroups = []string{"fw1"}
	externs  = []string{"ext1", "ext2"}
	volumes  = []string{"v1", "v2", "v3"}
	vsnaps   = []string{"vs1", "vs2"}
	cidrs    = []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24", "10.0.0.0/16", "192.0.2.0/25", "10.0.3.0/28", "10.0.0.1/24", "fd00::/64", "bad"}
)

func (g *gen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }
func (g *gen) maybe(p float64) bool    { return g.r.Float64() < p }

func (g *gen) subset(xs []string) []string {
	var out []string
	for _, x := range xs {
		if g.maybe(0.4) {
			out = append(out, x)
		}
	}
	return out
}

func (g *gen) path(plural, project, name string) string {
	p := "/v1/" + plural
	if project != "" {
		p = "/v1/projects/" + project + "/" + plural
	}
	if name != "" {
		p += "/" + name
	}
	return p
}

// next returns a random call.
func (g *gen) next() call {
	proj := g.pick(g.projects)
	type maker func(project string) (string, string, any) // plural, name, spec
	makers := []maker{g.network, g.subnet, g.port, g.port, g.securityGroup, g.router, g.router, g.floatingIP, g.floatingIP, g.firewallGroup, g.external, g.volume, g.volume, g.volumeSnapshot}
	m := makers[g.r.IntN(len(makers))]
	plural, name, spec := m(proj)
	if plural == "externalnetworks" {
		proj = ""
	}
	switch n := g.r.IntN(10); {
	case n < 3: // delete, owned ports included
		if plural == "ports" && g.maybe(0.3) {
			if g.maybe(0.5) {
				name = api.DHCPPortName(g.pick(nets))
			} else {
				name = api.RouterPortName(g.pick(routers), g.pick(subnets))
			}
		}
		return call{http.MethodDelete, g.path(plural, proj, name), nil}
	default:
		return call{http.MethodPut, g.path(plural, proj, name), api.ResourceRequest{Name: name, Spec: mustJSON(spec)}}
	}
}

func (g *gen) volume(string) (string, string, any) {
	s := api.VolumeSpec{SizeGiB: 1 + g.r.IntN(3)}
	switch n := g.r.IntN(10); {
	case n == 0:
		s.Type = "nosuch"
	case n == 1:
		s.SizeGiB = 0
	case n < 4:
		s.Snapshot = g.pick(append(vsnaps, "nosuch"))
		s.SizeGiB = 3
	case n < 6:
		s.Volume = g.pick(volumes)
		s.SizeGiB = 3
	}
	return "volumes", g.pick(volumes), s
}

func (g *gen) volumeSnapshot(string) (string, string, any) {
	return "volumesnapshots", g.pick(vsnaps), api.VolumeSnapshotSpec{Volume: g.pick(append(volumes, "nosuch"))}
}

func (g *gen) network(string) (string, string, any) {
	s := api.NetworkSpec{}
	if g.maybe(0.1) {
		s.MTU = []int{100, 1400, 9000, 70000}[g.r.IntN(4)]
	}
	if g.maybe(0.1) {
		s.DHCPHost = g.pick(append(hosts, "h9"))
	}
	return "networks", g.pick(nets), s
}

func (g *gen) subnet(string) (string, string, any) {
	s := api.SubnetSpec{Network: g.pick(append(nets, "n9")), CIDR: g.pick(cidrs)}
	if g.maybe(0.2) {
		s.Gateway = g.pick([]string{"none", "10.0.0.1", "10.0.1.254", "bad"})
	}
	if g.maybe(0.3) {
		off := false
		s.DHCP = &off
	}
	if g.maybe(0.1) {
		s.HostRoutes = []api.HostRoute{{Destination: "172.16.0.0/12", NextHop: "10.0.0.9"}}
	}
	return "subnets", g.pick(subnets), s
}

func (g *gen) port(string) (string, string, any) {
	s := api.PortSpec{Network: g.pick(append(nets, "n9"))}
	if g.maybe(0.8) {
		s.Host = g.pick(hosts)
	}
	if g.maybe(0.3) {
		s.Owner = g.pick([]string{api.PortOwnerEndpoint, api.PortOwnerCompute, api.PortOwnerDHCP, "bogus"})
	}
	if g.maybe(0.4) {
		s.SecurityGroups = g.subset(append(groups, "default", "nosuch"))
	}
	if g.maybe(0.1) {
		off := false
		s.PortSecurity = &off
	}
	if g.maybe(0.2) {
		s.FixedIPs = []api.FixedIP{{Subnet: g.pick(subnets), IP: g.pick([]string{"", "10.0.0.5", "10.0.1.5", "10.0.0.1", "192.0.2.5"})}}
	}
	if g.maybe(0.1) {
		s.MAC = g.pick([]string{"02:00:00:00:00:01", "01:00:5e:00:00:01", "zz"})
	}
	return "ports", g.pick(ports), s
}

func (g *gen) rule() api.SecurityGroupRuleSpec {
	r := api.SecurityGroupRuleSpec{Direction: g.pick([]string{"ingress", "egress", "ingress", "sideways"})}
	if g.maybe(0.6) {
		r.Protocol = g.pick([]string{"tcp", "udp", "icmp", "gre"})
	}
	if g.maybe(0.4) {
		r.Ports = g.pick([]string{"22", "8000:8080", "0", "9:1", "http"})
	}
	switch g.r.IntN(4) {
	case 0:
		r.RemoteCIDR = g.pick([]string{"10.0.0.0/8", "0.0.0.0/0", "10.0.0.1/8", "nope"})
	case 1:
		r.RemoteGroup = g.pick(append(groups, "default", "nosuch"))
	}
	return r
}

func (g *gen) securityGroup(string) (string, string, any) {
	s := api.SecurityGroupSpec{}
	for i := g.r.IntN(4); i > 0; i-- {
		s.Rules = append(s.Rules, g.rule())
	}
	return "securitygroups", g.pick(append(groups, "default")), s
}

func (g *gen) router(string) (string, string, any) {
	s := api.RouterSpec{}
	if g.maybe(0.7) {
		s.ExternalNetwork = g.pick(append(externs, "ext9"))
	}
	for _, sn := range g.subset(subnets) {
		s.Interfaces = append(s.Interfaces, api.RouterInterface{Subnet: sn})
	}
	if g.maybe(0.2) {
		s.Host = g.pick(append(hosts, "h9"))
	}
	if g.maybe(0.1) {
		s.Routes = []api.HostRoute{{Destination: "172.16.0.0/12", NextHop: g.pick([]string{"10.0.0.9", "192.0.2.9", "8.8.8.8"})}}
	}
	if g.maybe(0.2) {
		off := false
		s.SNAT = &off
	}
	return "routers", g.pick(routers), s
}

func (g *gen) floatingIP(string) (string, string, any) {
	s := api.FloatingIPSpec{ExternalNetwork: g.pick(externs)}
	if g.maybe(0.7) {
		s.Port = g.pick(ports)
	}
	return "floatingips", g.pick(fips), s
}

func (g *gen) firewallGroup(string) (string, string, any) {
	s := api.FirewallGroupSpec{Router: g.pick(routers), Interfaces: g.subset(subnets)}
	if g.maybe(0.7) {
		p := &api.FirewallPolicySpec{}
		for i := g.r.IntN(3); i > 0; i-- {
			p.Rules = append(p.Rules, api.FirewallRuleSpec{Protocol: g.pick([]string{"", "tcp", "icmp", "gre"}),
				DestinationPorts: g.pick([]string{"", "80", "x"}), Action: g.pick([]string{"allow", "deny", "reject", "maybe"})})
		}
		s.Ingress = p
	}
	return "firewallgroups", g.pick(fwgroups), s
}

func (g *gen) external(string) (string, string, any) {
	name := g.pick(externs)
	s := api.ExternalNetworkSpec{PhysicalNetwork: "physnet1", CIDR: "192.0.2.0/24", Gateway: "192.0.2.1"}
	if name == "ext2" {
		s = api.ExternalNetworkSpec{PhysicalNetwork: g.pick([]string{"physnet2", "physnet1"}), CIDR: "198.51.100.0/24"}
	}
	if g.maybe(0.1) {
		s.CIDR = "10.0.0.0/16" // overlaps tenant subnets
	}
	return "externalnetworks", name, s
}
