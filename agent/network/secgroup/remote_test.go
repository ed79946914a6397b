package secgroup_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestRemotePortBothWays: a port whose group allows everything, on one
// host, and a port without groups on another host of the same network.
// Each starts a TCP connection and a ping to the other: both ways work,
// on both L2 drivers (on ovs, the filtered port once could answer but not
// start a connection).
//
// The report's other conditions, with the filtered port on an ovs host
// and the far port filtered too: "everything" as explicit 0.0.0.0/0
// rules, and the default group's remote-group ingress (both ports
// members); each side then starts a second connection, after conntrack
// holds the first.
func TestRemotePortBothWays(t *testing.T) {
	for _, drv := range [][]string{{"linuxbridge", "linuxbridge"}, {"ovs", "ovs"}, {"ovs", "linuxbridge"}, {"linuxbridge", "ovs"}} {
		for _, farSG := range []bool{false, true} {
			t.Run(drv[0]+"-"+drv[1]+map[bool]string{true: "-filtered"}[farSG], func(t *testing.T) { testRemotePortBothWays(t, drv, farSG, allowAll) })
		}
	}
	for _, drv := range [][]string{{"ovs", "ovs"}, {"ovs", "linuxbridge"}} {
		for _, rs := range []struct {
			name  string
			rules []netspec.SecurityGroupRule
		}{{"cidr", allowAllCIDR}, {"default", netspec.DefaultSecurityGroup("all").Rules}} {
			t.Run(drv[0]+"-"+drv[1]+"-filtered-"+rs.name, func(t *testing.T) { testRemotePortBothWays(t, drv, true, rs.rules) })
		}
	}
}

var (
	allowAll     = []netspec.SecurityGroupRule{{Direction: netspec.Egress}, {Direction: netspec.Ingress}}
	allowAllCIDR = []netspec.SecurityGroupRule{{Direction: netspec.Egress, RemoteCIDR: "0.0.0.0/0"}, {Direction: netspec.Ingress, RemoteCIDR: "0.0.0.0/0"}}
)

func testRemotePortBothWays(t *testing.T, drv []string, farSG bool, rules []netspec.SecurityGroupRule) {
	lab := nettest.NewLabDrivers(t, drv...)
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	ports := []network.Port{
		{ID: "open", Host: "h1", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.10")}, SecurityGroups: []string{"all"}},
		{ID: "far", Host: "h2", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.20")}},
	}
	for i := range ports {
		ports[i].NetworkID, ports[i].MAC = n.ID, nettest.MAC(i+1)
	}
	if farSG {
		ports[1].SecurityGroups = []string{"all"}
	}
	groups := []netspec.SecurityGroup{{ID: "all", Rules: rules}}
	ns := map[string]string{}
	for _, h := range lab.Hosts {
		ag := nettest.NewAgent(t, h)
		st := lab.HostState(h, []network.Network{n}, ports)
		st.SecurityGroups = groups
		for _, p := range ports {
			if p.Host == h.Name {
				ep := network.Endpoint{PortID: p.ID, IfName: "eth0", Addr: netip.PrefixFrom(p.IPs[0], 24)}
				st.LocalEndpoints = append(st.LocalEndpoints, ep)
				ns[p.ID] = ag.EP.Namespace(ep)
			}
		}
		ag.Set(t, st)
		d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
		must(t, err)
		must(t, d.Set(context.Background(), st))
	}
	listen(t, ns["open"], 8080)
	listen(t, ns["far"], 8080)
	ctx := context.Background()
	for _, c := range []struct{ from, to, ip string }{
		{"open", "far", "10.1.1.20"},
		{"far", "open", "10.1.1.10"},
		{"open", "far", "10.1.1.20"}, // again, with the first in conntrack
		{"far", "open", "10.1.1.10"},
	} {
		// The first connection waits for ARP across the tunnel: poll for
		// the event (a connection), not one try against a timer.
		took, err := testenv.Poll(30*time.Second, func() error {
			if connects(ns[c.from], c.ip, 8080) {
				return nil
			}
			return errors.New("no connection")
		})
		if err != nil {
			t.Errorf("%s -> %s (%s) TCP 8080: %v", c.from, c.to, c.ip, err)
			continue
		}
		t.Logf("%s -> %s (%s) TCP 8080: connected after %v", c.from, c.to, c.ip, took.Round(time.Millisecond))
		if _, recv, _ := nettest.Ping(ctx, ns[c.from], c.ip, 3, 200*time.Millisecond); recv == 0 {
			t.Errorf("%s -> %s (%s): no answer to ping", c.from, c.to, c.ip)
		}
	}
}
