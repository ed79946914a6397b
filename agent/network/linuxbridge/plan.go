package linuxbridge

import (
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/agent/network"
)

// Tunnel is the l2population state of one network's VXLAN device: what the
// device must know about remote ports, and which hosts get its broadcast,
// unknown-unicast and multicast (BUM) traffic.
type Tunnel struct {
	FDB   map[string]netip.Addr // remote port MAC -> its host's VTEP
	BUM   map[netip.Addr]bool   // VTEPs in the all-zero MAC entry
	Neigh map[netip.Addr]string // remote port IP -> MAC, answered by the ARP/ND proxy
}

func newTunnel() Tunnel {
	return Tunnel{FDB: map[string]netip.Addr{}, BUM: map[netip.Addr]bool{}, Neigh: map[netip.Addr]string{}}
}

// Plan is the desired tunnel state per VNI.
type Plan map[uint32]Tunnel

// BuildPlan computes the l2population entries of every network on this host.
// A remote host gets a network's BUM traffic when it has at least one port on
// it (instance or DHCP port), or is the source of a port moving here
// (Port.From), and is in RemoteVTEPs; ports of hosts missing
// from RemoteVTEPs (left the membership) get no entries.
func BuildPlan(st network.HostState) Plan {
	vniOf := make(map[string]uint32, len(st.Networks))
	plan := make(Plan, len(st.Networks))
	for _, n := range st.Networks {
		vniOf[n.ID] = n.VNI
		plan[n.VNI] = newTunnel()
	}
	for _, p := range st.Ports {
		vni, ok := vniOf[p.NetworkID]
		if !ok {
			continue
		}
		if p.Host == st.Host {
			// A port moving here live: the guest runs at the source
			// until it resumes here; the flood reaches it there.
			if vtep, ok := st.RemoteVTEPs[p.From]; ok && p.From != "" && vtep.IsValid() && vtep != st.LocalVTEP {
				plan[vni].BUM[vtep] = true
			}
			continue
		}
		vtep, ok := st.RemoteVTEPs[p.Host]
		if !ok || !vtep.IsValid() || vtep == st.LocalVTEP {
			continue
		}
		t := plan[vni]
		t.FDB[p.MAC.String()] = vtep
		t.BUM[vtep] = true
		for _, ip := range p.IPs {
			t.Neigh[ip.Unmap()] = p.MAC.String()
		}
	}
	return plan
}

// OpKind says what one change to a VXLAN device does.
type OpKind int

// The changes, in the order they are applied: adds before deletes.
const (
	SetFDB   OpKind = iota // add or move a remote MAC
	AddBUM                 // add a VTEP to the all-zero entry
	SetNeigh               // add or change a proxy neighbour
	DelNeigh
	DelBUM
	DelFDB
)

// Op is one change to a VXLAN device's FDB or neighbour table.
type Op struct {
	Kind OpKind
	MAC  string     // FDB and neighbour ops
	Addr netip.Addr // VTEP for FDB/BUM ops, IP for neighbour ops
}

// Diff returns the changes that turn have into want, adds first, in a stable
// order.
func Diff(want, have Tunnel) []Op {
	var ops []Op
	for mac, vtep := range want.FDB {
		if cur, ok := have.FDB[mac]; !ok || cur != vtep {
			ops = append(ops, Op{Kind: SetFDB, MAC: mac, Addr: vtep})
		}
	}
	for vtep := range want.BUM {
		if !have.BUM[vtep] {
			ops = append(ops, Op{Kind: AddBUM, Addr: vtep})
		}
	}
	for ip, mac := range want.Neigh {
		if cur, ok := have.Neigh[ip]; !ok || cur != mac {
			ops = append(ops, Op{Kind: SetNeigh, MAC: mac, Addr: ip})
		}
	}
	for ip, mac := range have.Neigh {
		if _, ok := want.Neigh[ip]; !ok {
			ops = append(ops, Op{Kind: DelNeigh, MAC: mac, Addr: ip})
		}
	}
	for vtep := range have.BUM {
		if !want.BUM[vtep] {
			ops = append(ops, Op{Kind: DelBUM, Addr: vtep})
		}
	}
	for mac, vtep := range have.FDB {
		if _, ok := want.FDB[mac]; !ok {
			ops = append(ops, Op{Kind: DelFDB, MAC: mac, Addr: vtep})
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		a, b := ops[i], ops[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.MAC != b.MAC {
			return a.MAC < b.MAC
		}
		return a.Addr.Less(b.Addr)
	})
	return ops
}
