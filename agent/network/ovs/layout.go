package ovs

import (
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// Port kinds on the integration bridge (external_ids:strata-kind).
const (
	kindNetwork = "network" // the veth to a network's hybrid bridge, before security groups became flows: removed
	kindTunnel  = "tunnel"
	kindLocal   = "local" // a DHCP, router or endpoint veth, plugged through PlugPort
	kindTap     = "tap"   // an instance's tap, added by libvirt (<virtualport type='openvswitch'>)
)

// External IDs of a local port: its network and the MACs behind it.
const (
	vniKey  = "strata-vni"
	macsKey = "strata-macs"
)

// layout is what the integration bridge must have for one host state: a
// port per local port of a network (with the network's local VLAN), and
// a tunnel port per remote host and tunnel type that shares a network
// with this host; the local ports with security groups get firewall
// flows.
type layout struct {
	ports map[string]wantPort
	nets  []layoutNet
	tuns  map[string]string // tunnel port -> type
	lvids map[uint32]int
	// taps are the instance taps libvirt is to add, not on the bridge yet.
	taps map[string]bool
	// fw are the local ports with security groups, by OVS port.
	fw map[string]FlowFiltered
	// errs are the ports kept closed, each a network.ResourceError.
	errs []error
}

type layoutNet struct {
	n       network.Network
	typ     string
	lvid    int
	locals  map[string][]string // local OVS port -> the MACs behind it
	unicast map[string]string   // remote MAC -> tunnel port
	flood   map[string]bool     // tunnel ports
	arp     map[netip.Addr]string
}

func netType(n network.Network) string {
	if n.IsGRE() {
		return TypeGRE
	}
	return TypeVXLAN
}

// portMACs is p's MAC and those of its allowed address pairs.
func portMACs(p network.Port) []string {
	out := []string{p.MAC.String()}
	for _, ap := range p.AllowedAddressPairs {
		if ap.MAC != nil {
			out = append(out, ap.MAC.String())
		}
	}
	return out
}

// buildLayout computes the layout from the state, the ports the bridge
// has (have) and the host's links. Local VLANs already given to a
// network's ports are kept; other networks get the lowest free ones, in
// VNI order.
func buildLayout(st network.HostState, nets []network.Network, have map[string]Port, links map[string]netlink.Link) layout {
	lay := layout{ports: map[string]wantPort{}, tuns: map[string]string{}, lvids: map[uint32]int{}, taps: map[string]bool{},
		fw: map[string]FlowFiltered{}}
	byVNI := map[uint32]bool{}
	for _, n := range nets {
		byVNI[n.VNI] = true
	}
	used := map[int]bool{}
	names := make([]string, 0, len(have))
	for name := range have {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := have[name]
		vni, err := strconv.ParseUint(p.ExternalIDs[vniKey], 10, 32)
		if err != nil || !owned(p.ExternalIDs) || !byVNI[uint32(vni)] || p.Tag == nil || *p.Tag <= 0 || *p.Tag >= 4095 {
			continue
		}
		if _, taken := lay.lvids[uint32(vni)]; !taken && !used[*p.Tag] {
			lay.lvids[uint32(vni)], used[*p.Tag] = *p.Tag, true
		}
	}
	next := 1
	idx := map[string]int{}
	for _, n := range nets {
		if lay.lvids[n.VNI] == 0 {
			for used[next] {
				next++
			}
			lay.lvids[n.VNI], used[next] = next, true
		}
		lvid := lay.lvids[n.VNI]
		idx[n.ID] = len(lay.nets)
		ln := layoutNet{n: n, typ: netType(n), lvid: lvid, locals: map[string][]string{},
			unicast: map[string]string{}, flood: map[string]bool{}, arp: map[netip.Addr]string{}}
		lay.nets = append(lay.nets, ln)
	}
	// Local ports plugged through PlugPort stay while their link is there
	// (not on a Linux bridge) and their network is.
	for _, name := range names {
		p := have[name]
		if !owned(p.ExternalIDs) || p.ExternalIDs[kindKey] != kindLocal {
			continue
		}
		vni, _ := strconv.ParseUint(p.ExternalIDs[vniKey], 10, 32)
		l, ok := links[name]
		if !ok || !byVNI[uint32(vni)] || nlink.OnLinuxBridge(l, links) {
			continue
		}
		var macs []string
		if m := p.ExternalIDs[macsKey]; m != "" {
			macs = strings.Split(m, ",")
		}
		lay.ports[name] = wantPort{name: name, tag: lay.lvids[uint32(vni)], kind: kindLocal, vni: uint32(vni), macs: macs}
		for i := range lay.nets {
			if lay.nets[i].n.VNI == uint32(vni) {
				lay.nets[i].locals[name] = macs
			}
		}
	}
	// A remote host's tunnel port name, made once per host and type.
	type tunKey struct {
		typ  string
		vtep netip.Addr
	}
	tunNames := map[tunKey]string{}
	// tunnel is network ln's tunnel port to host's VTEP (made once per
	// host and type), or false for a host without a usable VTEP.
	tunnel := func(ln *layoutNet, host string) (string, bool) {
		vtep, ok := st.RemoteVTEPs[host]
		if !ok || !vtep.IsValid() || vtep == st.LocalVTEP {
			return "", false
		}
		tk := tunKey{ln.typ, vtep}
		tun, ok := tunNames[tk]
		if !ok {
			tun = tunnelName(ln.typ, vtep)
			tunNames[tk] = tun
		}
		if _, ok := lay.ports[tun]; !ok {
			lay.ports[tun] = wantPort{name: tun, ifType: ln.typ, kind: kindTunnel,
				options: map[string]string{"remote_ip": vtep.String(), "key": "flow"}}
			lay.tuns[tun] = ln.typ
		}
		return tun, true
	}
	for _, p := range st.Ports {
		i, ok := idx[p.NetworkID]
		if !ok {
			continue
		}
		ln := &lay.nets[i]
		if p.Host == st.Host {
			// A port moving here live: the guest runs at the source
			// until it resumes here; the flood reaches it there.
			if p.From != "" {
				if tun, ok := tunnel(ln, p.From); ok {
					ln.flood[tun] = true
				}
			}
			// An instance's tap, which libvirt adds to the bridge: adopted
			// (tagged, flows) once it is there.
			tap := netspec.TapName(p.ID)
			if _, on := have[tap]; on {
				macs := portMACs(p)
				lay.ports[tap] = wantPort{name: tap, tag: ln.lvid, kind: kindTap, vni: ln.n.VNI, macs: macs}
				ln.locals[tap] = macs
			} else if p.Owner == "" {
				lay.taps[tap] = true
			}
			continue
		}
		tun, ok := tunnel(ln, p.Host)
		if !ok {
			continue
		}
		mac := p.MAC.String()
		ln.unicast[mac] = tun
		ln.flood[tun] = true
		for _, ip := range p.IPs {
			ln.arp[ip.Unmap()] = mac
		}
	}
	lay.firewall(st, idx)
	return lay
}

// firewall gives each local port with security groups, where it is on
// the bridge (its tap or endpoint veth), its sources and rules.
func (lay *layout) firewall(st network.HostState, idx map[string]int) {
	groups := map[string]netspec.SecurityGroup{}
	for _, g := range st.SecurityGroups {
		groups[g.ID] = g
	}
	var members map[string][]netip.Prefix
	for _, p := range st.Ports {
		i, ok := idx[p.NetworkID]
		if !ok || p.Host != st.Host || !p.Filtered() {
			continue
		}
		ln := &lay.nets[i]
		if members == nil {
			members = groupMembers(st)
		}
		rules, err := portRules(p, groups, members)
		if err != nil {
			lay.errs = append(lay.errs, &network.ResourceError{Kind: "port", ID: p.ID, Err: err})
		}
		for _, link := range []string{netspec.TapName(p.ID), netspec.EndpointVethName(p.ID)} {
			if _, on := ln.locals[link]; on {
				lay.fw[link] = FlowFiltered{LVID: ln.lvid, Sources: portSources(p), Rules: rules}
			}
		}
	}
}

// macList renders MACs for external_ids.
func macList(macs []net.HardwareAddr) []string {
	out := make([]string, 0, len(macs))
	for _, m := range macs {
		out = append(out, m.String())
	}
	return out
}

// flows renders the layout's flows with the ports' OpenFlow numbers. A
// port without one yet is left out.
func (lay layout) flows(ofports map[string]int) []string {
	var tuns []FlowTunnel
	for name, typ := range lay.tuns {
		tuns = append(tuns, FlowTunnel{Ofport: ofports[name], Type: typ})
	}
	nets := make([]FlowNetwork, 0, len(lay.nets))
	for _, ln := range lay.nets {
		fn := FlowNetwork{VNI: ln.n.VNI, Type: ln.typ, LVID: ln.lvid, Unicast: map[string]int{}, ARP: ln.arp}
		for name, macs := range ln.locals {
			if of := ofports[name]; of > 0 {
				_, filtered := lay.fw[name]
				fn.Locals = append(fn.Locals, FlowLocal{Ofport: of, MACs: macs, Filtered: filtered})
			}
		}
		for mac, tun := range ln.unicast {
			fn.Unicast[mac] = ofports[tun]
		}
		for tun := range ln.flood {
			fn.Flood = append(fn.Flood, ofports[tun])
		}
		sort.Ints(fn.Flood)
		nets = append(nets, fn)
	}
	var fw []FlowFiltered
	for name, f := range lay.fw {
		if of := ofports[name]; of > 0 {
			f.Ofport = of
			fw = append(fw, f)
		}
	}
	return Flows(nets, tuns, fw)
}
