package network_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
)

// twoProjects is the lab of TestTwoProjectsSameCIDR: projects A and B with
// the same 10.1.1.0/24 on VNIs 5001 and 6001 over three hosts.
type twoProjects struct {
	lab    *nettest.Lab
	agents []*nettest.Agent
	nets   []network.Network
	ports  []network.Port
	eps    []testEndpoint
}

type testEndpoint struct {
	name, project, host, ip string
	port                    network.Port
	ns                      string
}

func subnet() network.Subnet {
	return network.Subnet{
		ID: "s4", CIDR: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1"), DHCP: true,
	}
}

func port(id, netID, host string, mac byte, ip string, owner string) network.Port {
	return network.Port{
		ID: id, NetworkID: netID, Host: host, Owner: owner, HostName: id,
		MAC: net.HardwareAddr{0x02, 0x5a, 0, 0, netID[len(netID)-1], mac},
		IPs: []netip.Addr{netip.MustParseAddr(ip)},
	}
}

// forEachDriver runs f as a subtest per L2 driver, every host of the lab
// on that driver: the driver-agnostic tests pass on both. "ovs-gre" runs
// the ovs hosts with both projects' networks of type gre.
func forEachDriver(t *testing.T, f func(t *testing.T, p *twoProjects)) {
	for _, d := range nettest.Drivers {
		t.Run(d, func(t *testing.T) { f(t, newTwoProjectsOn(t, d, d, d)) })
	}
	t.Run("ovs-gre", func(t *testing.T) {
		p := newTwoProjectsOn(t, "ovs", "ovs", "ovs")
		for i := range p.nets {
			p.nets[i].Type = network.TypeGRE
		}
		f(t, p)
	})
}

// newTwoProjects places A's DHCP on h1 and endpoints on h2 and h3; B's DHCP
// and one endpoint on h3 (same host) and the other on h1. A1 and B1 have the
// same IP 10.1.1.10.
func newTwoProjects(t *testing.T) *twoProjects {
	return newTwoProjectsOn(t, "linuxbridge", "linuxbridge", "linuxbridge")
}

// newTwoProjectsOn is newTwoProjects with host i running drivers[i]
// ("linuxbridge" or "ovs").
func newTwoProjectsOn(t *testing.T, drivers ...string) *twoProjects {
	lab := nettest.NewLabDrivers(t, drivers...)
	p := &twoProjects{lab: lab}
	p.nets = []network.Network{
		{ID: "proj-a", VNI: 5001, Subnets: []network.Subnet{subnet()}},
		{ID: "proj-b", VNI: 6001, Subnets: []network.Subnet{subnet()}},
	}
	p.ports = []network.Port{
		port("a-dhcp", "proj-a", "h1", 2, "10.1.1.2", network.OwnerDHCP),
		port("a1", "proj-a", "h2", 10, "10.1.1.10", ""),
		port("a2", "proj-a", "h3", 11, "10.1.1.11", ""),
		port("b-dhcp", "proj-b", "h3", 2, "10.1.1.2", network.OwnerDHCP),
		port("b1", "proj-b", "h3", 10, "10.1.1.10", ""),
		port("b2", "proj-b", "h1", 12, "10.1.1.12", ""),
	}
	for _, pt := range p.ports {
		if pt.Owner == "" {
			p.eps = append(p.eps, testEndpoint{name: pt.ID, project: pt.NetworkID, host: pt.Host, ip: pt.IPs[0].String(), port: pt})
		}
	}
	for _, h := range lab.Hosts {
		p.agents = append(p.agents, nettest.NewAgent(t, h))
	}
	return p
}

// state is host h's plan: the networks it has ports on, all their ports,
// and its local ports as DHCP endpoints.
func (p *twoProjects) state(h *nettest.Host) network.HostState {
	has := map[string]bool{}
	for _, pt := range p.ports {
		if pt.Host == h.Name {
			has[pt.NetworkID] = true
		}
	}
	var nets []network.Network
	for _, n := range p.nets {
		if has[n.ID] {
			nets = append(nets, n)
		}
	}
	var ports []network.Port
	for _, pt := range p.ports {
		if has[pt.NetworkID] {
			ports = append(ports, pt)
		}
	}
	st := p.lab.HostState(h, nets, ports)
	for i, ep := range p.eps {
		if ep.host == h.Name {
			st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: ep.name, IfName: "eth0", DHCP: true})
			p.eps[i].ns = h.Prefix + network.EndpointNSPart + ep.name
		}
	}
	return st
}

func (p *twoProjects) setAll(t *testing.T) {
	for i, a := range p.agents {
		a.Set(t, p.state(p.lab.Hosts[i]))
	}
}

// leaseAll runs udhcpc in every endpoint at once and checks each got its
// fixed address.
func (p *twoProjects) leaseAll(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(p.eps))
	for i, ep := range p.eps {
		wg.Go(func() {
			got, err := nettest.DHCP(ctx, t, ep.ns, "eth0")
			if err == nil && got != ep.ip {
				err = fmt.Errorf("got lease %q, want %s", got, ep.ip)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("dhcp for endpoint %s: %v", p.eps[i].name, err)
		}
	}
}

// reach pings to's IP from from's namespace and returns whether it answered
// and the MAC from's neighbour table holds for that IP afterwards.
func reach(ctx context.Context, from, to testEndpoint) (bool, string) {
	_, _ = nettest.Run(ctx, from.ns, "ip", "neigh", "flush", "all")
	_, recv, _ := nettest.Ping(ctx, from.ns, to.ip, 2, 200*time.Millisecond)
	out, _ := nettest.Run(ctx, from.ns, "ip", "neigh", "show", to.ip)
	mac := ""
	if f := strings.Fields(out); len(f) >= 5 && f[3] == "lladdr" {
		mac = f[4]
	}
	return recv > 0, mac
}
