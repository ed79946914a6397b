package secgroup

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/firewall"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netspec"
)

// DefaultTable is the driver's one table (family inet) in the host
// namespace.
const DefaultTable = "strata_sg"

// GroupSet is the set of member addresses of security group id.
func GroupSet(id string) string { return netspec.GroupSetName(id) }

// Chain names of a port: what it sends (egress) and what it receives.
func egressChain(portID string) string  { return netspec.PortEgressChain(portID) }
func ingressChain(portID string) string { return netspec.PortIngressChain(portID) }

// Ruleset is the desired table for host st.Host: a set of member addresses
// per security group (all ports, any host), and for each local port with
// groups two chains with the rules of its groups.
//
// Why inet and not bridge: this kernel has no bridge conntrack
// (CONFIG_NF_CONNTRACK_BRIDGE) and no bridge reject, and security groups are
// stateful. Bridged IPv4 goes through the inet forward hook via
// br_netfilter (bridge-nf-call-iptables, turned on per namespace by the
// driver), where conntrack works; there iifname/oifname are the bridge, not
// the port, so a port is matched by its network's bridge and its fixed IP
// (its MAC too for what it sends). The same IP in two projects sits on two
// bridges, so the pair is unique.
func Ruleset(name string, st network.HostState) nftsync.Table { return ruleset(name, st, nil, nil) }

// filtered reports whether port p is on this host and filtered here.
func filtered(st network.HostState, p network.Port) bool {
	return p.Host == st.Host && len(p.SecurityGroups) > 0 && len(sourcesOf(p)) > 0
}

// source is one (address, MAC) a filtered port may send from.
type source struct {
	prefix netip.Prefix
	mac    net.HardwareAddr
}

// sourcesOf lists what a port may send from: each of its IPv4 addresses
// with its MAC, and its IPv4 allowed address pairs. Its IPv6 traffic
// matches none, so the sources chain drops it: closed, not open.
func sourcesOf(p network.Port) []source {
	var out []source
	for _, a := range p.IPs {
		if a.Is4() {
			out = append(out, source{netip.PrefixFrom(a, 32), p.MAC})
		}
	}
	for _, ap := range p.AllowedAddressPairs {
		if ap.Prefix.Addr().Is4() {
			mac := ap.MAC
			if mac == nil {
				mac = p.MAC
			}
			out = append(out, source{ap.Prefix.Masked(), mac})
		}
	}
	return out
}

