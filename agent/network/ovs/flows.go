package ovs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// The OpenFlow tables of the integration bridge. Nothing on it uses the
// NORMAL action: every packet is steered by these flows, so a broadcast
// from one tunnel never goes back out of another.
const (
	TableClassify   = 0   // which port a packet came in on; local ports get their network's VLAN
	TableFromTunnel = 4   // tunnel key -> the network's local VLAN
	TableARP        = 10  // ARP for known remote ports answered here
	TableToTunnel   = 20  // from a local port: a local MAC to its port, a remote one to its host's tunnel, the rest flooded
	TableToLocal    = 30  // from a tunnel: a local MAC to its port, the rest to every local port of the network
	TableCanary     = 250 // one flow of the current generation: gone means ovs-vswitchd lost its flows
)

// Tunnel types, also network types.
const (
	TypeVXLAN = "vxlan"
	TypeGRE   = "gre"
)

// tunnelTypeReg is the value REG0 carries from table 0 to table 4 for
// packets from a tunnel of each type, so a VXLAN key never reaches a GRE
// network with the same number (or the reverse).
var tunnelTypeReg = map[string]int{TypeVXLAN: 1, TypeGRE: 2}

// CookieTag marks Strata's flows in the upper 32 bits of the cookie; the
// lower 32 bits are the generation.
const CookieTag uint64 = 0x53545241 << 32 // "STRA"

// Cookie is the cookie of every flow of generation gen.
func Cookie(gen uint32) uint64 { return CookieTag | uint64(gen) }

// FlowNetwork is what the flows need to know of one network on this host.
type FlowNetwork struct {
	VNI  uint32
	Type string // TypeVXLAN or TypeGRE
	LVID int    // local VLAN on the integration bridge, 1..4094
	// Locals are the network's ports on the integration bridge.
	Locals []FlowLocal
	// Unicast maps a remote port's MAC to the ofport of its host's tunnel.
	Unicast map[string]int
	// Flood is the tunnels to the hosts with ports on the network.
	Flood []int
	// ARP maps a remote port's IPv4 address to its MAC.
	ARP map[netip.Addr]string
}

// FlowLocal is one local port of a network: its ofport and the MACs
// behind it (unicast to them goes straight there, or through its
// ingress firewall when it is Filtered).
type FlowLocal struct {
	Ofport   int
	MACs     []string
	Filtered bool
}

// FlowTunnel is one tunnel port of the integration bridge.
type FlowTunnel struct {
	Ofport int
	Type   string
}

// Flows renders the integration bridge's flows, without cookie, in a
// stable order: the same input gives the same text. fw are the local
// ports with security groups (their Locals entries say Filtered).
func Flows(nets []FlowNetwork, tunnels []FlowTunnel, fw []FlowFiltered) []string {
	var out []string
	add := func(table, prio int, match, actions string) { out = append(out, flowLine(table, prio, match, actions)) }
	add(TableClassify, 0, "", "drop")
	add(TableFromTunnel, 0, "", "drop")
	add(TableARP, 0, "", "goto_table:"+strconv.Itoa(TableToTunnel))
	add(TableToTunnel, 0, "", "drop")
	add(TableToLocal, 0, "", "drop")
	add(TableCanary, 0, "", "drop")
	tuns := append([]FlowTunnel(nil), tunnels...)
	sort.Slice(tuns, func(i, j int) bool { return tuns[i].Ofport < tuns[j].Ofport })
	for _, t := range tuns {
		add(TableClassify, 100, "in_port="+strconv.Itoa(t.Ofport),
			fmt.Sprintf("set_field:%d->reg0,goto_table:%d", tunnelTypeReg[t.Type], TableFromTunnel))
	}
	ns := append([]FlowNetwork(nil), nets...)
	sort.Slice(ns, func(i, j int) bool { return ns[i].VNI < ns[j].VNI })
	for _, n := range ns {
		out = append(out, networkFlows(n)...)
	}
	return append(out, firewallFlows(fw)...)
}

// flowLine renders one flow for ovs-ofctl; an empty match matches all.
func flowLine(table, prio int, match, actions string) string {
	var b strings.Builder
	b.Grow(len("table=255,priority=65535,,actions=") + len(match) + len(actions))
	b.WriteString("table=")
	b.WriteString(strconv.Itoa(table))
	b.WriteString(",priority=")
	b.WriteString(strconv.Itoa(prio))
	if match != "" {
		b.WriteByte(',')
		b.WriteString(match)
	}
	b.WriteString(",actions=")
	b.WriteString(actions)
	return b.String()
}

