package ovs_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/ovs"
)

// benchHost is one OVS host (userspace datapath) whose plan has nNets
// networks and nPorts ports, all on three remote hosts: every port is a
// unicast flow and an ARP answer on this host.
func benchHost(b *testing.B, nNets, nPorts int) (*nettest.Lab, network.HostState) {
	lab := nettest.NewLabWith(b, 1, "ovs")
	h := lab.Hosts[0]
	nets, ports := nettest.Scale(nNets, nPorts, []string{"h2", "h3", "h4"})
	st := lab.HostState(h, nets, ports)
	st.RemoteVTEPs = map[string]netip.Addr{
		"h2": netip.MustParseAddr("172.30.0.2"), "h3": netip.MustParseAddr("172.30.0.3"), "h4": netip.MustParseAddr("172.30.0.4"),
	}
	return lab, st
}

func newBenchDriver(b *testing.B, h *nettest.Host) *ovs.Driver {
	d, err := ovs.New(context.Background(), ovs.Config{NetNS: h.NS, DB: h.OVS.DB(), RunDir: h.OVS.Dir, Datapath: h.Datapath,
		Logger: nettest.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// tearDown stops a bench host's Open vSwitch and removes its namespaces
// before the next iteration (cleanup would only run at the end).
func tearDown(b *testing.B, lab *nettest.Lab) {
	for _, h := range lab.Hosts {
		h.OVS.Stop(b)
	}
	nettest.RemoveNamespaces(b, lab.Prefix)
}

// BenchmarkFlows1000Ports: the driver programs the flows of 100 networks
// and 1,000 remote ports (about 2,300 flows) into a clean integration
// bridge as one OpenFlow bundle (ovs-ofctl --bundle replace-flows), and
// the same flows are added one ovs-ofctl call per flow to a scratch
// bridge of the same switch (how an agent without bundles would do it; a
// sample of 50): flows per second of each, and their ratio.
func BenchmarkFlows1000Ports(b *testing.B) {
	nettest.RequireRoot(b)
	var bundleRate, oneByOneRate float64
	var total int
	n := 0
	for b.Loop() {
		b.StopTimer()
		lab, st := benchHost(b, 100, 1000)
		h := lab.Hosts[0]
		d := newBenchDriver(b, h)
		b.StartTimer()
		if err := d.Set(context.Background(), st); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		flows, took := d.LastFlowApply()
		bundleRate += float64(flows) / took.Seconds()
		total += flows
		oneByOneRate += addFlowsOneByOne(b, h, d, 50)
		n++
		d.Close()
		tearDown(b, lab)
		b.StartTimer()
	}
	bundle, one := bundleRate/float64(n), oneByOneRate/float64(n)
	b.ReportMetric(float64(total)/float64(n), "flows")
	b.ReportMetric(bundle, "flows/s")
	b.ReportMetric(one, "flows/s-one-by-one")
	b.ReportMetric(bundle/one, "bundle/one-by-one")
}

// addFlowsOneByOne adds the first limit flows the driver installed, one
// ovs-ofctl add-flow each, to a scratch bridge, and returns flows/s.
func addFlowsOneByOne(b *testing.B, h *nettest.Host, d *ovs.Driver, limit int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dump, err := d.DumpFlows(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const scratch = "t15scratch"
	if _, err := h.OVS.Vsctl(ctx, "add-br", scratch, "--", "set", "bridge", scratch,
		"datapath_type=netdev", "fail_mode=secure", "protocols=OpenFlow13"); err != nil {
		b.Fatal(err)
	}
	var flows []string
	for _, l := range strings.Split(dump, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "cookie=") && len(flows) < limit {
			flows = append(flows, l)
		}
	}
	start := time.Now()
	for _, f := range flows {
		if _, err := h.OVS.Ofctl(ctx, "add-flow", h.OVS.Mgmt(scratch), f); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(flows)) / time.Since(start).Seconds()
}

// BenchmarkRestartConverge2000Ports: a clean host converges to 200
// networks and 2,000 remote ports (the integration bridge, its tunnel
// ports, about 4,600 flows; no Linux bridge or veth since ports plug into
// the integration bridge); then a fresh driver, as after an agent
// restart, converges the same plan. The restart must change nothing (no
// link, no OVSDB row, the flow dump byte for byte the same); the figure
// is the clean start's time over the restart's (target: at least 10).
func BenchmarkRestartConverge2000Ports(b *testing.B) {
	nettest.RequireRoot(b)
	var cold, warm time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		lab, st := benchHost(b, 200, 2000)
		h := lab.Hosts[0]
		ctx := context.Background()
		b.StartTimer()
		t0 := time.Now()
		d := newBenchDriver(b, h)
		if err := d.Set(ctx, st); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		b.StopTimer()
		before, err := d.DumpFlows(ctx)
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
		b.StartTimer()
		t2 := time.Now()
		fresh := newBenchDriver(b, h)
		if err := fresh.Set(ctx, st); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		b.StopTimer()
		if c := fresh.Changes(); c != 0 {
			b.Fatalf("the restart made %d changes, want 0", c)
		}
		after, err := fresh.DumpFlows(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if after != before {
			b.Fatal("the restart changed the flows")
		}
		cold, warm, n = cold+t1.Sub(t0), warm+t3.Sub(t2), n+1
		fresh.Close()
		tearDown(b, lab)
		b.StartTimer()
	}
	coldMS := float64(cold.Microseconds()) / 1000 / float64(n)
	warmMS := float64(warm.Microseconds()) / 1000 / float64(n)
	b.ReportMetric(coldMS, "ms/clean-start")
	b.ReportMetric(warmMS, "ms/restart")
	b.ReportMetric(coldMS/warmMS, "clean/restart")
}