// ruleset is Ruleset with the ports in closed shut: their chains drop
// everything (but DHCP answers), whatever their groups say.
//
// cc, when not nil, compiles each shared chain's CIDR rules from its
// previous compile (see firewall.Compiler).
func ruleset(name string, st network.HostState, closed map[string]bool, cc *compilers) nftsync.Table {
	t := nftsync.Table{Family: nftables.TableFamilyINet, Name: name}
	// A group's members are its ports' addresses and their allowed
	// address pairs: a pair is an address the port may send from (a VRRP
	// address), so a rule naming the group admits it too, as neutron's.
	members := map[string][]netip.Prefix{}
	for _, p := range st.Ports {
		for _, g := range p.SecurityGroups {
			for _, a := range p.IPs {
				members[g] = append(members[g], netip.PrefixFrom(a, a.BitLen()))
			}
			for _, ap := range p.AllowedAddressPairs {
				members[g] = append(members[g], ap.Prefix.Masked())
			}
		}
	}
	groups := map[string]netspec.SecurityGroup{}
	ids := make([]string, 0, len(st.SecurityGroups))
	for _, g := range st.SecurityGroups {
		groups[g.ID] = g
		ids = append(ids, g.ID)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t.Sets = append(t.Sets, nftsync.Set{Name: GroupSet(id), Fields: groupKey, Ranges: disjoint4(members[id])},
			nftsync.Set{Name: GroupSet6(id), Fields: groupKey6, Ranges: disjoint6(members[id])})
	}
	bridges := map[string]string{}
	for _, n := range st.Networks {
		// Filtered ports sit on this bridge; the others' traffic to them
		// enters it. On an Open vSwitch host there is none: the L2
		// driver's flows filter its ports.
		bridges[n.ID] = n.FilterBridge()
	}
	fwd := nftsync.Chain{Name: "forward", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter}
	fwd.Rules = append(fwd.Rules, nftsync.R().CtState(nftsync.CtEstablished|nftsync.CtRelated).Accept())
	// Every source is checked first, then every egress, then every
	// ingress: a port's egress rules hold even towards a local port whose
	// ingress would accept. Each is one lookup, however many ports: the
	// port's chain by bridge, address (and MAC for what it sends).
	egress := nftsync.Set{Name: egressMap, Fields: egressKey, VMap: true, Exact: true}
	ingress := nftsync.Set{Name: ingressMap, Fields: ingressKey, VMap: true, Exact: true}
	// Every address of a port, and every allowed pair, goes through the
	// port's chains: addresses by the maps, pairs that are whole CIDRs
	// by a rule each, after the map of their direction.
	egress6 := nftsync.Set{Name: egress6Map, Fields: egress6Key, VMap: true, Exact: true}
	ingress6 := nftsync.Set{Name: ingress6Map, Fields: ingress6Key, VMap: true, Exact: true}
	var chains []nftsync.Chain
	var cidrOut, cidrIn, cidrIn6 []nftsync.Rule
	pols := &policies{groups: groups, made: map[string]bool{}, cc: cc}
	seen := map[string]bool{}
	for _, p := range st.Ports {
		br := bridges[p.NetworkID]
		if !filtered(st, p) || br == "" {
			continue
		}
		// IPv6: its sources are checked on the port's link (the bridge
		// table), so what it sends is the port's by bridge and MAC; what
		// it receives is by bridge and address.
		_, v6 := l2Sources(p)
		for _, s := range v6 {
			jumpOut := expr.Verdict{Kind: expr.VerdictJump, Chain: egressChain(p.ID)}
			if k := "6o/" + br + "/" + s.mac.String(); !seen[k] {
				seen[k] = true
				egress6.Ranges = append(egress6.Ranges, nftsync.Range{From: nftsync.PackBytes(egress6Key, [][]byte{[]byte(br), s.mac}), Verdict: jumpOut})
			}
			if !s.prefix.IsSingleIP() {
				cidrIn6 = append(cidrIn6, nftsync.R().OIF(br).IPv6().Dst6(s.prefix).Jump(ingressChain(p.ID)))
				continue
			}
			if k := "6i/" + br + "/" + s.prefix.Addr().String(); !seen[k] {
				seen[k] = true
				ingress6.Ranges = append(ingress6.Ranges, nftsync.Range{From: nftsync.PackBytes(ingress6Key, [][]byte{[]byte(br), s.prefix.Addr().AsSlice()}),
					Verdict: expr.Verdict{Kind: expr.VerdictJump, Chain: ingressChain(p.ID)}})
			}
		}
		for _, s := range sourcesOf(p) {
			if !s.prefix.IsSingleIP() {
				cidrOut = append(cidrOut, nftsync.R().IIF(br).IPv4().Src(s.prefix).EtherSrc(s.mac).Jump(egressChain(p.ID)))
				cidrIn = append(cidrIn, nftsync.R().OIF(br).IPv4().Dst(s.prefix).Jump(ingressChain(p.ID)))
				continue
			}
			ip := s.prefix.Addr()
			if k := br + "/" + ip.String(); seen[k] {
				continue // one port per address on a network; the plan had two
			} else {
				seen[k] = true
			}
			egress.Ranges = append(egress.Ranges, nftsync.Range{From: nftsync.PackBytes(egressKey, [][]byte{[]byte(br), ip.AsSlice(), s.mac}),
				Verdict: expr.Verdict{Kind: expr.VerdictJump, Chain: egressChain(p.ID)}})
			ingress.Ranges = append(ingress.Ranges, nftsync.Range{From: nftsync.PackBytes(ingressKey, [][]byte{[]byte(br), ip.AsSlice()}),
				Verdict: expr.Verdict{Kind: expr.VerdictJump, Chain: ingressChain(p.ID)}})
		}
		// A closed port drops everything but DHCP answers; an open one
		// goes to the chains of its groups' rules, shared by every port
		// in the same groups.
		out := nftsync.Chain{Name: egressChain(p.ID), Rules: []nftsync.Rule{nftsync.R().Drop()}}
		in := nftsync.Chain{Name: ingressChain(p.ID), Rules: []nftsync.Rule{dhcpAnswers(), nftsync.R().Drop()}}
		if !closed[p.ID] {
			o, i := pols.chains(p.SecurityGroups)
			out.Rules = []nftsync.Rule{nftsync.R().IPv6().Goto(v6Chain(o)), nftsync.R().Goto(o)}
			in.Rules = []nftsync.Rule{nftsync.R().IPv6().Goto(v6Chain(i)), nftsync.R().Goto(i)}
		}
		chains = append(chains, out, in)
	}
	fwd.Rules = append(fwd.Rules, nftsync.R().Jump(sourcesChain), nftsync.R().IPv4().VMap(egressMap, egressKey...))
	fwd.Rules = append(append(fwd.Rules, cidrOut...), nftsync.R().IPv4().VMap(ingressMap, ingressKey...))
	fwd.Rules = append(fwd.Rules, cidrIn...)
	fwd.Rules = append(fwd.Rules, nftsync.R().IPv6().VMap(egress6Map, egress6Key...), nftsync.R().IPv6().VMap(ingress6Map, ingress6Key...))
	fwd.Rules = append(fwd.Rules, cidrIn6...)
	chains = append(chains, pols.out...)
	t.Sets = append(t.Sets, pols.sets...)
	srcRules, srcSets := sources(st, bridges)
	t.Sets = append(append(t.Sets, egress, ingress, egress6, ingress6), srcSets...)
	t.Chains = append([]nftsync.Chain{fwd, {Name: sourcesChain, Rules: srcRules}}, chains...)
	return t
}

