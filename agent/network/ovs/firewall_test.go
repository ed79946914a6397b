package ovs

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestPortMasks: a port range becomes the fewest value/mask matches that
// cover exactly it.
func TestPortMasks(t *testing.T) {
	for _, c := range []struct {
		from, to int
		want     []string
	}{
		{8080, 8080, []string{"8080"}},
		{1, 65535, []string{"1", "0x0002/0xfffe", "0x0004/0xfffc", "0x0008/0xfff8", "0x0010/0xfff0", "0x0020/0xffe0",
			"0x0040/0xffc0", "0x0080/0xff80", "0x0100/0xff00", "0x0200/0xfe00", "0x0400/0xfc00", "0x0800/0xf800",
			"0x1000/0xf000", "0x2000/0xe000", "0x4000/0xc000", "0x8000/0x8000"}},
		{1000, 1003, []string{"0x03e8/0xfffc"}},
		{1000, 1004, []string{"0x03e8/0xfffc", "1004"}},
	} {
		if got := portMasks(c.from, c.to); !slices.Equal(got, c.want) {
			t.Errorf("portMasks(%d, %d) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	// Every port of a range is covered once, none outside it.
	for _, r := range [][2]int{{1, 1}, {22, 80}, {1024, 65535}, {3, 3000}, {65535, 65535}} {
		hit := make([]int, 65536)
		for _, m := range portMasks(r[0], r[1]) {
			v, mask := maskOf(t, m)
			for p := 0; p < 65536; p++ {
				if p&mask == v {
					hit[p]++
				}
			}
		}
		for p, n := range hit {
			if want := map[bool]int{true: 1}[p >= r[0] && p <= r[1]]; n != want {
				t.Fatalf("range %d-%d: port %d matched %d times, want %d", r[0], r[1], p, n, want)
			}
		}
	}
}

func maskOf(t *testing.T, m string) (int, int) {
	t.Helper()
	var v, mask int
	if strings.Contains(m, "/") {
		if _, err := fmt.Sscanf(m, "0x%x/0x%x", &v, &mask); err != nil {
			t.Fatal(err)
		}
		return v, mask
	}
	if _, err := fmt.Sscan(m, &v); err != nil {
		t.Fatal(err)
	}
	return v, 0xffff
}

// TestFirewallFlows pins one filtered port's flows: its sources before
// conntrack, a remote-group rule as one match per member, a CIDR rule
// only for IPv4, a rule without remote end for both families, and what
// goes to it through its ingress table, a neighbour advertisement only
// for its own addresses.
func TestFirewallFlows(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	p := network.Port{ID: "a", Host: "h1", MAC: mac, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}, SecurityGroups: []string{"web"}}
	peer := network.Port{ID: "b", Host: "h2", MAC: mac, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("fd00::6")}, SecurityGroups: []string{"web"}}
	groups := map[string]netspec.SecurityGroup{"web": {ID: "web", Rules: []netspec.SecurityGroupRule{
		{Direction: netspec.Egress},
		{Direction: netspec.Ingress, RemoteGroup: "web"},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 80, To: 81}, RemoteCIDR: "192.0.2.0/24"},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoUDP, RemoteCIDR: "fd00:1::/64"},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, RemoteCIDR: "::/0"},
		{Direction: netspec.Egress, Protocol: netspec.ProtoICMP, Ethertype: netspec.EtherIPv6},
	}}}
	st := network.HostState{Host: "h1", Ports: []network.Port{p, peer}}
	rules, err := portRules(p, groups, groupMembers(st))
	if err != nil {
		t.Fatal(err)
	}
	got := firewallFlows([]FlowFiltered{{Ofport: 7, LVID: 2, Sources: portSources(p), Rules: rules}})
	for _, want := range []string{
		"table=0,priority=100,in_port=7,actions=goto_table:40",
		"table=40,priority=70,in_port=7,dl_src=02:00:00:00:00:01,ip,nw_src=10.0.0.5,actions=ct(table=41,zone=7)",
		"table=40,priority=70,in_port=7,dl_src=02:00:00:00:00:01,arp,arp_sha=02:00:00:00:00:01,arp_spa=10.0.0.5,actions=push_vlan:0x8100,set_field:4098->vlan_vid,resubmit(,10)",
		"table=40,priority=70,in_port=7,dl_src=02:00:00:00:00:01,ipv6,ipv6_src=fe80::ff:fe00:1,actions=ct(table=41,zone=7)",
		"table=40,priority=90,in_port=7,icmp6,icmp_type=134,actions=drop",
		"table=40,priority=76,in_port=7,dl_src=02:00:00:00:00:01,icmp6,ipv6_src=fe80::ff:fe00:1,icmp_type=136,nd_target=fe80::ff:fe00:1,actions=push_vlan:0x8100,set_field:4098->vlan_vid,resubmit(,10)",
		"table=40,priority=74,in_port=7,icmp6,icmp_type=136,actions=drop",
		"table=41,priority=50,in_port=7,ct_state=+new-est-inv+trk,ip,actions=ct(commit,zone=7),push_vlan:0x8100,set_field:4098->vlan_vid,resubmit(,10)",
		"table=41,priority=50,in_port=7,ct_state=+new-est-inv+trk,ipv6,actions=ct(commit,zone=7),push_vlan:0x8100,set_field:4098->vlan_vid,resubmit(,10)",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,ip,nw_src=10.0.0.5,actions=ct(commit,zone=7),output:7",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,ip,nw_src=10.0.0.6,actions=ct(commit,zone=7),output:7",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,ipv6,ipv6_src=fd00::6,actions=ct(commit,zone=7),output:7",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,tcp,nw_src=192.0.2.0/24,tp_dst=0x0050/0xfffe,actions=ct(commit,zone=7),output:7",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,udp6,ipv6_src=fd00:1::/64,actions=ct(commit,zone=7),output:7",
		"table=51,priority=50,reg7=7,ct_state=+new-est-inv+trk,tcp6,actions=ct(commit,zone=7),output:7",
		"table=41,priority=50,in_port=7,ct_state=+new-est-inv+trk,icmp6,actions=ct(commit,zone=7),push_vlan:0x8100,set_field:4098->vlan_vid,resubmit(,10)",
		"table=50,priority=80,ip,actions=ct(table=51,zone=NXM_NX_REG7[0..15])",
		"table=51,priority=90,ct_state=+est-rel-inv+trk,actions=output:NXM_NX_REG7[]",
		"table=51,priority=100,ct_state=+inv+trk,actions=drop",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing flow %s", want)
		}
	}
	// A rule is in its families only: an IPv4 CIDR's not in IPv6, an
	// IPv6 CIDR's (::/0 too) not in IPv4, an ethertype's not in the other.
	for _, f := range got {
		for _, bad := range []string{"tcp6,nw_src", "tcp6,ipv6_src=192", "udp,ipv6_src", "reg7=7,ct_state=+new-est-inv+trk,tcp,actions", "in_port=7,ct_state=+new-est-inv+trk,icmp,"} {
			if strings.Contains(f, bad) {
				t.Errorf("a rule in a family it does not apply to (%s): %s", bad, f)
			}
		}
	}

	// An unknown group keeps the port closed: no rule, and an error.
	p.SecurityGroups = []string{"nope"}
	if rules, err := portRules(p, groups, nil); err == nil || rules != nil {
		t.Errorf("unknown group: rules %v, err %v", rules, err)
	}
}

