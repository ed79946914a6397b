package network_test

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"golang.org/x/sys/unix"
)

// BenchmarkVXLANvsVeth: TCP throughput between two endpoints of one
// network on two lab hosts (endpoint veth, bridge, VXLAN, underlay veth
// and back), against the same between the two hosts over the plain veth
// underlay, one stream each. The two are measured in pairs, back to back,
// the order alternating, so that the load of a shared machine weighs on
// both alike; each pair gives a ratio, and the figures are the median
// ratio (vxlan/veth), the lowest and highest, and the median throughputs.
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
	const pairs = 3 // per iteration
	var ratios, cpuRatios, veth, vxlan []float64
	for i := range b.N * pairs {
		var g, eff [2]float64
		for k := range 2 {
			j := (i + k) % 2 // veth first in even pairs, vxlan first in odd
			cpu0 := processCPU()
			g[j] = throughput(b, paths[j].from, paths[j].addr, time.Second)
			// Gbit per CPU-second this process spent (sender, receiver
			// and the kernel's work done in their context): what the
			// path costs, whatever share of the CPUs the round got.
			eff[j] = g[j] / (processCPU() - cpu0).Seconds()
		}
		veth, vxlan = append(veth, g[0]), append(vxlan, g[1])
		ratios, cpuRatios = append(ratios, g[1]/g[0]), append(cpuRatios, eff[1]/eff[0])
	}
	b.ReportMetric(median(veth), "veth-Gbit/s")
	b.ReportMetric(median(vxlan), "vxlan-Gbit/s")
	b.ReportMetric(median(ratios), "vxlan/veth")
	b.ReportMetric(slices.Min(ratios), "vxlan/veth-min")
	b.ReportMetric(slices.Max(ratios), "vxlan/veth-max")
	b.ReportMetric(median(cpuRatios), "vxlan/veth-per-cpu")
	b.ReportMetric(slices.Min(cpuRatios), "vxlan/veth-per-cpu-min")
	b.ReportMetric(slices.Max(cpuRatios), "vxlan/veth-per-cpu-max")
	b.ReportMetric(float64(len(ratios)), "pairs")
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
