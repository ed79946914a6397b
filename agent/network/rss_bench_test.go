package network_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/pkg/netspec"
)

const rssHelperEnv = "STRATA_RSS_HELPER"

// BenchmarkAgentRSS200Networks2000Ports: the resident memory of a process
// holding a host's L2 and security group drivers converged on 200
// networks and 2,000 ports (500 of them local, each in a security group),
// measured in a fresh process (this test binary run again as
// TestRSSHelper) after a garbage collection, and what converging added.
func BenchmarkAgentRSS200Networks2000Ports(b *testing.B) {
	nettest.RequireRoot(b)
	var rss, added float64
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRSSHelper$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), rssHelperEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("helper: %v\n%s", err, out)
		}
		before, after, ok := parseRSS(string(out))
		if !ok {
			b.Fatalf("helper printed no RSS line:\n%s", out)
		}
		rss, added = max(rss, after), max(added, after-before)
	}
	b.ReportMetric(rss/1024, "rss-MiB")
	b.ReportMetric(added/1024, "converged-added-MiB")
}

func parseRSS(out string) (before, after float64, ok bool) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "RSS_KIB" {
				b, err1 := strconv.ParseFloat(f[i+1], 64)
				a, err2 := strconv.ParseFloat(f[i+2], 64)
				return b, a, err1 == nil && err2 == nil
			}
		}
	}
	return 0, 0, false
}

// TestRSSHelper is BenchmarkAgentRSS200Networks2000Ports's process; it
// does nothing in a normal test run.
func TestRSSHelper(t *testing.T) {
	if os.Getenv(rssHelperEnv) == "" {
		t.Skip("the process BenchmarkAgentRSS200Networks2000Ports starts")
	}
	lab := nettest.NewLab(t, 1)
	h := lab.Hosts[0]
	nets, ports := nettest.Scale(200, 2000, []string{h.Name, "h2", "h3", "h4"})
	for i := range ports {
		ports[i].SecurityGroups = []string{"web"}
	}
	st := lab.HostState(h, nets, ports)
	st.RemoteVTEPs = map[string]netip.Addr{
		"h2": netip.MustParseAddr("172.30.0.2"), "h3": netip.MustParseAddr("172.30.0.3"), "h4": netip.MustParseAddr("172.30.0.4"),
	}
	st.SecurityGroups = []netspec.SecurityGroup{{ID: "web", Rules: []netspec.SecurityGroupRule{
		{Direction: netspec.Egress},
		{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP, Ports: &netspec.PortRange{From: 443, To: 443}},
		{Direction: netspec.Ingress, RemoteGroup: "web"},
	}}}
	before := rssKiB(t)
	lb, err := linuxbridge.New(linuxbridge.Config{NetNS: h.NS})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	sg, err := secgroup.New(secgroup.Config{NetNS: h.NS})
	if err != nil {
		t.Fatal(err)
	}
	defer sg.Close()
	for _, d := range []network.Driver{lb, sg} {
		if err := d.Set(context.Background(), st); err != nil {
			t.Fatal(err)
		}
	}
	after := rssKiB(t)
	fmt.Printf("RSS_KIB %d %d\n", before, after)
}

// rssKiB is this process's resident set after a collection.
func rssKiB(t *testing.T) int {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
