package ovs

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Security groups on the integration bridge. A port with security groups
// plugs into the integration bridge like any other (an instance's tap
// through libvirt's <virtualport type='openvswitch'>), and its groups are
// OpenFlow flows with conntrack (ct()), one zone per port (its OpenFlow
// port number):
//   - what it sends: its sources first (MAC, address, ARP sender), then
//     conntrack in its zone; established and related pass, a new
//     connection must match one of its egress rules and is committed;
//   - what it receives: every packet the flows would output to it goes
//     instead through conntrack in its zone (REG7 holds its port);
//     established and related pass, a new connection must match one of
//     its ingress rules and is committed.
//
// Why flows and not nftables: a tap on an OVS bridge is not a bridge port
// the inet hooks see, and the netdev family that sees the tap has no
// conntrack; on the userspace datapath ovs-vswitchd even reads the tap
// through a packet socket before any ingress hook could drop. Conntrack
// in the switch works on both datapaths. A port the flows do not know
// yet (a tap libvirt has just added) matches no flow of table 0 and is
// dropped: closed, never open.
const (
	TableEgress    = 40 // from a filtered port: its sources, then conntrack
	TableEgressCT  = 41 // after conntrack: established, or a new connection its egress rules allow
	TableIngress   = 50 // to the filtered port in REG7: conntrack
	TableIngressCT = 51 // after conntrack: established, or a new connection its ingress rules allow
)

// FlowFiltered is one filtered port on the integration bridge: where it
// is, what it may send from and its groups' rules (nil: closed, it sends
// and receives nothing but DHCP and neighbour discovery).
type FlowFiltered struct {
	Ofport  int
	LVID    int
	Sources []FlowSource
	Rules   []FlowRule
}

// FlowSource is a MAC and an address or CIDR a filtered port may send
// from.
type FlowSource struct {
	MAC    string
	Prefix netip.Prefix
}

// FlowRule is one allow rule of a filtered port, with its remote end
// resolved: Remote are the addresses it matches (either family), and
// Any4/Any6 say it matches any address of that family.
type FlowRule struct {
	Ingress bool
	Proto   string // netspec.ProtoAny, ProtoTCP, ProtoUDP or ProtoICMP
	Ports   *netspec.PortRange
	Any4    bool
	Any6    bool
	Remote  []netip.Prefix
}

// ICMPv6 types the firewall handles before conntrack.
const (
	icmp6RouterSolicit   = 133
	icmp6RouterAdvert    = 134
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
	icmp6Redirect        = 137
	icmp6MLDReport       = 143
)

// firewallFlows renders the flows of the filtered ports. Table 0 sends a
// filtered port's packets to TableEgress (networkFlows leaves it out of
// its local VLAN classification).
func firewallFlows(ports []FlowFiltered) []string {
	var out []string
	add := func(table, prio int, match, actions string) { out = append(out, flowLine(table, prio, match, actions)) }
	add(TableEgress, 0, "", "drop")
	add(TableEgressCT, 0, "", "drop")
	add(TableIngress, 0, "", "drop")
	add(TableIngressCT, 0, "", "drop")
	if len(ports) == 0 {
		return out
	}
	toPort := "output:NXM_NX_REG7[]"
	// What conntrack calls invalid never passes; neighbour discovery and
	// ARP are not connections: they pass before conntrack, to the port
	// they are for.
	add(TableEgressCT, 100, "ct_state=+inv+trk", "drop")
	add(TableIngressCT, 100, "ct_state=+inv+trk", "drop")
	add(TableIngress, 90, "arp", toPort)
	for _, t := range []int{icmp6RouterAdvert, icmp6NeighborSolicit, icmp6NeighborAdvert} {
		add(TableIngress, 90, "icmp6,icmp_type="+strconv.Itoa(t), toPort)
	}
	add(TableIngress, 80, "ip", "ct(table="+strconv.Itoa(TableIngressCT)+",zone=NXM_NX_REG7[0..15])")
	add(TableIngress, 80, "ipv6", "ct(table="+strconv.Itoa(TableIngressCT)+",zone=NXM_NX_REG7[0..15])")
	add(TableIngressCT, 90, "ct_state=+est-rel-inv+trk", toPort)
	add(TableIngressCT, 90, "ct_state=+rel-inv+trk", toPort)
	// DHCP answers are not replies conntrack knows (the request went to
	// broadcast from 0.0.0.0).
	add(TableIngressCT, 80, "udp,tp_src=67,tp_dst=68", toPort)
	add(TableIngressCT, 80, "udp6,tp_src=547,tp_dst=546", toPort)
	ps := append([]FlowFiltered(nil), ports...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Ofport < ps[j].Ofport })
	for _, p := range ps {
		out = append(out, portFirewall(p)...)
	}
	return out
}

