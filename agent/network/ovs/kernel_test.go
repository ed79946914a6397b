package ovs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/internal/kerneltest"
	"github.com/strata-infra/strata/internal/testenv"
)

// TestKernelDatapathInGuest boots the kernel-test guest (Debian's kernel,
// with the openvswitch module and kernel GRE) and runs
// TestGuestKernelDatapath there: this package's driver on the kernel
// datapath.
func TestKernelDatapathInGuest(t *testing.T) {
	const test = "TestGuestKernelDatapath"
	// It once failed in a CI-conditions run with no answer at all. Its
	// repeated runs on the loaded machine showed why: the guest's one
	// emulated CPU was starved (ovs-vswitchd logged main-loop stalls of
	// 41 s with 12 s of CPU in them), the test's two agents each ran
	// ovs-ofctl every 100 ms for their canary, and the waits were the
	// host's (ovs-vsctl 20 s, ports' OpenFlow numbers 15 s, and one 90 s
	// ping deadline shared by all five pairs, so one slow pair failed them
	// all). The canary now runs at the agent's 1 s here, every wait in
	// the guest scales (guestSlowdown times the host's factor), and each
	// pair has its own deadline and reports how long its first answer
	// took.
	// Two hosts' ovsdb-server and ovs-vswitchd under TCG: a bound for a
	// hung guest, not a performance target. dnsmasq: the agent's DHCP
	// driver is made with the others (no network here asks for DHCP).
	opts := kerneltest.Options{Timeout: testenv.Scale(10 * time.Minute), MemoryMB: 768, Tools: []string{"dnsmasq"},
		// Everything in the guest runs on one emulated CPU, several
		// times slower than the host: its waits (ovs-vsctl, the ports'
		// OpenFlow numbers, the first answers) get that much longer too.
		Env: map[string]string{testenv.FactorEnv: strconv.FormatFloat(guestSlowdown*testenv.Factor(), 'f', -1, 64)}}
	// STRATA_GUEST_COUNT=N runs the guest test N times in one boot (and
	// gives the guest N times as long): for hunting a rare failure.
	if n, err := strconv.Atoi(os.Getenv("STRATA_GUEST_COUNT")); err == nil && n > 1 {
		opts.Args = append(opts.Args, "-test.count="+strconv.Itoa(n))
		opts.Timeout *= time.Duration(n)
	}
	res := kerneltest.RunWith(t, "github.com/strata-infra/strata/agent/network/ovs", "^"+test+"$", opts)
	if !strings.Contains(res.Output, "--- PASS: "+test) {
		t.Errorf("guest output lacks the pass line of %s:\n%s", test, res.Output)
	}
}

// guestSlowdown is how much longer the guest's waits are than the host's.
const guestSlowdown = 4

