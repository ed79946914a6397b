package secgroup_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestLabPortSecurity sends real traffic between endpoints on nettest's
// lab (host namespaces, the real bridge or OVS, the real nft table):
//   - a port's second address is a member of its groups, sends through its
//     egress rules and receives only what its ingress rules allow (before,
//     only the first address was: the second could not send, and received
//     everything);
//   - an endpoint that forges its source address, or its MAC, is dropped;
//   - an allowed address pair lets it send from that address.
func TestLabPortSecurity(t *testing.T) {
	for _, drv := range nettest.Drivers {
		t.Run(drv, func(t *testing.T) { testPortSecurity(t, drv) })
	}
}

func testPortSecurity(t *testing.T, drv string) {
	lab := nettest.NewLabWith(t, 1, drv)
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	a1, a2, forged := netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr("10.1.1.20"), netip.MustParseAddr("10.1.1.99")
	ports := []network.Port{
		{ID: "a", IPs: []netip.Addr{a1, a2}, SecurityGroups: []string{"app"}},
		{ID: "srv", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.30")}, SecurityGroups: []string{"srv"}},
	}
	st := lab.HostState(h, []network.Network{n}, nil)
	for i := range ports {
		ports[i].NetworkID, ports[i].Host, ports[i].MAC = n.ID, h.Name, nettest.MAC(i+1)
		st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: ports[i].ID, IfName: "eth0", Addr: netip.PrefixFrom(ports[i].IPs[0], 24)})
	}
	st.Ports = ports
	st.SecurityGroups = []netspec.SecurityGroup{
		// app: sends anything, receives TCP 7070 from srv's group only.
		{ID: "app", Rules: []netspec.SecurityGroupRule{egressAll, tcp(7070, "srv")}},
		// srv: 8080 from app's members, 9090 from anyone, 7071 to nobody.
		{ID: "srv", Rules: []netspec.SecurityGroupRule{egressAll, tcp(8080, "app"),
			{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 9090, To: 9090}, RemoteCIDR: "0.0.0.0/0"}}},
	}
	ag.Set(t, st)
	ns := func(id string) string { return ag.EP.Namespace(network.Endpoint{PortID: id}) }
	ip(t, "-n", ns("a"), "addr", "add", a2.String()+"/24", "dev", "eth0")
	ip(t, "-n", ns("a"), "addr", "add", forged.String()+"/24", "dev", "eth0")
	for _, p := range []int{8080, 9090} {
		listen(t, ns("srv"), p)
	}
	for _, p := range []int{7070, 7071} {
		listen(t, ns("a"), p)
	}
	d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
	must(t, err)
	set := func() {
		t.Helper()
		if drv == "ovs" {
			ag.Set(t, st) // the groups are the integration bridge's flows
		}
		must(t, d.Set(context.Background(), st))
	}
	set()
	check := func(what, fromNS string, src netip.Addr, to string, port int, want bool) {
		t.Helper()
		if got := connected(want, func() bool { return connectsFrom(fromNS, src, to, port) }); got != want {
			t.Errorf("%s: %s -> %s:%d connected=%v, want %v", what, src, to, port, got, want)
		}
	}
	check("first address, member of app", ns("a"), a1, "10.1.1.30", 8080, true)
	check("second address, member of app", ns("a"), a2, "10.1.1.30", 8080, true)
	check("second address receives what app allows", ns("srv"), netip.MustParseAddr("10.1.1.30"), a2.String(), 7070, true)
	check("second address receives only what app allows", ns("srv"), netip.MustParseAddr("10.1.1.30"), a2.String(), 7071, false)
	check("first address likewise", ns("srv"), netip.MustParseAddr("10.1.1.30"), a1.String(), 7071, false)
	check("forged source address", ns("a"), forged, "10.1.1.30", 9090, false)

	// Forged MAC: the port's own address from another MAC is dropped.
	ip(t, "-n", ns("a"), "link", "set", "eth0", "address", "02:66:66:66:66:66")
	check("forged MAC", ns("a"), a1, "10.1.1.30", 9090, false)
	ip(t, "-n", ns("a"), "link", "set", "eth0", "address", ports[0].MAC.String())
	check("own MAC again", ns("a"), a1, "10.1.1.30", 9090, true)

	// An allowed address pair lets the port send from that address. It
	// changes both tables (the port's sources on its link, its group's
	// members) in one batch: the ruleset generation moves by one.
	st.Ports[0].AllowedAddressPairs = []network.AddressPair{{Prefix: netip.PrefixFrom(forged, 32)}}
	gen0 := generation(t, h.NS)
	set()
	if g := generation(t, h.NS); g != gen0+1 {
		t.Errorf("a change to both tables took %d batches, want 1", g-gen0)
	}
	for _, tbl := range []string{"bridge " + secgroup.DefaultL2Table, "inet " + secgroup.DefaultTable} {
		out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "table", strings.Fields(tbl)[0], strings.Fields(tbl)[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), forged.String()) {
			t.Errorf("table %s does not hold the pair %s after the batch: %v\n%s", tbl, forged, err, out)
		}
	}
	check("allowed address pair", ns("a"), forged, "10.1.1.30", 9090, true)
	// A pair counts as a member of the port's groups: srv's "8080 from
	// app's members" admits it (a CIDR pair overlapping the port's own
	// addresses too, merged into one interval of the set).
	check("allowed address pair is a member of app", ns("a"), forged, "10.1.1.30", 8080, true)
	st.Ports[0].AllowedAddressPairs = []network.AddressPair{{Prefix: netip.MustParsePrefix("10.1.1.96/28")}, {Prefix: netip.MustParsePrefix("10.1.1.0/27")}}
	set()
	check("allowed address pair, a CIDR", ns("a"), forged, "10.1.1.30", 9090, true)
	check("allowed address pair, a CIDR, is a member of app", ns("a"), forged, "10.1.1.30", 8080, true)
	st.Ports[0].AllowedAddressPairs = nil
	set()
	check("pair removed", ns("a"), forged, "10.1.1.30", 9090, false)
	check("pair removed from app's members", ns("a"), forged, "10.1.1.30", 8080, false)
	check("first address still a member", ns("a"), a1, "10.1.1.30", 8080, true)
}

// generation is the nft ruleset generation of namespace ns.
func generation(t *testing.T, ns string) uint32 {
	t.Helper()
	f, err := os.Open(netnsutil.Path(ns))
	must(t, err)
	defer f.Close()
	c, err := nftsync.Open(int(f.Fd()))
	must(t, err)
	g, err := nftsync.Generation(c)
	must(t, err)
	return g
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// connectsFrom dials ip:port from namespace ns with source address src.
func connectsFrom(ns string, src netip.Addr, ip string, port int) bool {
	err := netnsutil.Do(ns, func() error {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp4", net.JoinHostPort(ip, itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}