// The dispatch maps and the sets of allowed sources, and their keys.
const (
	egressMap  = "egress_ports"  // bridge . address . MAC : jump to the port's egress chain
	ingressMap = "ingress_ports" // bridge . address : jump to the port's ingress chain
	srcAddrSet = "src_filtered"  // bridge . address . MAC of filtered local ports
	srcMACSet  = "src_other"     // bridge . MAC of every other port of the plan
	bridgeSet  = "bridges"       // Strata's bridges
)

// The IPv6 dispatch maps and their keys.
const (
	egress6Map  = "egress6_ports"  // bridge . MAC : jump to the port's egress chain
	ingress6Map = "ingress6_ports" // bridge . address : jump to the port's ingress chain
	src6Set     = "src6_filtered"  // bridge . MAC of filtered local ports (IPv6 sources checked in the bridge table)
)

var (
	egress6Key  = []nftsync.Field{nftsync.IIFName, nftsync.EtherSAddr}
	ingress6Key = []nftsync.Field{nftsync.OIFName, nftsync.DAddr6}
)

// BaseSets are the sets the table always holds, empty when the host has
// no ports; group sets come and go with the groups.
func BaseSets() []string {
	return []string{egressMap, ingressMap, egress6Map, ingress6Map, srcAddrSet, srcMACSet, src6Set, bridgeSet}
}

var (
	egressKey  = []nftsync.Field{nftsync.IIFName, nftsync.SAddr, nftsync.EtherSAddr}
	ingressKey = []nftsync.Field{nftsync.OIFName, nftsync.DAddr}
	srcMACKey  = []nftsync.Field{nftsync.IIFName, nftsync.EtherSAddr}
	bridgeKey  = []nftsync.Field{nftsync.IIFName}
)