// TestFilteredLocalThroughIngress: a filtered local port gets no VLAN
// classification of its own, and what the switching tables send to it
// (unicast or flooded) goes through its ingress table.
func TestFilteredLocalThroughIngress(t *testing.T) {
	nets := []FlowNetwork{{VNI: 5001, Type: TypeVXLAN, LVID: 3,
		Locals: []FlowLocal{{Ofport: 7, MACs: []string{"02:00:00:00:00:01"}, Filtered: true}, {Ofport: 8, MACs: []string{"02:00:00:00:00:02"}}},
		Flood:  []int{1}}}
	got := Flows(nets, []FlowTunnel{{Ofport: 1, Type: TypeVXLAN}}, []FlowFiltered{{Ofport: 7, LVID: 3}})
	for _, want := range []string{
		"table=20,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:01,actions=pop_vlan,set_field:7->reg7,goto_table:50",
		"table=30,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:01,actions=pop_vlan,set_field:7->reg7,goto_table:50",
		"table=20,priority=10,dl_vlan=3,actions=pop_vlan,output:8,set_field:7->reg7,resubmit(,50),set_field:5001->tun_id,output:1",
		"table=30,priority=10,dl_vlan=3,actions=pop_vlan,output:8,set_field:7->reg7,resubmit(,50)",
		"table=0,priority=100,in_port=7,actions=goto_table:40",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing flow %s", want)
		}
	}
	for _, f := range got {
		if strings.HasPrefix(f, "table=0,priority=100,in_port=7,actions=push_vlan") {
			t.Errorf("filtered port classified straight onto its VLAN: %s", f)
		}
	}
}
