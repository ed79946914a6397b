package network_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
)

// BenchmarkVXLANvsVeth: TCP throughput between two endpoints of one
// network on two lab hosts (endpoint veth, bridge, VXLAN, underlay veth
// and back), against the same between the two hosts over the plain veth
// underlay, one stream each. The two are measured in pairs of 400 ms
// streams, back to back, the order alternating, so that the load of a
// shared machine weighs on both alike; 8 pairs per iteration (24 at
// -benchtime 3x, about 25 s). Each pair gives a ratio (vxlan/veth) of
// Gbit/s and of Gbit per CPU-second of the sending and the receiving
// thread (see nettest.Stream); the figures are the medians, their range
// and the quartiles of the per-CPU ratio. The per-CPU ratio is the one to
// read on a shared machine: the Gbit/s ratio mostly says which stream got
// more of the two cores.
func BenchmarkVXLANvsVeth(b *testing.B) {
	lab := nettest.NewLab(b, 2)
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	var ports []network.Port
	for i, h := range lab.Hosts {
		ports = append(ports, network.Port{ID: "p" + h.Name, NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(i + 1),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(11 + i)})}})
	}
	var eps []string
	for i, h := range lab.Hosts {
		ag := nettest.NewAgent(b, h)
		st := lab.HostState(h, []network.Network{n}, ports)
		st.LocalEndpoints = []network.Endpoint{{PortID: ports[i].ID, IfName: "eth0", Addr: netip.PrefixFrom(ports[i].IPs[0], 24)}}
		ag.Set(b, st)
		eps = append(eps, ag.EP.Namespace(network.Endpoint{PortID: ports[i].ID}))
	}
	veth := nettest.Path{NS: lab.Hosts[0].NS, Addr: net.JoinHostPort(lab.Hosts[1].VTEP.String(), sinkPort)}
	vxlan := nettest.Path{NS: eps[0], Addr: net.JoinHostPort(ports[1].IPs[0].String(), sinkPort)}
	nettest.Sink(b, lab.Hosts[1].NS, sinkPort)
	nettest.Sink(b, eps[1], sinkPort)
	for _, p := range []nettest.Path{veth, vxlan} {
		nettest.Stream(b, p.NS, p.Addr, 200*time.Millisecond) // warm up, and the path works
	}
	nettest.StreamPairs(b, 8*b.N, veth, vxlan, 400*time.Millisecond).Report(b, "veth", "vxlan")
}

const sinkPort = "5201"