// portFirewall is one filtered port's flows.
func portFirewall(p FlowFiltered) []string {
	var out []string
	seen := map[string]bool{}
	add := func(table, prio int, match, actions string) {
		// Overlapping members or sources may render one match twice.
		if k := fmt.Sprintf("%d/%d/%s", table, prio, match); !seen[k] {
			seen[k] = true
			out = append(out, flowLine(table, prio, match, actions))
		}
	}
	of := strconv.Itoa(p.Ofport)
	in := "in_port=" + of
	zone := "zone=" + of
	// Accepted egress joins the network's local VLAN and goes on to the
	// switching tables (resubmit: goto_table only goes forward).
	pass := fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid,resubmit(,%d)", 0x1000|p.LVID, TableARP)
	commitPass := "ct(commit," + zone + ")," + pass
	track := "ct(table=" + strconv.Itoa(TableEgressCT) + "," + zone + ")"
	add(TableClassify, 100, in, "goto_table:"+strconv.Itoa(TableEgress))

	// Sources: a guest is not a router; DHCP requests come from 0.0.0.0;
	// ARP and IP only from its own MACs and addresses.
	for _, t := range []int{icmp6RouterAdvert, icmp6Redirect} {
		add(TableEgress, 90, in+",icmp6,icmp_type="+strconv.Itoa(t), "drop")
	}
	macs := map[string]bool{}
	srcs := append([]FlowSource(nil), p.Sources...)
	sort.Slice(srcs, func(i, j int) bool {
		if srcs[i].MAC != srcs[j].MAC {
			return srcs[i].MAC < srcs[j].MAC
		}
		return srcs[i].Prefix.String() < srcs[j].Prefix.String()
	})
	for _, s := range srcs {
		macs[s.MAC] = true
		from := in + ",dl_src=" + s.MAC
		if s.Prefix.Addr().Is4() {
			add(TableEgress, 70, from+",arp,arp_sha="+s.MAC+",arp_spa="+prefixText(s.Prefix), pass)
			add(TableEgress, 70, from+",ip,nw_src="+prefixText(s.Prefix), track)
			continue
		}
		for _, t := range []int{icmp6RouterSolicit, icmp6NeighborSolicit} {
			add(TableEgress, 75, from+",icmp6,ipv6_src="+prefixText(s.Prefix)+",icmp_type="+strconv.Itoa(t), pass)
		}
		// A neighbour advertisement (IPv6's ARP reply) only for one of
		// its own addresses, as ARP's sender address.
		for _, t := range srcs {
			if t.Prefix.Addr().Is6() {
				add(TableEgress, 76, from+",icmp6,ipv6_src="+prefixText(s.Prefix)+",icmp_type=136,nd_target="+prefixText(t.Prefix), pass)
			}
		}
		add(TableEgress, 70, from+",ipv6,ipv6_src="+prefixText(s.Prefix), track)
	}
	add(TableEgress, 74, in+",icmp6,icmp_type=136", "drop")
	ms := make([]string, 0, len(macs))
	for m := range macs {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	for _, m := range ms {
		from := in + ",dl_src=" + m
		add(TableEgress, 80, from+",udp,nw_src=0.0.0.0,tp_src=68,tp_dst=67", pass)
		add(TableEgress, 70, from+",arp,arp_sha="+m+",arp_spa=0.0.0.0", pass)
		// qemu's announcement after a live migration.
		add(TableEgress, 70, from+",rarp,arp_sha="+m, pass)
		// Duplicate address detection and MLD before it has an address.
		for _, t := range []int{icmp6NeighborSolicit, icmp6MLDReport} {
			add(TableEgress, 75, from+",icmp6,ipv6_src=::,icmp_type="+strconv.Itoa(t), pass)
		}
	}

	// After conntrack.
	add(TableEgressCT, 90, in+",ct_state=+est-rel-inv+trk", pass)
	add(TableEgressCT, 90, in+",ct_state=+rel-inv+trk", pass)
	add(TableEgressCT, 80, in+",udp6,tp_src=546,tp_dst=547", commitPass)
	reg := "reg7=" + of
	deliver := "ct(commit," + zone + "),output:" + of
	for _, r := range p.Rules {
		for _, m := range ruleMatches(r) {
			if r.Ingress {
				add(TableIngressCT, 50, reg+",ct_state=+new-est-inv+trk,"+m, deliver)
			} else {
				add(TableEgressCT, 50, in+",ct_state=+new-est-inv+trk,"+m, commitPass)
			}
		}
	}
	return out
}

// ruleProtos are the OpenFlow protocol matches of a rule's protocol, for
// IPv4 and IPv6 (icmp is ICMPv6 there).
var ruleProtos = map[string][2]string{
	netspec.ProtoAny:  {"ip", "ipv6"},
	netspec.ProtoTCP:  {"tcp", "tcp6"},
	netspec.ProtoUDP:  {"udp", "udp6"},
	netspec.ProtoICMP: {"icmp", "icmp6"},
}

// ruleMatches renders one rule as the OpenFlow matches it stands for:
// one per family, remote address and masked port range. The remote end
// is the source for ingress and the destination for egress.
func ruleMatches(r FlowRule) []string {
	var out []string
	ports := []string{""}
	if r.Ports != nil {
		ports = nil
		for _, m := range portMasks(r.Ports.From, r.Ports.To) {
			ports = append(ports, ",tp_dst="+m)
		}
	}
	dir4, dir6 := "nw_dst=", "ipv6_dst="
	if r.Ingress {
		dir4, dir6 = "nw_src=", "ipv6_src="
	}
	var remotes4, remotes6 []string
	if r.Any4 {
		remotes4 = []string{""}
	}
	if r.Any6 {
		remotes6 = []string{""}
	}
	for _, pre := range r.Remote {
		if pre.Addr().Is4() {
			remotes4 = append(remotes4, ","+dir4+prefixText(pre))
		} else {
			remotes6 = append(remotes6, ","+dir6+prefixText(pre))
		}
	}
	protos, ok := ruleProtos[r.Proto]
	proto4, proto6 := protos[0], protos[1]
	if !ok {
		return nil // not a protocol the groups accept: matches nothing
	}
	for _, fam := range []struct {
		proto   string
		remotes []string
	}{{proto4, remotes4}, {proto6, remotes6}} {
		for _, rem := range fam.remotes {
			for _, pt := range ports {
				out = append(out, fam.proto+rem+pt)
			}
		}
	}
	return out
}

// portMasks covers from..to with value/mask matches on a 16-bit port.
func portMasks(from, to int) []string {
	var out []string
	for from <= to {
		size := 1
		for from%(size*2) == 0 && from+size*2-1 <= to && size < 1<<16 {
			size *= 2
		}
		if size == 1 {
			out = append(out, strconv.Itoa(from))
		} else {
			out = append(out, fmt.Sprintf("0x%04x/0x%04x", from, 0xffff&^(size-1)))
		}
		from += size
	}
	return out
}

// prefixText is a prefix as OpenFlow matches it: a single address bare.
func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.Masked().String()
}

