package secgroup

import (
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netspec"
)

// DefaultL2Table is the driver's bridge-family table: the anti-spoofing
// of what filtered local ports send, checked on the port's own link.
//
// Why a second table: ARP never reaches the inet hooks, and there a port
// is seen only as its bridge (br_netfilter); in the bridge family the
// input interface is the port's tap or endpoint veth, so a port is told
// from its neighbours by its link, not by the MAC it claims. The checks
// are stateless (no bridge conntrack on this kernel), as neutron's
// anti-spoofing rules are; the stateful group rules stay in inet.
const DefaultL2Table = "strata_ps"

// l2Map is the verdict map from a port's links to its chain.
const l2Map = "port_links"

var l2Key = []nftsync.Field{nftsync.IIFName}

// l2Source is one (MAC, address or CIDR) a port may send from.
type l2Source struct {
	mac    net.HardwareAddr
	prefix netip.Prefix
}

// l2Sources is EachSource's list, per family.
func l2Sources(p network.Port) (v4, v6 []l2Source) {
	EachSource(p, func(mac net.HardwareAddr, pre netip.Prefix) {
		if pre.Addr().Is4() {
			v4 = append(v4, l2Source{mac, pre})
		} else {
			v6 = append(v6, l2Source{mac, pre})
		}
	})
	return v4, v6
}

