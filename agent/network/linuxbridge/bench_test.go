package linuxbridge_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
)

// BenchmarkSetConverge200Networks2000Ports measures converging a clean host
// to 200 networks and 2,000 ports (three remote hosts; 1,500 remote ports
// become FDB and proxy-neighbour entries) and re-converging the same state
// with a fresh driver, as after an agent restart. Each iteration uses a new
// host namespace; run with -benchtime=3x or so.
func BenchmarkSetConverge200Networks2000Ports(b *testing.B) {
	nettest.RequireRoot(b)
	var cold, warm time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		lab := nettest.NewLab(b, 1)
		h := lab.Hosts[0]
		nets, ports := nettest.Scale(200, 2000, []string{"h1", "h2", "h3", "h4"})
		st := lab.HostState(h, nets, ports)
		st.RemoteVTEPs = map[string]netip.Addr{
			"h2": netip.MustParseAddr("172.30.0.2"), "h3": netip.MustParseAddr("172.30.0.3"), "h4": netip.MustParseAddr("172.30.0.4"),
		}
		b.StartTimer()
		t0 := time.Now()
		d := newDriver(b, h)
		if err := d.Set(context.Background(), st); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		fresh := newDriver(b, h)
		if err := fresh.Set(context.Background(), st); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if fresh.Changes() != 0 {
			b.Fatalf("re-converge made %d changes", fresh.Changes())
		}
		b.StopTimer()
		cold, warm, n = cold+t1.Sub(t0), warm+t2.Sub(t1), n+1
		d.Close()
		fresh.Close()
		nettest.RemoveNamespaces(b, lab.Prefix)
		b.StartTimer()
	}
	coldMS := float64(cold.Microseconds()) / 1000 / float64(n)
	warmMS := float64(warm.Microseconds()) / 1000 / float64(n)
	b.ReportMetric(coldMS, "ms/converge")
	b.ReportMetric(warmMS, "ms/restart-reconverge")
	b.ReportMetric(coldMS/warmMS, "cold/restart")
}