// portSources lists what p may send from: each of its addresses with its
// MAC, its allowed address pairs (with their MAC, or its own), and the
// IPv6 link-local address of each of those MACs.
func portSources(p network.Port) []FlowSource {
	// The flows match IPv4 as IPv4: an IPv4-mapped address is unmapped.
	p.IPs = slices.Clone(p.IPs)
	for i, a := range p.IPs {
		p.IPs[i] = a.Unmap()
	}
	var out []FlowSource
	secgroup.EachSource(p, func(mac net.HardwareAddr, pre netip.Prefix) {
		out = append(out, FlowSource{MAC: mac.String(), Prefix: pre})
	})
	return out
}

// portRules resolves the rules of port p's groups against the state: a
// rule's remote group becomes its members' addresses and allowed pairs,
// in both families. It returns nil (closed) when a group of p is unknown
// or does not validate, and the reason.
func portRules(p network.Port, groups map[string]netspec.SecurityGroup, members map[string][]netip.Prefix) ([]FlowRule, error) {
	var out []FlowRule
	seen := map[string]bool{}
	for _, id := range p.SecurityGroups {
		g, ok := groups[id]
		if !ok {
			return nil, fmt.Errorf("unknown security group %q (port kept closed)", id)
		}
		if err := validGroup(g, groups); err != nil {
			return nil, fmt.Errorf("security group %q: %w (port kept closed)", id, err)
		}
		for _, r := range g.Rules {
			k := ruleKey(r)
			if seen[k] {
				continue
			}
			seen[k] = true
			fr := FlowRule{Ingress: r.Direction == netspec.Ingress, Proto: r.Protocol, Ports: r.Ports}
			// The families a rule applies to: its ethertype's, else its
			// remote CIDR's, else both.
			v4, v6 := r.Families()
			switch {
			case r.RemoteGroup != "":
				for _, m := range members[r.RemoteGroup] {
					if (m.Addr().Is4() && v4) || (m.Addr().Is6() && v6) {
						fr.Remote = append(fr.Remote, m)
					}
				}
			case r.RemoteCIDR != "":
				cidr, _ := netspec.ParseRemoteCIDR(r.RemoteCIDR)
				switch {
				case cidr.Bits() != 0:
					fr.Remote = []netip.Prefix{cidr}
				case cidr.Addr().Is4():
					fr.Any4 = true
				default:
					fr.Any6 = true
				}
			default:
				fr.Any4, fr.Any6 = v4, v6
			}
			out = append(out, fr)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return ruleText(out[i]) < ruleText(out[j]) })
	return out, nil
}