// EachSource calls f with each (MAC, address or CIDR) p may send from:
// each of its addresses with its MAC, its allowed pairs (with their MAC,
// or its own), then the IPv6 link-local address of each of those MACs
// (EUI-64), which IPv6 needs before it has any other (neighbour
// discovery, router solicits). The nft anti-spoofing table and the OVS
// firewall flows both admit exactly these.
func EachSource(p network.Port, f func(mac net.HardwareAddr, pre netip.Prefix)) {
	macs := []net.HardwareAddr{p.MAC}
	for _, a := range p.IPs {
		f(p.MAC, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, ap := range p.AllowedAddressPairs {
		mac := ap.MAC
		if mac == nil {
			mac = p.MAC
		} else if mac.String() != p.MAC.String() {
			macs = append(macs, mac)
		}
		f(mac, ap.Prefix.Masked())
	}
	for _, m := range macs {
		if ll, ok := LinkLocal(m); ok {
			f(m, netip.PrefixFrom(ll, 128))
		}
	}
}

// LinkLocal is the IPv6 link-local address (EUI-64) of a 48-bit MAC.
func LinkLocal(mac net.HardwareAddr) (netip.Addr, bool) {
	if len(mac) != 6 {
		return netip.Addr{}, false
	}
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8], b[9], b[10] = mac[0]^0x02, mac[1], mac[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(b), true
}

// l2Ruleset is the bridge-family table for st.Host: for each filtered
// local port, a chain that returns what the port may send and drops the
// rest, reached through a map from the port's links (tap and endpoint
// veth, whichever it has). Unknown links (ports without port security,
// DHCP and router legs, uplinks) are not touched.
func l2Ruleset(name string, st network.HostState) nftsync.Table {
	t := nftsync.Table{Family: nftables.TableFamilyBridge, Name: name}
	dispatch := nftsync.Set{Name: l2Map, Fields: l2Key, VMap: true, Exact: true}
	var chains []nftsync.Chain
	seen := map[string]bool{}
	for _, p := range st.Ports {
		if !filtered(st, p) || seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		ch := netspec.PortSecurityChain(p.ID)
		for _, link := range []string{netspec.TapName(p.ID), netspec.EndpointVethName(p.ID)} {
			dispatch.Ranges = append(dispatch.Ranges, nftsync.Range{From: nftsync.PackBytes(l2Key, [][]byte{[]byte(link)}),
				Verdict: expr.Verdict{Kind: expr.VerdictJump, Chain: ch}})
		}
		chains = append(chains, nftsync.Chain{Name: ch, Rules: l2PortRules(p)}, nftsync.Chain{Name: netspec.PortNDChain(p.ID), Rules: ndRules(p)})
	}
	pre := nftsync.Chain{Name: "prerouting", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityFilter, Rules: []nftsync.Rule{nftsync.R().VMap(l2Map, l2Key...)}}
	t.Sets = []nftsync.Set{dispatch}
	t.Chains = append([]nftsync.Chain{pre}, chains...)
	return t
}

// l2PortRules is what port p may send, by ethernet type:
//   - IPv4 from one of its sources (MAC and address), or a DHCP request
//     from 0.0.0.0;
//   - ARP whose frame and sender hardware address are one of its MACs and
//     whose sender address is one of its sources (0.0.0.0: a probe);
//   - RARP whose frame and sender hardware address are one of its MACs:
//     the announcement qemu sends when a guest resumes after a live
//     migration, which moves the MAC to the port on every bridge;
//   - IPv6 from one of its sources, link-local included, or from :: for
//     ICMPv6 (duplicate address detection, MLD); never a router
//     advertisement or a redirect: a guest is not a router; a neighbour
//     advertisement only for one of its addresses (ndRules): IPv6's ARP
//     reply, which would otherwise draw a neighbour's traffic for any
//     address to the port;
//   - nothing else.
func l2PortRules(p network.Port) []nftsync.Rule {
	v4, v6 := l2Sources(p)
	var rs []nftsync.Rule
	for _, s := range v4 {
		rs = append(rs, nftsync.R().EtherType(nftsync.EtherIPv4).EtherSrc(s.mac).Src(s.prefix).Return())
	}
	rs = append(rs,
		nftsync.R().EtherType(nftsync.EtherIPv4).EtherSrc(p.MAC).Src(netip.MustParsePrefix("0.0.0.0/32")).
			Proto(netspec.ProtoUDP).SPort(68, 68).DPort(67, 67).Return(),
		nftsync.R().EtherType(nftsync.EtherIPv4).Drop())
	for _, s := range v4 {
		rs = append(rs, nftsync.R().EtherType(nftsync.EtherARP).EtherSrc(s.mac).ARPSender(s.mac, s.prefix).Return())
	}
	rs = append(rs,
		nftsync.R().EtherType(nftsync.EtherARP).EtherSrc(p.MAC).ARPSender(p.MAC, netip.MustParsePrefix("0.0.0.0/32")).Return(),
		nftsync.R().EtherType(nftsync.EtherARP).Drop())
	for _, mac := range l2MACs([]l2Source{{mac: p.MAC}}, v4, v6) {
		rs = append(rs, nftsync.R().EtherType(nftsync.EtherRARP).EtherSrc(mac).ARPSender(mac, netip.Prefix{}).Return())
	}
	rs = append(rs,
		nftsync.R().EtherType(nftsync.EtherIPv6).ICMPv6Type(nftsync.ICMPv6RouterAdvert).Drop(),
		nftsync.R().EtherType(nftsync.EtherIPv6).ICMPv6Type(nftsync.ICMPv6Redirect).Drop(),
		nftsync.R().EtherType(nftsync.EtherIPv6).ICMPv6Type(nftsync.ICMPv6NeighborAdvert).Jump(netspec.PortNDChain(p.ID)))
	for _, s := range v6 {
		rs = append(rs, nftsync.R().EtherType(nftsync.EtherIPv6).EtherSrc(s.mac).Src6(s.prefix).Return())
	}
	rs = append(rs,
		nftsync.R().EtherType(nftsync.EtherIPv6).EtherSrc(p.MAC).Src6(netip.MustParsePrefix("::/128")).L4Proto(58).Return(),
		nftsync.R().Drop())
	return rs
}

// l2MACs are the distinct MACs among a port's sources, in order.
func l2MACs(lists ...[]l2Source) []net.HardwareAddr {
	var out []net.HardwareAddr
	seen := map[string]bool{}
	for _, l := range lists {
		for _, s := range l {
			if k := s.mac.String(); !seen[k] {
				seen[k] = true
				out = append(out, s.mac)
			}
		}
	}
	return out
}

// ndRules is the chain of p's neighbour advertisements: one whose target
// is one of p's IPv6 sources (addresses, pairs, link-local) returns to
// the port's chain, which checks its source next; any other is dropped.
func ndRules(p network.Port) []nftsync.Rule {
	_, v6 := l2Sources(p)
	var rs []nftsync.Rule
	seen := map[netip.Prefix]bool{}
	for _, s := range v6 {
		if !seen[s.prefix] {
			seen[s.prefix] = true
			rs = append(rs, nftsync.R().NDTarget(s.prefix).Return())
		}
	}
	return append(rs, nftsync.R().Drop())
}