// groupKey is the key of a group's member set: an IPv4 address in
// intervals, so that a member may be a whole CIDR (an allowed pair). The
// address is in it twice because the kernel keeps intervals of one field
// only in a set of interval-end elements, which nftsync does not write; a
// concatenation of two fields is a pipapo set of ranges, as the firewall's
// maps are. A member lo-hi is the element lo-hi . lo-hi, so an address
// matches when it is in one member's range.
var groupKey = []nftsync.Field{nftsync.SAddr, nftsync.SAddr}

// groupKey6 is groupKey for IPv6 members.
var groupKey6 = []nftsync.Field{nftsync.SAddr6, nftsync.SAddr6}

// GroupSet6 is the set of IPv6 member addresses of security group id.
func GroupSet6(id string) string { return netspec.GroupSet6Name(id) }

// disjoint6 is disjoint4 for the IPv6 prefixes among ps (link-local
// addresses are not members: a remote group names routable peers).
func disjoint6(ps []netip.Prefix) []nftsync.Range {
	type span struct{ lo, hi netip.Addr }
	var spans []span
	for _, p := range ps {
		if !p.Addr().Is6() || p.Addr().Is4In6() {
			continue
		}
		spans = append(spans, span{p.Masked().Addr(), lastAddr6(p)})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo.Less(spans[j].lo) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && (!merged[n-1].hi.Less(s.lo) || merged[n-1].hi.Next() == s.lo) {
			if merged[n-1].hi.Less(s.hi) {
				merged[n-1].hi = s.hi
			}
			continue
		}
		merged = append(merged, s)
	}
	out := make([]nftsync.Range, len(merged))
	for i, s := range merged {
		out[i] = nftsync.Range{From: nftsync.PackBytes(groupKey6, [][]byte{s.lo.AsSlice(), s.lo.AsSlice()}),
			To: nftsync.PackBytes(groupKey6, [][]byte{s.hi.AsSlice(), s.hi.AsSlice()})}
	}
	return out
}

func lastAddr6(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// disjoint4 turns the IPv4 prefixes among ps into the fewest disjoint
// ranges that cover them: the kernel refuses overlapping intervals (a
// pair's CIDR holding another member's address).
func disjoint4(ps []netip.Prefix) []nftsync.Range {
	type span struct{ lo, hi uint64 }
	var spans []span
	for _, p := range ps {
		if !p.Addr().Is4() {
			continue
		}
		a := p.Masked().Addr().As4()
		lo := uint64(binary.BigEndian.Uint32(a[:]))
		spans = append(spans, span{lo, lo + 1<<(32-p.Bits()) - 1})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && s.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, s.hi)
			continue
		}
		merged = append(merged, s)
	}
	out := make([]nftsync.Range, len(merged))
	for i, s := range merged {
		lo, hi := uint32(s.lo), uint32(s.hi)
		out[i] = nftsync.Range{From: nftsync.Pack(groupKey, []uint32{lo, lo}), To: nftsync.Pack(groupKey, []uint32{hi, hi})}
	}
	return out
}

// sourcesChain checks where what enters the forward hook from a bridge
// of ours comes from.
const sourcesChain = "sources"

