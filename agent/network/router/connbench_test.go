package router_test

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// connLab is a client and a server namespace, each behind its own leg of
// a router namespace whose firewall guards the server's leg.
type connLab struct {
	client, rtr string
	server      netip.AddrPort // accepts and closes
	sink        netip.AddrPort // reads and discards
	nsFile      *os.File
}

func newConnLab(b *testing.B) *connLab {
	nettest.RequireRoot(b)
	p := nettest.Prefix(b) + "t19"
	l := &connLab{client: p + "c", rtr: p + "r", server: netip.MustParseAddrPort("10.77.2.2:8080"),
		sink: netip.MustParseAddrPort("10.77.2.2:8081")}
	for _, ns := range []string{l.client, l.rtr, p + "s"} {
		if err := netnsutil.Create(ns); err != nil {
			b.Fatal(err)
		}
	}
	h, err := netnsutil.Handle(l.rtr)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	legs := []struct{ id, peerNS, rtrAddr, peerAddr, gw string }{
		{"if-cli", l.client, "10.77.1.1/24", "10.77.1.2/24", "10.77.1.1"},
		{"if-srv", p + "s", "10.77.2.1/24", "10.77.2.2/24", "10.77.2.1"},
	}
	for _, leg := range legs {
		if err := vethLeg(h, router.InternalLeg(leg.id), leg.rtrAddr, leg.peerNS, leg.peerAddr, leg.gw); err != nil {
			b.Fatalf("leg %s: %v", leg.id, err)
		}
	}
	if err := netnsutil.Do(l.rtr, func() error { return writeFile("/proc/sys/net/ipv4/ip_forward", "1") }); err != nil {
		b.Fatal(err)
	}
	var ln net.Listener
	if err := netnsutil.Do(p+"s", func() (err error) {
		ln, err = net.Listen("tcp4", ":8080")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	nettest.Sink(b, p+"s", strconv.Itoa(int(l.sink.Port())))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if l.nsFile, err = os.Open(netnsutil.Path(l.rtr)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.nsFile.Close() })
	return l
}

// vethLeg makes a veth pair from the router namespace (h) into peerNS,
// addresses both ends and routes the peer's default through the router.
func vethLeg(h *netlink.Handle, name, addr, peerNS, peerAddr, gw string) error {
	f, err := os.Open(netnsutil.Path(peerNS))
	if err != nil {
		return err
	}
	defer f.Close()
	const peer = "eth0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer, PeerNamespace: netlink.NsFd(int(f.Fd()))}); err != nil {
		return err
	}
	if err := upWithAddr(h, name, addr); err != nil {
		return err
	}
	ph, err := netnsutil.Handle(peerNS)
	if err != nil {
		return err
	}
	defer ph.Close()
	if err := upWithAddr(ph, peer, peerAddr); err != nil {
		return err
	}
	if lo, err := ph.LinkByName("lo"); err == nil {
		_ = ph.LinkSetUp(lo)
	}
	return ph.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: net.ParseIP(gw)})
}

func upWithAddr(h *netlink.Handle, name, cidr string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, a); err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

// table is the router's ruleset with an ingress policy on the server's
// leg: the given rules, then the ones that allow the client, last.
func (l *connLab) table(rules []netspec.FirewallRule) nftsync.Table {
	allow := netspec.FirewallRule{Protocol: netspec.ProtoTCP, Source: "10.77.1.0/24",
		DstPorts: &netspec.PortRange{From: 8080, To: 8081}, Action: netspec.ActionAllow}
	r := netspec.Router{ID: "rbench", Interfaces: []netspec.Interface{{ID: "if-cli"}, {ID: "if-srv"}},
		Firewall: &netspec.FirewallGroup{ID: "fw", Ports: []string{"if-srv"},
			Ingress: &netspec.FirewallPolicy{ID: "in", Rules: append(append([]netspec.FirewallRule(nil), rules...), allow)}}}
	return router.Ruleset(r)
}

// connRate opens and resets n connections one after the other from the
// client namespace and returns connections per second.
func (l *connLab) connRate(b *testing.B, n int) float64 {
	var rate float64
	err := netnsutil.Do(l.client, func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		start := time.Now()
		for range n {
			c, err := d.Dial("tcp4", l.server.String())
			if err != nil {
				return err
			}
			// A reset, not a close: no TIME_WAIT piles up.
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		rate = float64(n) / time.Since(start).Seconds()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return rate
}

// BenchmarkFirewallNewConns: new TCP connections per second through a
// router whose firewall on the server's leg holds 10 rules, and through
// another whose firewall holds 10,000 (STRATA_BENCH_FW_RULES), the
// allowing rule last in both. Each iteration measures both in turn; the
// figures are each side's best round, and the ratio 10,000 over 10.
func BenchmarkFirewallNewConns(b *testing.B) {
	big := 10000
	if v, err := strconv.Atoi(os.Getenv("STRATA_BENCH_FW_RULES")); err == nil {
		big = v
	}
	var labs []*connLab
	for _, n := range []int{10, big} {
		l := newConnLab(b)
		c, err := nftsync.Open(int(l.nsFile.Fd()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := nftsync.NewEngine().Sync(c, l.table(benchPolicy(n))); err != nil {
			b.Fatal(err)
		}
		l.connRate(b, 50) // warm up
		labs = append(labs, l)
	}
	best := make([]float64, 2)
	const conns = 500
	b.ResetTimer()
	for range b.N {
		for i, l := range labs {
			if r := l.connRate(b, conns); r > best[i] {
				best[i] = r
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(best[0], "conns/s-10-rules")
	b.ReportMetric(best[1], "conns/s-10k-rules")
	b.ReportMetric(best[1]/best[0], "10k/10-rules")
}

// BenchmarkFirewallThroughput: TCP throughput of one stream through a
// router whose firewall on the server's leg holds 10 rules, and through
// another whose firewall holds 10,000 (STRATA_BENCH_FW_RULES), the
// allowing rule last in both, in back-to-back pairs (nettest.StreamPairs):
// the median ratio 10,000 over 10, its spread, and the same per
// CPU-second.
func BenchmarkFirewallThroughput(b *testing.B) {
	big := 10000
	if v, err := strconv.Atoi(os.Getenv("STRATA_BENCH_FW_RULES")); err == nil {
		big = v
	}
	var paths []nettest.Path
	for _, n := range []int{10, big} {
		l := newConnLab(b)
		c, err := nftsync.Open(int(l.nsFile.Fd()))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := nftsync.NewEngine().Sync(c, l.table(benchPolicy(n))); err != nil {
			b.Fatal(err)
		}
		p := nettest.Path{NS: l.client, Addr: l.sink.String()}
		nettest.Stream(b, p.NS, p.Addr, 200*time.Millisecond) // warm up, and the firewall lets it through
		paths = append(paths, p)
	}
	b.ResetTimer()
	nettest.StreamPairs(b, 3*b.N, paths[0], paths[1], time.Second).Report(b, "10-rules", "10k-rules")
}
