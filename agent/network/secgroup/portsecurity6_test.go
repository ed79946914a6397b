package secgroup_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestLabPortSecurityIPv6AndARP sends real traffic between endpoints on
// nettest's lab (both L2 drivers, the real kernel tables):
//   - a filtered port's IPv6 goes through its groups' rules (it was all
//     dropped): a rule without a remote end, one naming a group (the
//     port's IPv6 address is a member) and one with an IPv6 remote CIDR
//     holding it admit it, a port without a rule, a CIDR not holding it
//     or a rule for IPv4 only (ethertype) do not, neighbour discovery
//     works;
//   - a forged IPv6 source is dropped, an allowed pair lets it through;
//   - an ARP reply for an address not the port's is dropped (the peer
//     never resolves it), until that address is an allowed pair; a
//     neighbour advertisement likewise, by its target address;
//   - a router advertisement from a filtered port never reaches its
//     neighbour (one from a port without port security does: the sender
//     works).
func TestLabPortSecurityIPv6AndARP(t *testing.T) {
	for _, drv := range nettest.Drivers {
		t.Run(drv, func(t *testing.T) { testPortSecurity6(t, drv) })
	}
}

func testPortSecurity6(t *testing.T, drv string) {
	lab := nettest.NewLabWith(t, 1, drv)
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)
	n := network.Network{ID: "net-6", VNI: 5002, Subnets: []network.Subnet{
		{ID: "s4", CIDR: netip.MustParsePrefix("10.1.2.0/24")}, {ID: "s6", CIDR: netip.MustParsePrefix("fd00:6::/64")}}}
	a4, a6 := netip.MustParseAddr("10.1.2.10"), netip.MustParseAddr("fd00:6::10")
	s4, s6 := netip.MustParseAddr("10.1.2.30"), netip.MustParseAddr("fd00:6::30")
	forged4, forged6 := netip.MustParseAddr("10.1.2.99"), netip.MustParseAddr("fd00:6::99")
	ports := []network.Port{
		{ID: "a", IPs: []netip.Addr{a4, a6}, SecurityGroups: []string{"app"}},
		{ID: "srv", IPs: []netip.Addr{s4, s6}, SecurityGroups: []string{"srv"}},
		{ID: "open", IPs: []netip.Addr{netip.MustParseAddr("10.1.2.50")}}, // no port security
	}
	st := lab.HostState(h, []network.Network{n}, nil)
	for i := range ports {
		ports[i].NetworkID, ports[i].Host, ports[i].MAC = n.ID, h.Name, nettest.MAC(i+1)
		st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: ports[i].ID, IfName: "eth0", Addr: netip.PrefixFrom(ports[i].IPs[0], 24)})
	}
	st.Ports = ports
	st.SecurityGroups = []netspec.SecurityGroup{
		{ID: "app", Rules: []netspec.SecurityGroupRule{egressAll, tcp(7070, "srv")}},
		// srv: 8080 from app's members, 9091 from anyone (no remote end),
		// 9092 from nobody.
		// IPv6 remote CIDRs: 9093 from a's prefix, 9094 from another
		// one; 9095 from anyone but only over IPv4 (ethertype).
		{ID: "srv", Rules: []netspec.SecurityGroupRule{egressAll, tcp(8080, "app"), tcp(9091, ""),
			cidr(9093, "fd00:6::/64", ""), cidr(9094, "fd00:7::/64", ""), cidr(9095, "", netspec.EtherIPv4)}},
	}
	ag.Set(t, st)
	ns := func(id string) string { return ag.EP.Namespace(network.Endpoint{PortID: id}) }
	for _, c := range []struct {
		id   string
		adds []netip.Addr
	}{{"a", []netip.Addr{a6, forged6}}, {"srv", []netip.Addr{s6}}} {
		for _, a := range c.adds {
			ip(t, "-n", ns(c.id), "-6", "addr", "add", a.String()+"/64", "dev", "eth0", "nodad")
		}
	}
	ip(t, "-n", ns("a"), "addr", "add", forged4.String()+"/24", "dev", "eth0")
	for _, p := range []int{8080, 9091, 9092, 9093, 9094, 9095} {
		listen6(t, ns("srv"), p)
	}
	listen6(t, ns("a"), 7070)
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
	check := func(what, fromNS string, src netip.Addr, to netip.Addr, port int, want bool) {
		t.Helper()
		if got := dialFrom(fromNS, src, to, port); got != want {
			t.Errorf("%s: %s -> [%s]:%d connected=%v, want %v", what, src, to, port, got, want)
		}
	}
	check("IPv6, rule without remote end", ns("a"), a6, s6, 9091, true)
	check("IPv6, rule naming the sender's group", ns("a"), a6, s6, 8080, true)
	check("IPv6, no rule", ns("a"), a6, s6, 9092, false)
	check("IPv6 ingress by the receiver's group", ns("srv"), s6, a6, 7070, true)
	check("IPv4 still filtered", ns("a"), a4, s4, 9092, false)
	check("forged IPv6 source", ns("a"), forged6, s6, 9091, false)
	check("IPv6 remote CIDR holding the sender", ns("a"), a6, s6, 9093, true)
	check("IPv6 remote CIDR not holding the sender", ns("a"), a6, s6, 9094, false)
	check("IPv6 remote CIDR matches no IPv4", ns("a"), a4, s4, 9093, false)
	check("ethertype IPv4 rule, over IPv6", ns("a"), a6, s6, 9095, false)
	check("ethertype IPv4 rule, over IPv4", ns("a"), a4, s4, 9095, true)

	// ARP: a answers for forged4 (its kernel has it), the reply is not
	// the port's to send, so srv never resolves it.
	check("ARP reply for an address not the port's", ns("srv"), s4, forged4, 7070, false)
	if mac := neighbour(t, ns("srv"), forged4); mac != "" {
		t.Errorf("srv resolved %s to %s: a forged ARP reply went through", forged4, mac)
	}
	check("legit ARP", ns("srv"), s4, a4, 7070, true)

	// Router advertisements: from a port without port security one
	// reaches srv (the sender and receiver work); from a filtered port
	// none does.
	sendRA(t, ns("a"))
	time.Sleep(500 * time.Millisecond)
	if r := defaultRoute6(t, ns("srv")); r != "" {
		t.Errorf("a filtered port's router advertisement reached srv: %s", r)
	}
	sendRA(t, ns("open"))
	testenv.WaitTrue(t, 10*time.Second, "srv takes a default route from the open port's advertisement", func() bool {
		return defaultRoute6(t, ns("srv")) != ""
	})

	// Neighbour advertisements, IPv6's ARP replies: a sends two from its
	// own link-local address (a source it may use), one for a6 and one
	// for forged6. srv takes untracked advertisements (as a router does),
	// so each that arrives makes a neighbour entry: a6's does, forged6's
	// was dropped for its target.
	ip(t, "netns", "exec", ns("srv"), "sysctl", "-qw", "net.ipv6.conf.eth0.forwarding=1", "net.ipv6.conf.eth0.accept_untracked_na=1")
	aMAC := st.Ports[0].MAC.String()
	for _, x := range []netip.Addr{a6, forged6} {
		ip(t, "-n", ns("srv"), "neigh", "flush", "to", x.String())
	}
	sendNA(t, ns("a"), forged6)
	sendNA(t, ns("a"), a6)
	testenv.WaitTrue(t, 10*time.Second, "srv learns a6 from a's advertisement", func() bool {
		return neighbour(t, ns("srv"), a6) == aMAC
	})
	if mac := neighbour(t, ns("srv"), forged6); mac != "" {
		t.Errorf("srv took a neighbour advertisement for %s (not a's) from %s", forged6, mac)
	}

	// Allowed pairs open exactly those sources.
	st.Ports[0].AllowedAddressPairs = []network.AddressPair{{Prefix: netip.PrefixFrom(forged6, 128)}, {Prefix: netip.PrefixFrom(forged4, 32)}}
	set()
	ip(t, "-n", ns("srv"), "neigh", "flush", "to", forged6.String())
	testenv.WaitTrue(t, 10*time.Second, "srv takes a's advertisement for its allowed pair "+forged6.String(), func() bool {
		sendNA(t, ns("a"), forged6)
		return neighbour(t, ns("srv"), forged6) == aMAC
	})
	check("IPv6 allowed pair", ns("a"), forged6, s6, 9091, true)
	check("IPv6 allowed pair is a member of app", ns("a"), forged6, s6, 8080, true)
	// srv's neighbour entry for forged4 failed above; a fresh one
	// resolves through a's (now allowed) reply.
	ip(t, "-n", ns("srv"), "neigh", "flush", "to", forged4.String())
	testenv.WaitTrue(t, 10*time.Second, "srv reaches a's allowed pair "+forged4.String()+" (ARP through)", func() bool {
		return dialFrom(ns("srv"), s4, forged4, 7070)
	})
	st.Ports[0].AllowedAddressPairs = nil
	set()
	check("IPv6 pair removed", ns("a"), forged6, s6, 9091, false)
}