// sources makes the forward chain closed on Strata's bridges: a filtered
// local port may send from its own address and MAC (its egress rules come
// next), any other port of the plan from its MAC (port security off, DHCP,
// router legs, ports filtered on their own hosts), anyone a DHCP request;
// anything else from a bridge of ours is dropped. So a port the table does
// not know yet (plugged before its filter, or whose filter failed) sends
// nothing, rather than everything. Traffic on other devices is not touched.
func sources(st network.HostState, bridges map[string]string) ([]nftsync.Rule, []nftsync.Set) {
	addrs := nftsync.Set{Name: srcAddrSet, Fields: egressKey, Exact: true}
	macs := nftsync.Set{Name: srcMACSet, Fields: srcMACKey, Exact: true}
	macs6 := nftsync.Set{Name: src6Set, Fields: srcMACKey, Exact: true}
	brs := nftsync.Set{Name: bridgeSet, Fields: bridgeKey, Exact: true}
	seen := map[string]bool{}
	add := func(s *nftsync.Set, vals ...[]byte) {
		k := nftsync.PackBytes(s.Fields, vals)
		if !seen[s.Name+string(k)] {
			seen[s.Name+string(k)] = true
			s.Ranges = append(s.Ranges, nftsync.Range{From: k})
		}
	}
	var cidrs []nftsync.Rule
	for _, p := range st.Ports {
		br := bridges[p.NetworkID]
		switch {
		case br == "":
		case filtered(st, p):
			_, v6 := l2Sources(p)
			for _, s := range v6 {
				add(&macs6, []byte(br), s.mac)
			}
			for _, s := range sourcesOf(p) {
				if s.prefix.IsSingleIP() {
					add(&addrs, []byte(br), s.prefix.Addr().AsSlice(), s.mac)
				} else {
					cidrs = append(cidrs, nftsync.R().IIF(br).IPv4().Src(s.prefix).EtherSrc(s.mac).Return())
				}
			}
		default:
			add(&macs, []byte(br), p.MAC)
		}
	}
	var names []string
	for _, n := range st.Networks {
		if br := bridges[n.ID]; br != "" {
			names = append(names, br)
		}
	}
	sort.Strings(names)
	for _, br := range names {
		add(&brs, []byte(br))
	}
	rules := []nftsync.Rule{
		nftsync.R().Proto(netspec.ProtoUDP).SPort(68, 68).DPort(67, 67).Return(),
		nftsync.R().IPv4().In(srcAddrSet, egressKey...).Return(),
		nftsync.R().In(srcMACSet, srcMACKey...).Return(),
		// A filtered port's IPv6 sources were checked on its link (no
		// router advertisement or redirect among them).
		nftsync.R().IPv6().In(src6Set, srcMACKey...).Return(),
	}
	rules = append(rules, cidrs...)
	rules = append(rules, nftsync.R().In(bridgeSet, bridgeKey...).Drop())
	return rules, []nftsync.Set{addrs, macs, macs6, brs}
}

// DHCP answers are not replies conntrack knows (the request went to
// broadcast from 0.0.0.0), so they are let in explicitly.
func dhcpAnswers() nftsync.Rule {
	return nftsync.R().Proto(netspec.ProtoUDP).SPort(67, 67).DPort(68, 68).Accept()
}

// ruleKey is a rule's value as text. Not %+v: Ports is a pointer, and
// its address would make the name differ from process to process.
func ruleKey(r netspec.SecurityGroupRule) string {
	ports := "-"
	if r.Ports != nil {
		ports = fmt.Sprintf("%d:%d", r.Ports.From, r.Ports.To)
	}
	return strings.Join([]string{r.Direction, r.Protocol, ports, r.RemoteCIDR, r.RemoteGroup, r.Ethertype}, "|")
}

// canonicalRules sorts rules and drops repeats: a set of allow rules
// (the same rule in two of a port's groups allows once).
func canonicalRules(rs []netspec.SecurityGroupRule) []netspec.SecurityGroupRule {
	keys := make(map[string]netspec.SecurityGroupRule, len(rs))
	order := make([]string, 0, len(rs))
	for _, r := range rs {
		k := ruleKey(r)
		if _, dup := keys[k]; !dup {
			keys[k] = r
			order = append(order, k)
		}
	}
	sort.Strings(order)
	out := make([]netspec.SecurityGroupRule, 0, len(order))
	for _, k := range order {
		out = append(out, keys[k])
	}
	return out
}

// policies makes one pair of chains per distinct set of groups ports are
// in: "so_<hash>" (what a port may send: return, else drop)
// and "si_<hash>" (what it may receive: accept, else drop). The rules with
// a remote CIDR are compiled into verdict maps (package firewall; their
// order does not matter, they all allow); those with a remote group stay
// rules over the group's address set, which membership updates by element.
type policies struct {
	groups map[string]netspec.SecurityGroup
	made   map[string]bool
	out    []nftsync.Chain
	sets   []nftsync.Set
	cc     *compilers
}

