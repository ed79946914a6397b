package network_test

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// BenchmarkVXLANvsVeth: TCP throughput between two endpoints of one
// network on two lab hosts (endpoint veth, bridge, VXLAN, underlay veth
// and back), against the same between the two hosts over the plain veth
// underlay. Each iteration measures both for a second, one stream each;
// the figures are each side's best round and the ratio VXLAN over veth.
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
	paths := []struct {
		name     string
		from, to string
		addr     string
	}{
		{"veth", lab.Hosts[0].NS, lab.Hosts[1].NS, lab.Hosts[1].VTEP.String()},
		{"vxlan", eps[0], eps[1], ports[1].IPs[0].String()},
	}
	for _, p := range paths {
		sink(b, p.to)
		throughput(b, p.from, p.addr, 200*time.Millisecond) // warm up, and the path works
	}
	best := make([]float64, len(paths))
	for range b.N {
		for i, p := range paths {
			if g := throughput(b, p.from, p.addr, time.Second); g > best[i] {
				best[i] = g
			}
		}
	}
	b.ReportMetric(best[0], "veth-Gbit/s")
	b.ReportMetric(best[1], "vxlan-Gbit/s")
	b.ReportMetric(best[1]/best[0], "vxlan/veth")
}

const sinkPort = "5201"

// sink accepts TCP connections in ns and discards what they send.
func sink(b *testing.B, ns string) {
	var ln net.Listener
	if err := netnsutil.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp4", ":"+sinkPort)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// throughput sends from ns to addr for d and returns Gbit/s.
func throughput(b *testing.B, ns, addr string, d time.Duration) float64 {
	var sent int64
	var took time.Duration
	err := netnsutil.Do(ns, func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(addr, sinkPort), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		start := time.Now()
		for time.Since(start) < d {
			n, err := c.Write(buf)
			sent += int64(n)
			if err != nil {
				return err
			}
		}
		took = time.Since(start)
		return nil
	})
	if err != nil {
		b.Fatalf("send from %s to %s: %v", ns, addr, err)
	}
	return float64(sent) * 8 / took.Seconds() / 1e9
}