// cidr is an ingress TCP rule to port from remote (IPv4 or IPv6) for
// ethertype.
func cidr(port int, remote, ethertype string) netspec.SecurityGroupRule {
	r := tcp(port, "")
	r.RemoteCIDR, r.Ethertype = remote, ethertype
	return r
}

func listen6(t *testing.T, ns string, port int) {
	var ln net.Listener
	must(t, netnsutil.Do(ns, func() (err error) {
		ln, err = net.ListenTCP("tcp", &net.TCPAddr{Port: port}) // both families
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

// dialFrom dials to:port from namespace ns with source address src.
func dialFrom(ns string, src, to netip.Addr, port int) bool {
	err := netnsutil.Do(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", net.JoinHostPort(to.String(), itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}

// neighbour is the MAC ns's neighbour table holds for a ("" if none).
func neighbour(t *testing.T, ns string, a netip.Addr) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "neigh", "show", a.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip neigh: %v: %s", err, out)
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// sendNA sends one unsolicited neighbour advertisement (override) for
// target to all nodes from eth0's link-local address in ns.
func sendNA(t *testing.T, ns string, target netip.Addr) {
	t.Helper()
	must(t, netnsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return err
		}
		// Type 136, code 0, checksum (the kernel's), the override flag,
		// the target, and the target link-layer address option.
		na := []byte{136, 0, 0, 0, 0x20, 0, 0, 0}
		na = append(append(na, target.AsSlice()...), 2, 1)
		na = append(na, ifi.HardwareAddr...)
		to := &syscall.SockaddrInet6{ZoneId: uint32(ifi.Index), Addr: [16]byte{0xff, 0x02, 15: 1}}
		if err := syscall.Sendto(fd, na, 0, to); err != nil {
			return fmt.Errorf("send neighbour advertisement: %w", err)
		}
		return nil
	}))
}

func defaultRoute6(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-6", "route", "show", "default").CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// sendRA sends one router advertisement (router lifetime 1800 s) to all
// nodes from eth0's link-local address in ns, once that address has done
// duplicate address detection.
func sendRA(t *testing.T, ns string) {
	t.Helper()
	testenv.WaitTrue(t, 10*time.Second, "link-local address of eth0 in "+ns, func() bool {
		out, _ := exec.Command("ip", "-n", ns, "-6", "addr", "show", "dev", "eth0", "scope", "link").CombinedOutput()
		return strings.Contains(string(out), "fe80::") && !strings.Contains(string(out), "tentative")
	})
	must(t, netnsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_ICMPV6)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_HOPS, 255); err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MULTICAST_IF, ifi.Index); err != nil {
			return err
		}
		// Type 134, code 0, checksum (the kernel's), hop limit 64, no
		// flags, lifetime 1800 s, reachable and retransmit times 0, and
		// the source link-layer address option.
		ra := []byte{134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}
		ra = append(ra, ifi.HardwareAddr...)
		to := &syscall.SockaddrInet6{ZoneId: uint32(ifi.Index), Addr: [16]byte{0xff, 0x02, 15: 1}}
		if err := syscall.Sendto(fd, ra, 0, to); err != nil {
			return fmt.Errorf("send router advertisement: %w", err)
		}
		return nil
	}))
}
