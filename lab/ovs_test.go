package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// TestLabDemoMixedFleet is `make lab` with its demo, on names of its own:
// h1 runs the linuxbridge L2 driver and h2 and h3 the ovs driver, each
// with its own ovsdb-server and ovs-vswitchd (userspace datapath) in its
// namespace. The demo's endpoints get their addresses by DHCP and reach
// exactly their own tenant: demo-a between the Linux bridge host and an
// OVS host over VXLAN, demo-b between the OVS hosts over VXLAN, demo-c
// between the OVS hosts over GRE, all three on 10.10.0.0/24. The hosts
// report their driver and datapath, and the OVS hosts carry VXLAN and GRE
// tunnel ports to exactly the hosts that share a network, with no flow
// using NORMAL.
func TestLabDemoMixedFleet(t *testing.T) {
	for _, b := range []string{"ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "dnsmasq", "busybox"} {
		testenv.RequireBinary(t, b)
	}
	l := testLabConfig(t, Config{Hosts: 3, RetainDeltas: 10000, L2Drivers: DemoL2Drivers})
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(5*time.Minute))
	defer cancel()
	start := time.Now()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WaitStatus(ctx, 90*time.Second, "hosts alive and converged", AllAliveAndConverged(3)); err != nil {
		t.Fatal(err)
	}
	t.Logf("mixed fleet up in %v", time.Since(start).Round(time.Millisecond))
	for i, want := range DemoL2Drivers {
		rep := report(t, l, l.HostName(i+1))
		if rep.Network == nil || rep.Network.L2Driver != want {
			t.Fatalf("host %s reports network %+v, want l2 driver %s", l.HostName(i+1), rep.Network, want)
		}
		if want == DriverOVS && rep.Network.Datapath != "netdev" {
			t.Errorf("host %s reports datapath %q (%s), want netdev here", l.HostName(i+1), rep.Network.Datapath, rep.Network.DatapathReason)
		}
	}
	stratactl(t, l, nil, "apply", "-f", filepath.Join(repoRoot(t), "testdata", "lab", "demo.yaml"))
	if _, err := l.WaitStatus(ctx, 90*time.Second, "fleet converged on the demo", AllAliveAndConverged(3)); err != nil {
		t.Fatal(err)
	}
	eps, err := l.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The demo's pairs: what each one proves.
	for _, want := range []struct{ project, hosts string }{
		{"demo-a", "h1 h2"}, // Linux bridge host <-> OVS host, VXLAN
		{"demo-b", "h2 h3"}, // OVS <-> OVS, VXLAN
		{"demo-c", "h2 h3"}, // OVS <-> OVS, GRE
	} {
		var hosts []string
		for _, e := range eps {
			if e.Project == want.project {
				hosts = append(hosts, e.Host)
			}
		}
		if strings.Join(hosts, " ") != want.hosts && strings.Join(reverse(hosts), " ") != want.hosts {
			t.Fatalf("%s's endpoints are on %v, want %s", want.project, hosts, want.hosts)
		}
	}
	// DemoTraffic leases every endpoint's address and pings every pair: it
	// fails when a tenant cannot reach itself or anything of another
	// tenant answers (the MAC that answered ARP names its owner).
	var out strings.Builder
	err = l.DemoTraffic(ctx, &out)
	t.Logf("demo traffic:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	// The demo prints the router's compiled firewall: its chain as nft
	// lists it, verdict map lookups, and their elements.
	out.Reset()
	err = l.DemoFirewalls(ctx, &out)
	t.Logf("compiled firewalls:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chain fw_ingress", " vmap @fw_ingress_0", " elements", "security groups on h1 (table inet strata_sg)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the compiled firewalls shown lack %q", want)
		}
	}
	for i := 2; i <= 3; i++ {
		other := l.HostAddr(5 - i).As4() // h2 <-> h3
		h1 := l.HostAddr(1).As4()
		ports := l.ovsOutput(t, i, "ovs-vsctl", "--db="+l.OVSDB(i), "list-ports", "strata-int")
		wantPorts := []string{fmt.Sprintf("stg-%02x%02x%02x%02x", other[0], other[1], other[2], other[3]),
			fmt.Sprintf("stv-%02x%02x%02x%02x", other[0], other[1], other[2], other[3])}
		if i == 2 { // demo-a joins h2 to h1 over VXLAN
			wantPorts = append(wantPorts, fmt.Sprintf("stv-%02x%02x%02x%02x", h1[0], h1[1], h1[2], h1[3]))
		}
		// h1 is on the Linux bridge: no GRE tunnel ever goes there.
		if strings.Contains(ports, fmt.Sprintf("stg-%02x%02x%02x%02x", h1[0], h1[1], h1[2], h1[3])) {
			t.Errorf("%s has a GRE tunnel to the linuxbridge host h1:\n%s", l.HostName(i), ports)
		}
		for _, p := range wantPorts {
			if !strings.Contains(ports, p) {
				t.Errorf("%s's integration bridge lacks tunnel port %s:\n%s", l.HostName(i), p, ports)
			}
		}
		flows := l.ovsOutput(t, i, "ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "unix:"+filepath.Join(l.OVSDir(i), "strata-int.mgmt"))
		if strings.Contains(strings.ToUpper(flows), "NORMAL") {
			t.Errorf("%s: a flow uses NORMAL:\n%s", l.HostName(i), flows)
		}
	}
}

func reverse(s []string) []string {
	r := make([]string, len(s))
	for i, x := range s {
		r[len(s)-1-i] = x
	}
	return r
}

// ovsOutput runs an Open vSwitch tool against host i's switch.
func (l *Lab) ovsOutput(t *testing.T, i int, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+l.OVSDir(i))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