// TestGuestKernelDatapath runs only inside the kernel-test guest: two OVS
// hosts (namespaces on a veth underlay, each with its own ovsdb-server and
// ovs-vswitchd) where the driver detects and uses the kernel datapath
// (datapath_type=system, the VTEP on the underlay device as on a real
// host). Endpoints reach each other over a GRE and over a VXLAN tunnel
// port; the two networks share a CIDR and stay apart; the kernel datapath
// holds the bridge and both tunnel vports.
func TestGuestKernelDatapath(t *testing.T) {
	if !kerneltest.InGuest() {
		t.Skip("runs inside the kernel-test guest; TestKernelDatapathInGuest runs it there")
	}
	for _, m := range []string{"bridge", "veth", "openvswitch", "vport-gre", "vport-vxlan"} {
		if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %s: %v: %s", m, err, out)
		}
	}
	if dp, why := ovs.DetectDatapath(); dp != "system" {
		t.Fatalf("DetectDatapath with the openvswitch module loaded: %s (%s), want system", dp, why)
	}
	l := newTunnelLabOn(t, nettest.NewKernelOVSLab(t, 2), []network.Port{
		ep("v1", "vx1", "h1", 10, "10.1.1.10"), ep("v2", "vx1", "h2", 11, "10.1.1.11"),
		ep("g1", "gr2", "h1", 10, "10.1.1.10"), ep("g2", "gr2", "h2", 11, "10.1.1.11"), ep("g3", "gr2", "h2", 13, "10.1.1.13"),
	})
	start := time.Now()
	l.setAll(t)
	t.Logf("two OVS hosts on the kernel datapath converged in %v", time.Since(start).Round(time.Millisecond))
	for _, a := range l.agents {
		if dp := a.OVS.Datapath(); dp != "system" {
			t.Fatalf("host %s: driver chose datapath %q, want system", a.Host.Name, dp)
		}
	}
	// Set has returned with every port given its OpenFlow number and the
	// flows in: the first packets may still wait for ovs-vswitchd's
	// upcall handling of the first packet of each flow, so each pair polls
	// (on a bound of its own) until it is answered, and says how long that
	// took.
	for _, c := range []struct{ from, to string }{
		{"v1", "v2"}, {"v2", "v1"}, // VXLAN, both ways
		{"g1", "g2"}, {"g2", "g1"}, {"g1", "g3"}, // GRE, both ways
	} {
		to := l.port(c.to)
		ip := to.IPs[0].String()
		pctx, pcancel := context.WithTimeout(context.Background(), testenv.Scale(60*time.Second))
		start := time.Now()
		ok := pingUntil(pctx, l.ns(c.from), ip)
		pcancel()
		if !ok && l.restartLosingVswitchds(t) {
			// Once per test: a second loss of every upcall fails it.
			pctx, pcancel := context.WithTimeout(context.Background(), testenv.Scale(60*time.Second))
			ok = pingUntil(pctx, l.ns(c.from), ip)
			pcancel()
			t.Logf("%s -> %s (%s): after the restart: answered %v", c.from, c.to, ip, ok)
		}
		if !ok {
			t.Errorf("%s -> %s (%s): no answer on the kernel datapath within %v", c.from, c.to, ip, testenv.Scale(60*time.Second))
			l.logKernelDatapath(t)
			break
		}
		t.Logf("%s -> %s (%s): first answer after %v", c.from, c.to, ip, time.Since(start).Round(time.Millisecond))
		// Both networks have 10.1.1.10 and .11: the answer must come
		// from the sender's own network.
		ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
		if mac := neighMAC(ctx, l.ns(c.from), ip); mac != to.MAC.String() {
			t.Errorf("%s -> %s (%s): answered by MAC %q, want %s", c.from, c.to, ip, mac, to.MAC)
		}
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(60*time.Second))
	defer cancel()
	// Isolation: 10.1.1.13 exists only on the GRE network.
	if pingOK(ctx, l.ns("v1"), "10.1.1.13") {
		t.Error("v1 (VXLAN) reached 10.1.1.13, an address only on the GRE network")
	}
	h1 := l.lab.Hosts[0]
	out, err := nettest.Run(ctx, h1.NS, "ovs-dpctl", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ovs.DefaultBridge, "gre_sys", "vxlan_sys_4789", network.EndpointVethName("v1"), network.EndpointVethName("g1")} {
		if !strings.Contains(out, want) {
			t.Errorf("kernel datapath of h1 lacks %s:\n%s", want, out)
		}
	}
	t.Logf("ovs-dpctl show in h1:\n%s", out)
	if flows, err := nettest.Run(ctx, h1.NS, "ovs-dpctl", "dump-flows"); err == nil {
		t.Logf("kernel datapath flows of h1 after the pings:\n%s", flows)
	}
	got, err := h1.OVS.Vsctl(ctx, "get", "bridge", ovs.DefaultBridge, "datapath_type")
	if err != nil || strings.TrimSpace(got) != "system" {
		t.Errorf("bridge datapath_type = %q (%v), want system", got, err)
	}
}

