package ovs

import (
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/agent/network"
)

// layout is what the integration bridge must have for one host state: a
// port per network (with its local VLAN) and a tunnel port per remote host
// and tunnel type that shares a network with this host.
type layout struct {
	ports map[string]wantPort
	nets  []layoutNet
	tuns  map[string]string // tunnel port -> type
}

type layoutNet struct {
	n       network.Network
	typ     string
	lvid    int
	unicast map[string]string // remote MAC -> tunnel port
	flood   map[string]bool   // tunnel ports
	arp     map[netip.Addr]string
}

func netType(n network.Network) string {
	if n.IsGRE() {
		return TypeGRE
	}
	return TypeVXLAN
}

// buildLayout computes the layout. Local VLANs already given to a
// network's port are kept; new networks get the lowest free ones.
func buildLayout(st network.HostState, nets []network.Network, have map[string]Port) layout {
	lay := layout{ports: map[string]wantPort{}, tuns: map[string]string{}}
	used := map[int]bool{}
	lvid := map[uint32]int{}
	for _, n := range nets {
		if p, ok := have[PatchOVSName(n.VNI)]; ok && owned(p.ExternalIDs) && p.Tag != nil && *p.Tag > 0 && *p.Tag < 4095 && !used[*p.Tag] {
			lvid[n.VNI], used[*p.Tag] = *p.Tag, true
		}
	}
	next := 1
	idx := map[string]int{}
	for _, n := range nets {
		if lvid[n.VNI] == 0 {
			for used[next] {
				next++
			}
			lvid[n.VNI], used[next] = next, true
		}
		name := PatchOVSName(n.VNI)
		lay.ports[name] = wantPort{name: name, tag: lvid[n.VNI], kind: "network"}
		idx[n.ID] = len(lay.nets)
		lay.nets = append(lay.nets, layoutNet{n: n, typ: netType(n), lvid: lvid[n.VNI],
			unicast: map[string]string{}, flood: map[string]bool{}, arp: map[netip.Addr]string{}})
	}
	for _, p := range st.Ports {
		i, ok := idx[p.NetworkID]
		if !ok || p.Host == st.Host {
			continue
		}
		vtep, ok := st.RemoteVTEPs[p.Host]
		if !ok || !vtep.IsValid() || vtep == st.LocalVTEP {
			continue
		}
		ln := &lay.nets[i]
		tun := tunnelName(ln.typ, vtep)
		if _, ok := lay.ports[tun]; !ok {
			lay.ports[tun] = wantPort{name: tun, ifType: ln.typ, kind: "tunnel",
				options: map[string]string{"remote_ip": vtep.String(), "key": "flow"}}
			lay.tuns[tun] = ln.typ
		}
		ln.unicast[p.MAC.String()] = tun
		ln.flood[tun] = true
		for _, ip := range p.IPs {
			ln.arp[ip.Unmap()] = p.MAC.String()
		}
	}
	return lay
}

// flows renders the layout's flows with the ports' OpenFlow numbers.
func (lay layout) flows(ofports map[string]int) []string {
	var tuns []FlowTunnel
	for name, typ := range lay.tuns {
		tuns = append(tuns, FlowTunnel{Ofport: ofports[name], Type: typ})
	}
	nets := make([]FlowNetwork, 0, len(lay.nets))
	for _, ln := range lay.nets {
		fn := FlowNetwork{VNI: ln.n.VNI, Type: ln.typ, LVID: ln.lvid, Patch: ofports[PatchOVSName(ln.n.VNI)],
			Unicast: map[string]int{}, ARP: ln.arp}
		for mac, tun := range ln.unicast {
			fn.Unicast[mac] = ofports[tun]
		}
		for tun := range ln.flood {
			fn.Flood = append(fn.Flood, ofports[tun])
		}
		sort.Ints(fn.Flood)
		nets = append(nets, fn)
	}
	return Flows(nets, tuns)
}