func (ps *policies) chains(groups []string) (out, in string) {
	// The chains are named by the set of groups, the same on every host
	// and after any history of edits (the chaos test compares with a
	// fresh apply); a rule added to a group then changes its chains' rules
	// and maps in place, an element for a CIDR rule, instead of making
	// new chains and maps under another name.
	ids := slices.Compact(slices.Sorted(slices.Values(groups)))
	sum := sha256.Sum256([]byte(strings.Join(ids, "\n")))
	// 128 bits: a tenant's group names must not be searchable into
	// another project's chain name (which would share its chains).
	id := hex.EncodeToString(sum[:16])
	out, in = "so_"+id, "si_"+id
	if ps.made[id] {
		return out, in
	}
	ps.made[id] = true
	var egress, ingress []netspec.SecurityGroupRule
	for _, g := range ids {
		for _, r := range ps.groups[g].Rules {
			if r.Direction == netspec.Egress {
				egress = append(egress, r)
			} else {
				ingress = append(ingress, r)
			}
		}
	}
	// Every rule allows, so their order means nothing: sorted, a rule
	// added or removed is one rule in the middle of an unchanged list.
	egress, ingress = canonicalRules(egress), canonicalRules(ingress)
	for _, c := range []struct {
		name    string
		rules   []netspec.SecurityGroupRule
		ingress bool
	}{{out, egress, false}, {in, ingress, true}} {
		ch := nftsync.Chain{Name: c.name}
		v := expr.Verdict{Kind: expr.VerdictReturn}
		if c.ingress {
			v = expr.Verdict{Kind: expr.VerdictAccept}
			ch.Rules = append(ch.Rules, dhcpAnswers())
		}
		var list []firewall.Rule
		var remote []nftsync.Rule
		for _, r := range c.rules {
			if v4, _ := r.Families(); !v4 {
				continue // in the IPv6 twin only
			}
			if r.RemoteGroup != "" {
				remote = append(remote, rule(r, c.ingress).Verdict(v))
				continue
			}
			list = append(list, compiled(r, c.ingress, v))
		}
		rules, sets := ps.cc.compile(c.name, list)
		ch.Rules = append(append(append(ch.Rules, rules...), remote...), nftsync.R().Drop())
		ps.out, ps.sets = append(ps.out, ch), append(ps.sets, sets...)
		ps.out = append(ps.out, chain6(v6Chain(c.name), c.rules, c.ingress, v))
	}
	return out, in
}

// v6Chain is the name of the IPv6 twin of a policy chain.
func v6Chain(name string) string { return name[:2] + "6" + name[2:] }

// chain6 is a policy chain for IPv6: what neighbour discovery and DHCPv6
// need (as neutron allows), then the rules that apply to IPv6 (Families:
// ethertype IPv6, an IPv6 remote CIDR, or neither family named; icmp is
// ICMPv6 here). One with a remote group matches the group's IPv6
// members, one with a remote CIDR that prefix. Rule by rule, not
// compiled: IPv6 rule sets are small, and stay readable.
func chain6(name string, rules []netspec.SecurityGroupRule, ingress bool, v expr.Verdict) nftsync.Chain {
	ch := nftsync.Chain{Name: name}
	if ingress {
		for _, t := range []byte{nftsync.ICMPv6RouterAdvert, nftsync.ICMPv6NeighborSolicit, nftsync.ICMPv6NeighborAdvert} {
			ch.Rules = append(ch.Rules, nftsync.R().ICMPv6Type(t).Accept())
		}
		ch.Rules = append(ch.Rules, nftsync.R().Proto(netspec.ProtoUDP).SPort(547, 547).DPort(546, 546).Accept())
	} else {
		for _, t := range []byte{nftsync.ICMPv6RouterSolicit, nftsync.ICMPv6NeighborSolicit, nftsync.ICMPv6NeighborAdvert} {
			ch.Rules = append(ch.Rules, nftsync.R().ICMPv6Type(t).Return())
		}
		ch.Rules = append(ch.Rules, nftsync.R().Proto(netspec.ProtoUDP).SPort(546, 546).DPort(547, 547).Return())
	}
	for _, r := range rules {
		if _, v6 := r.Families(); !v6 {
			continue
		}
		b := nftsync.R()
		if r.Protocol == netspec.ProtoICMP {
			b = b.L4Proto(58)
		} else {
			b = b.Proto(r.Protocol)
		}
		switch {
		case r.RemoteGroup != "" && ingress:
			b = b.In(GroupSet6(r.RemoteGroup), nftsync.SAddr6, nftsync.SAddr6)
		case r.RemoteGroup != "":
			b = b.In(GroupSet6(r.RemoteGroup), nftsync.DAddr6, nftsync.DAddr6)
		case r.RemoteCIDR != "" && ingress:
			cidr, _ := netspec.ParseRemoteCIDR(r.RemoteCIDR)
			b = b.Src6(cidr)
		case r.RemoteCIDR != "":
			cidr, _ := netspec.ParseRemoteCIDR(r.RemoteCIDR)
			b = b.Dst6(cidr)
		}
		if r.Ports != nil {
			b = b.DPort(r.Ports.From, r.Ports.To)
		}
		ch.Rules = append(ch.Rules, b.Verdict(v))
	}
	ch.Rules = append(ch.Rules, nftsync.R().Drop())
	return ch
}