func ruleText(r FlowRule) string { return strings.Join(ruleMatches(r), ";") + fmt.Sprint(r.Ingress) }

// ruleKey is a rule's value as text (Ports is a pointer).
func ruleKey(r netspec.SecurityGroupRule) string {
	ports := "-"
	if r.Ports != nil {
		ports = fmt.Sprintf("%d:%d", r.Ports.From, r.Ports.To)
	}
	return strings.Join([]string{r.Direction, r.Protocol, ports, r.RemoteCIDR, r.RemoteGroup, r.Ethertype}, "|")
}

// validGroup checks g with the groups it names as remotes.
func validGroup(g netspec.SecurityGroup, groups map[string]netspec.SecurityGroup) error {
	all := []netspec.SecurityGroup{g}
	named := map[string]bool{g.ID: true}
	for _, r := range g.Rules {
		if r.RemoteGroup != "" && !named[r.RemoteGroup] {
			if _, ok := groups[r.RemoteGroup]; ok {
				named[r.RemoteGroup] = true
				all = append(all, netspec.SecurityGroup{ID: r.RemoteGroup})
			}
		}
	}
	return netspec.ValidateSecurityGroups(all)
}

// groupMembers is each group's member addresses: its ports' addresses
// and allowed address pairs, on any host.
func groupMembers(st network.HostState) map[string][]netip.Prefix {
	members := map[string][]netip.Prefix{}
	seen := map[string]bool{}
	for _, p := range st.Ports {
		var pres []netip.Prefix
		for _, a := range p.IPs {
			a = a.Unmap()
			pres = append(pres, netip.PrefixFrom(a, a.BitLen()))
		}
		for _, ap := range p.AllowedAddressPairs {
			pres = append(pres, ap.Prefix.Masked())
		}
		for _, g := range p.SecurityGroups {
			for _, pre := range pres {
				if k := g + "/" + pre.String(); !seen[k] {
					seen[k] = true
					members[g] = append(members[g], pre)
				}
			}
		}
	}
	for g := range members {
		sort.Slice(members[g], func(i, j int) bool { return members[g][i].String() < members[g][j].String() })
	}
	return members
}
