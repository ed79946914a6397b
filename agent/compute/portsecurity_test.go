package compute_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// The guest's port in TestLabPortSecurityGuest: two IPv4 addresses and
// one IPv6 address; what it forges; the endpoint it sends to.
const (
	psFirst    = "10.77.0.10"
	psSecond   = "10.77.0.11"
	psV6       = "fd77::10"
	psForged   = "10.77.0.99"
	psForgedMC = "02:66:66:66:66:66"
	psEP       = "10.77.0.20"
	psEP6      = "fd77::20"
	psCmdPort  = 9999 // the guest's command server
	// psARPWitness is an endpoint on the guest's host.
	psARPWitness = "10.77.0.30"
)

// TestLabPortSecurityGuest boots one TCG guest whose tap the compute
// driver plugs into a Linux bridge filtered by the real security group
// tables, with an endpoint on h2 that counts, at its NIC's ingress hook,
// every frame by its source. Driven through a command server in the guest
// (allowed by its group), the guest sends the same probe in each phase:
// from a forged source address (ICMP, and an ARP announcement), from a
// forged MAC, from its second address, from its IPv6 address, and last
// from its first address, whose arrival shows the rest had their time.
//   - port security on: the forged ones never arrive, the others do; the
//     second and the IPv6 address answer a port its group allows and not
//     one it does not;
//   - allowed address pairs for the forged address and for the forged MAC:
//     both arrive (an allowed pair passes);
//   - port security off (control): the forged address and its ARP arrive,
//     so the guest really sends them and the filter was what dropped
//     them; the disallowed port answers, so a listener was there. A
//     forged MAC stays dropped even then: the group table admits a port
//     without port security by the MAC its plan gives it.
func TestLabPortSecurityGuest(t *testing.T) {
	start := time.Now()
	e := requireEnv(t)
	d := newDriver(t, 5*time.Second)
	n := seq.Add(1)
	vni := uint32(7000 + n)
	mac, epMAC := nettest.MAC(int(n)<<8|1), nettest.MAC(int(n)<<8|3)
	addr := netip.MustParseAddr
	nw := network.Network{ID: fmt.Sprintf("net%d", n), VNI: vni, Subnets: []network.Subnet{
		{ID: "s", CIDR: netip.MustParsePrefix("10.77.0.0/24"), Gateway: addr("10.77.0.1"), DHCP: true},
		{ID: "s6", CIDR: netip.MustParsePrefix("fd77::/64")},
	}}
	guest := network.Port{ID: fmt.Sprintf("vm%d", n), NetworkID: nw.ID, Host: "h1", MAC: mac, HostName: "guest",
		IPs: []netip.Addr{addr(psFirst), addr(psSecond), addr(psV6)}, SecurityGroups: []string{"g"}}
	ports := []network.Port{
		{ID: fmt.Sprintf("dhcp%d", n), NetworkID: nw.ID, Host: "h1", Owner: network.OwnerDHCP,
			MAC: nettest.MAC(int(n)<<8 | 2), IPs: []netip.Addr{addr("10.77.0.2")}},
		guest,
		{ID: fmt.Sprintf("ep%d", n), NetworkID: nw.ID, Host: "h2", MAC: epMAC, IPs: []netip.Addr{addr(psEP), addr(psEP6)}},
		{ID: fmt.Sprintf("arp%d", n), NetworkID: nw.ID, Host: "h1", MAC: nettest.MAC(int(n)<<8 | 4), IPs: []netip.Addr{addr(psARPWitness)}},
	}
	groups := []netspec.SecurityGroup{{ID: "g", Rules: []netspec.SecurityGroupRule{
		{Direction: netspec.Egress},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: psCmdPort, To: psCmdPort}, RemoteCIDR: psEP + "/32"},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 7070, To: 7070}},
	}}}
	nets := []network.Network{nw}
	h1 := nettest.NewAgent(t, e.hostA)
	st1 := e.lab.HostState(e.hostA, nets, ports)
	st1.SecurityGroups = groups
	sg, err := secgroup.New(secgroup.Config{NetNS: e.hostA.NS, Logger: nettest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// The tables go with the test: the package's other tests share h1.
	t.Cleanup(func() {
		sg.Close()
		for _, tbl := range [][]string{{"inet", secgroup.DefaultTable}, {"bridge", secgroup.DefaultL2Table}} {
			exec.Command("ip", "netns", "exec", e.hostA.NS, "nft", "delete", "table", tbl[0], tbl[1]).Run()
		}
	})
	// The filter first, then the bridge and DHCP, then the tap: the
	// guest's port is never plugged unfiltered.
	setPorts := func(p network.Port) {
		t.Helper()
		ports[1] = p
		st1.Ports = ports
		if err := sg.Set(context.Background(), h1.Bind(st1)); err != nil {
			t.Fatal(err)
		}
	}
	setPorts(guest)
	// ARP never crosses to h2 (the VXLAN device answers it from the
	// plan's neighbours and sends none): a second endpoint, on h1's
	// bridge, sees the guest's ARP.
	st1.LocalEndpoints = []network.Endpoint{{PortID: ports[3].ID, IfName: "eth0", MAC: ports[3].MAC, Addr: netip.MustParsePrefix(psARPWitness + "/24")}}
	h1.Set(t, st1)
	t.Cleanup(func() { h1.Set(t, e.lab.HostState(e.hostA, nil, nil)) })
	h2 := nettest.NewAgent(t, e.hostB)
	st2 := e.lab.HostState(e.hostB, nets, ports)
	st2.LocalEndpoints = []network.Endpoint{{PortID: ports[2].ID, IfName: "eth0", MAC: epMAC, Addr: netip.MustParsePrefix(psEP + "/24")}}
	h2.Set(t, st2)
	t.Cleanup(func() { h2.Set(t, e.lab.HostState(e.hostB, nil, nil)) })
	epNS := e.hostB.Prefix + network.EndpointNSPart + ports[2].ID
	run := func(ns string, args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
		}
		return string(out)
	}
	run(epNS, "ip", "-6", "addr", "add", psEP6+"/64", "dev", "eth0", "nodad")
	arpNS := e.hostA.Prefix + network.EndpointNSPart + ports[3].ID
	// Counted at the endpoints' NIC ingress, before anything in their
	// namespaces could drop a frame: the guest's pings by source, and (on
	// h1) its ARP from the forged address.
	epCount := installCounters(t, epNS, fmt.Sprintf(`
		ether saddr %[1]s ip saddr %[2]s icmp type echo-request counter comment "legit"
		ether saddr %[1]s ip saddr %[3]s icmp type echo-request counter comment "second"
		ip6 saddr %[4]s icmpv6 type echo-request counter comment "v6"
		ip saddr %[5]s counter comment "forged-ip"
		ether saddr %[6]s counter comment "forged-mac"`, mac, psFirst, psSecond, psV6, psForged, psForgedMC))
	arpCount := installCounters(t, arpNS, `
		ether type arp arp saddr ip `+psForged+` counter comment "forged-arp"`)
	counters := func() map[string]int {
		c := epCount()
		maps.Copy(c, arpCount())
		return c
	}

	// The guest: both IPv4 addresses (DHCP gives one of them), its IPv6
	// address, listeners on 7070 (its group allows it) and 7071 (not),
	// a command server, and the endpoint as a permanent neighbour, so a
	// send from a forged address never waits on an ARP that the filter
	// would drop (its sender would be the forged address).
	boot := []string{
		"ip addr add " + psFirst + "/24 dev eth0",
		"ip addr add " + psSecond + "/24 dev eth0",
		// (busybox ip has no nodad)
		"echo 0 >/proc/sys/net/ipv6/conf/eth0/accept_dad; ip -6 addr add " + psV6 + "/64 dev eth0",
		"busybox arp -i eth0 -s " + psEP + " " + epMAC.String(),
		"ip neigh show; ip -6 addr show dev eth0",
		"busybox nc -ll -p 7070 -e /bin/echo port-7070 >/dev/null 2>&1 &",
		"busybox nc -ll -p 7071 -e /bin/echo port-7071 >/dev/null 2>&1 &",
		fmt.Sprintf("busybox nc -ll -p %d -e /bin/sh >/dev/null 2>&1 &", psCmdPort),
	}
	in := instance("portsec", computespec.Port{ID: guest.ID, NetworkID: nw.ID, VNI: vni, MAC: mac, Bridge: network.BridgeName(vni)})
	for _, c := range boot {
		in.Spec.UserData = append(in.Spec.UserData, "strata-run: "+c+"\n"...)
	}
	if err := d.Set(context.Background(), []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	console := func() string { return d.status("portsec").ConsoleLog }
	var booted time.Duration
	_, err = testenv.Poll(180*time.Second, func() error {
		booted = time.Since(start)
		if !strings.Contains(console(), "strata-guest: ran user-data commands") {
			return fmt.Errorf("the guest has not run its user-data commands")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, console())
	}
	t.Logf("guest up with its listeners after %s", booted.Round(time.Millisecond))
	// DHCP hands out the port's first address, not another of its own.
	if !strings.Contains(console(), "strata-guest: lease "+psFirst+" ") {
		t.Errorf("the guest did not lease its port's first address %s:\n%s", psFirst, console())
	}

	// One probe: each forged send, then the second address, IPv6, and
	// last the first address. The MAC is forged and restored in one
	// command, its output held until then (the command's own connection
	// cannot answer from a forged MAC).
	probe := strings.Join([]string{
		"ip addr add " + psForged + "/32 dev eth0 2>/dev/null",
		"echo forged-ip $(busybox ping -c 2 -W 1 -I " + psForged + " " + psEP + " | grep transmitted)",
		"echo forged-arp $(busybox arping -U -c 1 -I eth0 " + psForged + " | grep Sent)",
		"ip link set eth0 address " + psForgedMC + "; a=$(cat /sys/class/net/eth0/address); busybox ping -c 2 -W 1 -I " + psFirst + " " + psEP + " >/run/o 2>&1; ip link set eth0 address " + mac.String() + "; echo forged-mac $a $(grep transmitted /run/o)",
		"echo second $(busybox ping -c 1 -W 1 -I " + psSecond + " " + psEP + " | grep transmitted)",
		"echo v6 $(busybox ping6 -c 1 -W 1 " + psEP6 + " 2>&1 | grep -e transmitted -e ping)",
		"echo legit $(busybox ping -c 1 -W 1 -I " + psFirst + " " + psEP + " | grep transmitted)",
		"echo probe-done",
	}, "\n")
	// sendProbe runs the probe and waits for its last packet (the
	// first address's, whose path is open in every phase) at the
	// endpoint; it returns the counters' growth.
	sendProbe := func(phase string) map[string]int {
		t.Helper()
		before := counters()
		out := guestRun(t, epNS, probe, console)
		// What the guest says it sent, line by line.
		for _, want := range [][2]string{{"forged-ip", "2 packets transmitted"}, {"forged-arp", "Sent 1"},
			{"forged-mac", psForgedMC + " 2 packets transmitted"}, {"second", "1 packets transmitted"},
			{"v6", "1 packets transmitted"}, {"legit", "1 packets transmitted"}, {"probe-done", ""}} {
			if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool {
				return strings.HasPrefix(l, want[0]) && strings.Contains(l, want[1])
			}) {
				t.Fatalf("%s: the guest's probe did not show %q:\n%s\nconsole:\n%s", phase, want, out, console())
			}
		}
		var grew map[string]int
		testenv.WaitFor(t, 30*time.Second, phase+": the probe's last packet at the endpoint", func() error {
			grew = delta(before, counters())
			if grew["legit"] < 1 {
				return fmt.Errorf("counters grew by %v", grew)
			}
			return nil
		})
		return grew
	}
	// dial connects from the endpoint to the guest.
	dial := func(ip string, port int, timeout time.Duration) error {
		return netnsutil.Do(epNS, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), timeout)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	answers := func(phase, ip string, port int) {
		t.Helper()
		testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%s: [%s]:%d answers", phase, ip, port), func() error { return dial(ip, port, 2*time.Second) })
	}
	silent := func(phase, ip string, port int) {
		t.Helper()
		if err := dial(ip, port, testenv.Scale(3*time.Second)); err == nil {
			t.Errorf("%s: [%s]:%d answers; its group does not allow it", phase, ip, port)
		}
	}

	// Port security on.
	grew := sendProbe("port security on")
	t.Logf("port security on: counters grew by %v", grew)
	for _, k := range []string{"forged-ip", "forged-arp", "forged-mac"} {
		if grew[k] != 0 {
			t.Errorf("port security on: %d %s packets from the guest reached the endpoint, want 0", grew[k], k)
		}
	}
	for _, k := range []string{"second", "v6"} {
		if grew[k] < 1 {
			t.Errorf("port security on: nothing from the guest's %s address reached the endpoint", k)
		}
	}
	for _, ip := range []string{psSecond, psV6, psFirst} {
		answers("port security on", ip, 7070)
		silent("port security on", ip, 7071)
	}

	// Allowed address pairs: the forged address with the port's MAC, and
	// the port's first address with the forged MAC.
	paired := guest
	paired.AllowedAddressPairs = []network.AddressPair{{Prefix: netip.MustParsePrefix(psForged + "/32")},
		{Prefix: netip.MustParsePrefix(psFirst + "/32"), MAC: mustMAC(t, psForgedMC)}}
	setPorts(paired)
	grew = sendProbe("allowed address pairs")
	t.Logf("allowed address pairs: counters grew by %v", grew)
	for _, k := range []string{"forged-ip", "forged-arp", "forged-mac"} {
		if grew[k] < 1 {
			t.Errorf("allowed address pairs: no %s packet from the guest reached the endpoint", k)
		}
	}

	// Control: port security off. The same probe's forged address and
	// ARP arrive; the disallowed port answers.
	open := guest
	open.SecurityGroups = nil
	setPorts(open)
	grew = sendProbe("port security off")
	t.Logf("port security off: counters grew by %v", grew)
	for _, k := range []string{"forged-ip", "forged-arp"} {
		if grew[k] < 1 {
			t.Errorf("port security off: no %s packet reached the endpoint: the guest does not send what the test says it forges", k)
		}
	}
	if grew["forged-mac"] != 0 {
		t.Errorf("port security off: %d packets from a MAC not the port's reached the endpoint, want 0", grew["forged-mac"])
	}
	for _, ip := range []string{psSecond, psV6} {
		answers("port security off", ip, 7071)
	}
	t.Logf("TestLabPortSecurityGuest took %s (guest boot %s)", time.Since(start).Round(time.Millisecond), booted.Round(time.Millisecond))
}

func mustMAC(t *testing.T, s string) net.HardwareAddr {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// installCounters loads a netdev table in ns whose chain, at eth0's
// ingress, holds rules (each a counter with a comment naming it); it
// returns a reader of the counts by name.
func installCounters(t *testing.T, ns, rules string) func() map[string]int {
	t.Helper()
	rules = `table netdev s11count {
	chain in {
		type filter hook ingress device "eth0" priority -500; policy accept;` + rules + `
	}
}
`
	f := filepath.Join(t.TempDir(), "count.nft")
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-f", f).CombinedOutput(); err != nil {
		t.Fatalf("counters in %s: %v\n%s", ns, err, out)
	}
	re := regexp.MustCompile(`counter packets (\d+) bytes \d+ comment "([a-z0-9-]+)"`)
	return func() map[string]int {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "netdev", "s11count").CombinedOutput()
		if err != nil {
			t.Fatalf("read counters in %s: %v\n%s", ns, err, out)
		}
		got := map[string]int{}
		for _, m := range re.FindAllStringSubmatch(string(out), -1) {
			got[m[2]], _ = strconv.Atoi(m[1])
		}
		return got
	}
}

func delta(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		out[k] = v - before[k]
	}
	return out
}

// guestRun sends script to the guest's command server from namespace ns
// and returns its output, trying until the server answers.
func guestRun(t *testing.T, ns, script string, console func() string) string {
	t.Helper()
	var out string
	_, err := testenv.Poll(60*time.Second, func() error {
		var c net.Conn
		err := netnsutil.Do(ns, func() error {
			var err error
			c, err = net.DialTimeout("tcp", net.JoinHostPort(psFirst, strconv.Itoa(psCmdPort)), 2*time.Second)
			return err
		})
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testenv.Scale(60 * time.Second)))
		if _, err := io.WriteString(c, script+"\n"); err != nil {
			return err
		}
		c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("guest command server: %v\noutput so far:\n%s\nconsole:\n%s", err, out, console())
	}
	return out
}