var protoNums = map[string]uint8{netspec.ProtoTCP: 6, netspec.ProtoUDP: 17, netspec.ProtoICMP: 1}

// compiled is a rule with a remote CIDR (or none) as the compiler takes
// it: the remote end is the source for ingress, the destination for
// egress.
func compiled(r netspec.SecurityGroupRule, ingress bool, v expr.Verdict) firewall.Rule {
	cidr, _ := netspec.ParseRemoteCIDR(r.RemoteCIDR)
	fr := firewall.Rule{Proto: protoNums[r.Protocol], Verdict: v}
	if ingress {
		fr.Src = cidr
	} else {
		fr.Dst = cidr
	}
	if r.Ports != nil {
		fr.DPort = firewall.Ports{From: uint16(r.Ports.From), To: uint16(r.Ports.To)}
	}
	return fr
}

// rule renders the match of one validated rule; the remote end is the
// source for ingress and the destination for egress.
func rule(r netspec.SecurityGroupRule, ingress bool) *nftsync.B {
	b := nftsync.R().Proto(r.Protocol)
	cidr, _ := netspec.ParseRemoteCIDR(r.RemoteCIDR)
	switch {
	case r.RemoteGroup != "" && ingress:
		b = b.IPv4().In(GroupSet(r.RemoteGroup), nftsync.SAddr, nftsync.SAddr)
	case r.RemoteGroup != "":
		b = b.IPv4().In(GroupSet(r.RemoteGroup), nftsync.DAddr, nftsync.DAddr)
	case ingress:
		b = b.Src(cidr)
	default:
		b = b.Dst(cidr)
	}
	if r.Ports != nil {
		b = b.DPort(r.Ports.From, r.Ports.To)
	}
	return b
}

// compilers keeps a firewall.Compiler per shared chain, so that a rule
// added to or removed from a group is compiled only where it reaches. A
// driver owns one; nil compiles afresh.
type compilers struct {
	m    map[string]*firewall.Compiler
	used map[string]bool // chains compiled since the last prune
}

func newCompilers() *compilers {
	return &compilers{m: map[string]*firewall.Compiler{}, used: map[string]bool{}}
}

func (cc *compilers) compile(chain string, list []firewall.Rule) ([]nftsync.Rule, []nftsync.Set) {
	if cc == nil {
		return firewall.Compile(chain, list)
	}
	c := cc.m[chain]
	if c == nil {
		c = firewall.NewCompiler(chain)
		cc.m[chain] = c
	}
	cc.used[chain] = true
	return c.Compile(list)
}

// prune drops the compilers of chains no ruleset compiled since the last
// prune.
func (cc *compilers) prune() {
	for k := range cc.m {
		if !cc.used[k] {
			delete(cc.m, k)
		}
	}
	clear(cc.used)
}
