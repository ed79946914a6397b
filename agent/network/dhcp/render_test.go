package dhcp

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/strata-infra/strata/agent/network"
)

func testNet() (network.Network, []network.Port) {
	n := network.Network{ID: "n1", VNI: 7, Subnets: []network.Subnet{
		{ID: "v4", CIDR: netip.MustParsePrefix("10.1.1.0/24"), Gateway: netip.MustParseAddr("10.1.1.1"), DHCP: true,
			DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.53")},
			HostRoutes: []network.Route{{Dest: netip.MustParsePrefix("192.168.0.0/16"), NextHop: netip.MustParseAddr("10.1.1.254")}}},
		{ID: "v6", CIDR: netip.MustParsePrefix("fd00:1::/64"), DHCP: true},
		{ID: "off", CIDR: netip.MustParsePrefix("10.9.0.0/24")},
	}}
	ports := []network.Port{
		{ID: "p1", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, HostName: "web", IPs: []netip.Addr{
			netip.MustParseAddr("10.1.1.10"), netip.MustParseAddr("fd00:1::10"), netip.MustParseAddr("10.9.0.5")}},
		{ID: "p2", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, IPs: []netip.Addr{netip.MustParseAddr("10.1.1.11")}},
	}
	return n, ports
}

func TestRender(t *testing.T) {
	n, ports := testNet()
	tests := []struct{ name, got, want string }{
		{"hosts", HostsFile(n, ports), "02:00:00:00:00:01,10.1.1.10,web\n02:00:00:00:00:01,[fd00:1::10],web\n02:00:00:00:00:02,10.1.1.11,host-10-1-1-11\n"},
		{"addn", AddnHosts(n, ports, "lab"), "10.1.1.10\tweb.lab web\n10.1.1.11\thost-10-1-1-11.lab host-10-1-1-11\nfd00:1::10\tweb.lab web\n"},
		{"opts", OptsFile(n, 1450), "tag:subnet-v4,option:router,10.1.1.1\n" +
			"tag:subnet-v4,option:dns-server,10.0.0.53\n" +
			"tag:subnet-v4,option:classless-static-route,192.168.0.0/16,10.1.1.254,0.0.0.0/0,10.1.1.1\n" +
			"tag:subnet-v4,option:mtu,1450\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
	// A port with two addresses in one subnet: DHCP hands out the first.
	two := network.Port{ID: "p3", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 3}, HostName: "two", IPs: []netip.Addr{
		netip.MustParseAddr("10.1.1.21"), netip.MustParseAddr("10.1.1.20"), netip.MustParseAddr("fd00:1::21"), netip.MustParseAddr("fd00:1::20")}}
	if got, want := HostsFile(n, []network.Port{two}), "02:00:00:00:00:03,10.1.1.21,two\n02:00:00:00:00:03,[fd00:1::21],two\n"; got != want {
		t.Errorf("hosts of a port with two addresses per subnet:\n got %q\nwant %q", got, want)
	}
}

func TestArgs(t *testing.T) {
	n, _ := testNet()
	args := Args(n, "/s/n1", "lab", "strata-dnsmasq", "strata-dnsmasq")
	for _, want := range []string{
		"--user=strata-dnsmasq", "--group=strata-dnsmasq",
		"--pid-file=/s/n1/pid", "--dhcp-hostsfile=/s/n1/host", "--interface=dhcp0",
		"--dhcp-range=set:subnet-v4,10.1.1.0,static,255.255.255.0,86400s",
		"--dhcp-range=set:subnet-v6,fd00:1::,static,64,86400s", "--enable-ra", "--keep-in-foreground",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("args lack %q: %v", want, args)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return a == "--dhcp-range=set:subnet-off" }) {
		t.Error("non-DHCP subnet rendered")
	}
	if !ours(append([]string{"/usr/sbin/dnsmasq"}, args...), "/s/n1/pid") || ours([]string{"/bin/sleep", "--pid-file=/s/n1/pid"}, "/s/n1/pid") {
		t.Error("ours() misjudges a command line")
	}
}

func TestGoneLeases(t *testing.T) {
	old := "02:5a:00:00:01:0a,10.1.1.10,a1\n02:5a:00:00:01:0b,10.1.1.11,a2\n02:5a:00:00:01:0c,[fd00::c],a3\n"
	new := "02:5a:00:00:01:0b,10.1.1.11,a2\n02:5a:00:00:01:0d,10.1.1.10,a4\n"
	got := goneLeases(old, new)
	if len(got) != 1 || got[0].mac != "02:5a:00:00:01:0a" || got[0].ip.String() != "10.1.1.10" {
		t.Fatalf("gone leases %+v, want a1's (IPv6 ones are not released)", got)
	}
	if len(goneLeases(new, new)) != 0 {
		t.Fatal("an unchanged file releases something")
	}
}