func networkFlows(n FlowNetwork) []string {
	var out []string
	add := func(table, prio int, match, actions string) { out = append(out, flowLine(table, prio, match, actions)) }
	vlan := fmt.Sprintf("dl_vlan=%d", n.LVID)
	toTunnel := fmt.Sprintf("set_field:%d->tun_id", n.VNI)
	locals := append([]FlowLocal(nil), n.Locals...)
	sort.Slice(locals, func(i, j int) bool { return locals[i].Ofport < locals[j].Ofport })
	localMACs := map[string]int{}
	filtered := map[int]bool{}
	var outLocals, outFiltered string
	for _, l := range locals {
		for _, m := range l.MACs {
			localMACs[m] = l.Ofport
		}
		if l.Filtered {
			// Its classification is the firewall's; what goes to it
			// goes through its ingress rules (a fork each, by
			// conntrack, so one flood reaches every port it may).
			filtered[l.Ofport] = true
			outFiltered += fmt.Sprintf(",set_field:%d->reg7,resubmit(,%d)", l.Ofport, TableIngress)
			continue
		}
		add(TableClassify, 100, "in_port="+strconv.Itoa(l.Ofport),
			fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid,goto_table:%d", 0x1000|n.LVID, TableARP))
		outLocals += ",output:" + strconv.Itoa(l.Ofport)
	}
	outLocals += outFiltered
	add(TableFromTunnel, 100, fmt.Sprintf("reg0=%d,tun_id=%d", tunnelTypeReg[n.Type], n.VNI),
		fmt.Sprintf("push_vlan:0x8100,set_field:%d->vlan_vid,goto_table:%d", 0x1000|n.LVID, TableToLocal))
	ips := make([]netip.Addr, 0, len(n.ARP))
	for ip := range n.ARP {
		if ip.Is4() {
			ips = append(ips, ip)
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	for _, ip := range ips {
		mac, ipS := n.ARP[ip], ip.String()
		// An ARP request for a known remote port becomes its reply, sent
		// back where it came from: the tunnels carry no ARP for it.
		var a strings.Builder
		a.Grow(230)
		for _, s := range []string{
			"move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:", mac, "->eth_src,set_field:2->arp_op,",
			"move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],",
			"set_field:", mac, "->arp_sha,set_field:", ipS, "->arp_spa,pop_vlan,IN_PORT",
		} {
			a.WriteString(s)
		}
		add(TableARP, 100, vlan+",arp,arp_op=1,arp_tpa="+ipS, a.String())
	}
	// Local MACs: to their port, whether the packet came from another
	// local port or from a tunnel.
	macs := make([]string, 0, len(localMACs))
	for mac := range localMACs {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	for _, mac := range macs {
		of := localMACs[mac]
		to := "pop_vlan,output:" + strconv.Itoa(of)
		if filtered[of] {
			to = fmt.Sprintf("pop_vlan,set_field:%d->reg7,goto_table:%d", of, TableIngress)
		}
		for _, table := range []int{TableToTunnel, TableToLocal} {
			add(table, 60, vlan+",dl_dst="+mac, to)
		}
	}
	macs = macs[:0]
	for mac := range n.Unicast {
		if _, local := localMACs[mac]; !local {
			macs = append(macs, mac)
		}
	}
	sort.Strings(macs)
	for _, mac := range macs {
		add(TableToTunnel, 50, vlan+",dl_dst="+mac, "pop_vlan,"+toTunnel+",output:"+strconv.Itoa(n.Unicast[mac]))
	}
	// Broadcast and unknown unicast: from a local port to the other local
	// ports (OpenFlow never sends a packet back out of its in_port) and to
	// the network's hosts; from a tunnel to the local ports only.
	flood := append([]int(nil), n.Flood...)
	sort.Ints(flood)
	acts := "pop_vlan" + outLocals
	if len(flood) > 0 {
		acts += "," + toTunnel
		for _, p := range flood {
			acts += ",output:" + strconv.Itoa(p)
		}
	}
	if acts != "pop_vlan" {
		add(TableToTunnel, 10, vlan, acts)
	}
	if outLocals != "" {
		add(TableToLocal, 10, vlan, "pop_vlan"+outLocals)
	}
	return out
}

// FlowsHash identifies a flow set, so an agent restart can tell that what
// is installed is already what it wants.
func FlowsHash(flows []string) string {
	h := sha256.New()
	var buf []byte
	for _, f := range flows {
		buf = append(append(buf[:0], f...), '\n')
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// WithCookie prefixes every flow with the generation's cookie.
func WithCookie(flows []string, gen uint32) string {
	var b strings.Builder
	c := "cookie=0x" + strconv.FormatUint(Cookie(gen), 16) + ","
	for _, f := range flows {
		b.WriteString(c)
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return b.String()
}