// logKernelDatapath logs what the next look at a failure needs: the
// datapath's ports and counters (lost upcalls), its flows, the upcall
// handlers, the OpenFlow table, the links' counters and neighbours of
// every host of the lab.
func (l *tunnelLab) logKernelDatapath(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(60*time.Second))
	defer cancel()
	for _, h := range l.lab.Hosts {
		ctl := "--target=" + filepath.Join(h.OVS.Dir, "ovs-vswitchd.ctl")
		for _, args := range [][]string{
			{"ovs-dpctl", "show", "-s"},
			{"ovs-dpctl", "dump-flows", "-m"},
			{"ovs-appctl", ctl, "upcall/show"},
			{"ovs-appctl", ctl, "dpif-netlink/dispatch-mode"},
			{"ovs-appctl", ctl, "dpif/show"},
			{"ovs-appctl", ctl, "coverage/show"},
			{"ovs-ofctl", "-O", "OpenFlow13", "dump-flows", h.OVS.Mgmt(ovs.DefaultBridge)},
			{"ovs-ofctl", "-O", "OpenFlow13", "dump-ports-desc", h.OVS.Mgmt(ovs.DefaultBridge)},
			{"ip", "-s", "link"},
			{"ip", "neigh"},
			{"bridge", "fdb", "show"},
		} {
			out, err := nettest.Run(ctx, h.NS, args[0], args[1:]...)
			t.Logf("%s: %s: %v\n%s", h.NS, strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "dmesg").CombinedOutput(); err == nil {
		t.Logf("guest kernel log (last 3000 bytes):\n%s", out[max(0, len(out)-3000):])
	}
	for _, p := range l.ports {
		out, err := nettest.Run(ctx, l.ns(p.ID), "ip", "neigh")
		t.Logf("%s: ip neigh: %v\n%s", p.ID, err, out)
	}
}

// restartLosingVswitchds restarts, once per lab, the ovs-vswitchd of each
// host whose kernel datapath has lost every upcall (lookups hit 0, missed
// equal to lost): packets missed the empty flow cache and the kernel found
// no handler socket to hand them to, so they never reached ovs-vswitchd
// and no flow of the driver's was consulted. It happened in 2 of 8 guest
// runs, both where the hosts converged fast (in 11 s and 22 s, where the
// runs that passed took minutes), and never recovered on its own. It is an
// ovs-vswitchd fault, not the driver's; a restart (with
// flow-restore-wait, which the driver clears once its flows are back) is
// the operator's remedy, and the driver must carry through it. Reports
// whether it restarted any.
func (l *tunnelLab) restartLosingVswitchds(t *testing.T) bool {
	t.Helper()
	if l.restarted {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(60*time.Second))
	defer cancel()
	var any bool
	for _, h := range l.lab.Hosts {
		out, err := nettest.Run(ctx, h.NS, "ovs-dpctl", "show")
		if err != nil {
			t.Logf("%s: ovs-dpctl show: %v", h.NS, err)
			continue
		}
		hit, missed, lost, ok := datapathLookups(out)
		if !ok || hit != 0 || lost == 0 || lost != missed {
			continue
		}
		mode, _ := nettest.Run(ctx, h.NS, "ovs-appctl", "--target="+filepath.Join(h.OVS.Dir, "ovs-vswitchd.ctl"), "dpif-netlink/dispatch-mode")
		t.Logf("%s: the kernel datapath lost all %d upcalls (dispatch mode: %s): restarting ovs-vswitchd", h.NS, lost, strings.TrimSpace(mode))
		h.OVS.RestartVswitchd(t)
		any = true
	}
	l.restarted = true
	return any
}

// datapathLookups reads "lookups: hit:H missed:M lost:L" from ovs-dpctl show.
func datapathLookups(show string) (hit, missed, lost uint64, ok bool) {
	for _, line := range strings.Split(show, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "lookups:") {
			continue
		}
		n, err := fmt.Sscanf(line, "lookups: hit:%d missed:%d lost:%d", &hit, &missed, &lost)
		return hit, missed, lost, err == nil && n == 3
	}
	return 0, 0, 0, false
}

// pingUntil pings until an answer comes or ctx ends.
func pingUntil(ctx context.Context, ns, ip string) bool {
	for ctx.Err() == nil {
		if pingOK(ctx, ns, ip) {
			return true
		}
	}
	return false
}

// neighMAC is the MAC ns holds for ip, "" when none.
func neighMAC(ctx context.Context, ns, ip string) string {
	out, _ := nettest.Run(ctx, ns, "ip", "neigh", "show", ip)
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}
