package secgroup_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestGroupRulesCompiled: a group of 1,000 CIDR rules and one remote-group
// rule is a handful of nft rules, shared by every port in the group: the
// CIDR rules one verdict map lookup, the remote group a rule over its
// address set, and each port's own chains one goto.
func TestGroupRulesCompiled(t *testing.T) {
	g := netspec.SecurityGroup{ID: "web", Rules: []netspec.SecurityGroupRule{{Direction: netspec.Egress}}}
	for i := range 1000 {
		g.Rules = append(g.Rules, netspec.SecurityGroupRule{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP,
			Ports: &netspec.PortRange{From: 443, To: 443}, RemoteCIDR: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)})
	}
	g.Rules = append(g.Rules, netspec.SecurityGroupRule{Direction: netspec.Ingress, RemoteGroup: "web"})
	st := network.HostState{Host: "h1", SecurityGroups: []netspec.SecurityGroup{g},
		Networks: []network.Network{{ID: "n", VNI: 5001, L2: network.L2Binding{Bridge: "sbr-5001"}}}}
	for i := range 50 {
		st.Ports = append(st.Ports, network.Port{ID: fmt.Sprintf("p%d", i), NetworkID: "n", Host: "h1",
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 200, 0, byte(i + 1)})}, SecurityGroups: []string{"web"}})
	}
	tab := secgroup.Ruleset(secgroup.DefaultTable, st)
	rules, elems := 0, 0
	var shared []string
	for _, c := range tab.Chains {
		rules += len(c.Rules)
		if strings.HasPrefix(c.Name, "si_") {
			for _, r := range c.Rules {
				shared = append(shared, r.Text)
			}
		}
	}
	for _, s := range tab.Sets {
		elems += len(s.Ranges)
	}
	// forward 6 (4, and the IPv6 maps) + sources 5 + 4 per port (IPv6
	// and IPv4 gotos each way) + so_ 2 + si_ 4 + so6_ 6 and si6_ 6 (what
	// neighbour discovery and DHCPv6 need, the rule without a CIDR, drop).
	if want := 6 + 5 + 4*50 + 2 + 4 + 6 + 6; rules != want {
		t.Errorf("%d rules, want %d; the shared ingress chain:\n%s", rules, want, strings.Join(shared, "\n"))
	}
	if elems < 1000 {
		t.Errorf("%d elements, want the 1,000 CIDR rules among them", elems)
	}
	t.Logf("shared ingress chain:\n%s", strings.Join(shared, "\n"))
}

// TestIPv6CIDRRules: a rule with an IPv6 remote CIDR is in the IPv6 twin
// of its chain only, matching that prefix (the remote end: source for
// ingress, destination for egress); a rule limited to IPv4 by its
// ethertype is in the IPv4 chain only.
func TestIPv6CIDRRules(t *testing.T) {
	g := netspec.SecurityGroup{ID: "web", Rules: []netspec.SecurityGroupRule{
		{Direction: netspec.Egress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 443, To: 443}, RemoteCIDR: "2001:db8::/32"},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 22, To: 22}, RemoteCIDR: "fd00:6::/64", Ethertype: netspec.EtherIPv6},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 80, To: 80}, Ethertype: netspec.EtherIPv4},
	}}
	if err := netspec.ValidateSecurityGroups([]netspec.SecurityGroup{g}); err != nil {
		t.Fatal(err)
	}
	st := network.HostState{Host: "h1", SecurityGroups: []netspec.SecurityGroup{g},
		Networks: []network.Network{{ID: "n", VNI: 5001, L2: network.L2Binding{Bridge: "sbr-5001"}}},
		Ports:    []network.Port{{ID: "p", NetworkID: "n", Host: "h1", IPs: []netip.Addr{netip.MustParseAddr("10.200.0.1")}, SecurityGroups: []string{"web"}}}}
	chains := map[string]string{}
	for _, c := range secgroup.Ruleset(secgroup.DefaultTable, st).Chains {
		var texts []string
		for _, r := range c.Rules {
			texts = append(texts, r.Text)
		}
		if len(c.Name) > 3 {
			chains[c.Name[:3]] = strings.Join(texts, "\n")
		}
	}
	for _, c := range []struct{ chain, has string }{
		{"so6", "ip6 daddr 2001:db8::/32"}, {"si6", "ip6 saddr fd00:6::/64"},
		{"si_", "th dport vmap"}, // the IPv4 rule, compiled into a map
	} {
		if !strings.Contains(chains[c.chain], c.has) {
			t.Errorf("chain %s lacks %q:\n%s", c.chain, c.has, chains[c.chain])
		}
	}
	for _, c := range []struct{ chain, not string }{
		{"so_", "vmap"}, {"si6", "dport 80"}, // no IPv6 rule in IPv4 chains, no IPv4 one in IPv6's
	} {
		if strings.Contains(chains[c.chain], c.not) {
			t.Errorf("chain %s has %q:\n%s", c.chain, c.not, chains[c.chain])
		}
	}
}
