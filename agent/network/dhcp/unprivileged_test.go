package dhcp_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
)

// TestDnsmasqUnprivileged runs the real driver and dnsmasq in a lab host
// namespace: dnsmasq runs as an unprivileged user (every uid and gid not
// 0, no capability but the network ones dnsmasq keeps), its state
// directories are not root-only, and a port added later is picked up
// through SIGHUP by the same process (a reload that reads the rewritten
// hosts file as that user), as the client's lease shows.
func TestDnsmasqUnprivileged(t *testing.T) {
	lab := nettest.NewLabWith(t, 1, "linuxbridge")
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)
	n := network.Network{ID: "net-u", VNI: 5301, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.7.1.0/24"),
		Gateway: netip.MustParseAddr("10.7.1.1"), DHCP: true}}}
	port := func(id string, mac int, ip, owner string) network.Port {
		return network.Port{ID: id, NetworkID: n.ID, Host: h.Name, Owner: owner, HostName: id, MAC: nettest.MAC(mac),
			IPs: []netip.Addr{netip.MustParseAddr(ip)}}
	}
	ports := []network.Port{port("dhcp", 1, "10.7.1.2", network.OwnerDHCP), port("a", 2, "10.7.1.10", "")}
	st := lab.HostState(h, []network.Network{n}, ports)
	st.LocalEndpoints = []network.Endpoint{{PortID: "a", IfName: "eth0", DHCP: true}}
	ag.Set(t, st)

	dir := filepath.Join(h.StateDir, "dhcp", n.ID)
	pid := pidOf(t, dir)
	uids, gids, capEff := status(t, pid)
	for _, id := range append(uids, gids...) {
		if id == "0" {
			t.Fatalf("dnsmasq %d runs with uid/gid 0: Uid %v Gid %v", pid, uids, gids)
		}
	}
	// What dnsmasq itself keeps after dropping root: none of the
	// agent's others (SYS_ADMIN, SETUID, SETGID).
	const netBindService, netAdmin, netRaw = 10, 12, 13
	if extra := capEff &^ (1<<netBindService | 1<<netAdmin | 1<<netRaw); extra != 0 {
		t.Fatalf("dnsmasq %d keeps capabilities %#x beyond NET_BIND_SERVICE, NET_ADMIN and NET_RAW", pid, extra)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o070 == 0 {
			t.Fatalf("%s is mode %v: dnsmasq's group cannot enter it", d, fi.Mode().Perm())
		}
	}

	ns := func(id string) string { return h.Prefix + network.EndpointNSPart + id }
	lease := func(id, want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got, err := nettest.DHCP(ctx, t, ns(id), "eth0")
		if err != nil || got != want {
			t.Fatalf("lease of %s: %q, %v; want %s", id, got, err, want)
		}
	}
	lease("a", "10.7.1.10")

	// A port added now is only in the rewritten hosts file: the running
	// dnsmasq must reread it as its unprivileged user.
	st.Ports = append(st.Ports, port("b", 3, "10.7.1.11", ""))
	st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: "b", IfName: "eth0", DHCP: true})
	ag.Set(t, st)
	if c := ag.DHCP.Counters(); c.Reloads < 1 {
		t.Fatalf("counters %+v: the new port caused no reload", c)
	}
	if now := pidOf(t, dir); now != pid {
		t.Fatalf("dnsmasq restarted (%d -> %d); want the same process reloaded", pid, now)
	}
	lease("b", "10.7.1.11")
	if log, err := os.ReadFile(filepath.Join(dir, "log")); err == nil && strings.Contains(string(log), "Permission denied") {
		t.Fatalf("dnsmasq could not read its files:\n%s", log)
	}
	if !alive(pid) {
		t.Fatalf("dnsmasq %d is gone after the reload", pid)
	}
}

func pidOf(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// status reads the real, effective, saved and file-system uids and gids
// and the effective capabilities of pid.
func status(t *testing.T, pid int) (uids, gids []string, capEff uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[0] == "Uid:":
			uids = f[1:]
		case len(f) == 5 && f[0] == "Gid:":
			gids = f[1:]
		case len(f) == 2 && f[0] == "CapEff:":
			capEff, err = strconv.ParseUint(f[1], 16, 64)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(uids) != 4 || len(gids) != 4 {
		t.Fatalf("no Uid/Gid lines in /proc/%d/status", pid)
	}
	return uids, gids, capEff
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}
