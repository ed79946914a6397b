package nettest

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/ovs"
)

// MAC returns a locally administered unicast MAC 02:00:00:00:hi:lo.
func MAC(n int) net.HardwareAddr {
	return net.HardwareAddr{0x02, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
}

// HostState returns the state of host h in lab: every other host of the lab
// is a live remote VTEP.
func (lab *Lab) HostState(h *Host, nets []network.Network, ports []network.Port) network.HostState {
	remote := map[string]netip.Addr{}
	for _, o := range lab.Hosts {
		if o != h {
			remote[o.Name] = o.VTEP
		}
	}
	st := network.HostState{
		Host: h.Name, LocalVTEP: h.VTEP, UnderlayDev: UnderlayDev,
		Networks: append([]network.Network(nil), nets...), Ports: ports, RemoteVTEPs: remote,
	}
	// Bound as the agent binds them, by the host's L2 driver.
	for i := range st.Networks {
		if h.Driver == "ovs" {
			st.Networks[i].L2 = ovs.Binding(st.Networks[i])
		} else {
			st.Networks[i].L2 = linuxbridge.Binding(st.Networks[i])
		}
	}
	return st
}

// Scale returns nNets networks (VNI 10000+i) with nPorts ports spread
// round-robin over the given hosts, for benchmarks and convergence tests.
func Scale(nNets, nPorts int, hosts []string) ([]network.Network, []network.Port) {
	nets := make([]network.Network, nNets)
	for i := range nets {
		nets[i] = network.Network{ID: fmt.Sprintf("net%d", i), VNI: uint32(10000 + i)}
	}
	ports := make([]network.Port, nPorts)
	for i := range ports {
		ip := netip.AddrFrom4([4]byte{10, byte(i / 250 % 250), byte(i % 250), 10})
		ports[i] = network.Port{
			ID: fmt.Sprintf("port%d", i), NetworkID: nets[i%nNets].ID,
			MAC: MAC(i + 1), IPs: []netip.Addr{ip}, Host: hosts[i%len(hosts)],
		}
	}
	return nets, ports
}
