package network_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/dhcp"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/internal/promtest"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// TestAgentRestartLosesNothing: on every host the agent stops (its dnsmasq
// supervisor, OVS watcher and drivers end, what they made stays) and a
// fresh one starts with the same state: it changes nothing (and its drivers
// share one dump of the links), and a 20/s ping
// across hosts, running from before the first stop until after the last
// host has re-converged, loses no packet.
func TestAgentRestartLosesNothing(t *testing.T) { forEachDriver(t, testAgentRestartLosesNothing) }

func testAgentRestartLosesNothing(t *testing.T, p *twoProjects) {
	p.setAll(t)
	p.leaseAll(t)
	a1, a2 := p.eps[0], p.eps[1]
	ping := netprobe.StartWindow(a1.ns, a2.ip)
	time.Sleep(time.Second)
	start := time.Now()
	for i, h := range p.lab.Hosts {
		p.agents[i].Stop()
		fresh := nettest.NewAgent(t, h)
		fresh.Set(t, p.state(h))
		if n := fresh.L2.Changes() + fresh.EP.Changes(); n != 0 {
			t.Errorf("host %s: restart made %d link/fdb/neigh changes, want 0", h.Name, n)
		}
		// Every driver read the links of this one dump: nothing changed.
		if n := fresh.Links.Dumps(); n != 1 {
			t.Errorf("host %s: the converged pass dumped the links %d times, want once", h.Name, n)
		}
		if c := fresh.DHCP.Counters(); c != (dhcp.Counters{}) {
			t.Errorf("host %s: restart touched dnsmasq: %+v", h.Name, c)
		}
		p.agents[i] = fresh
	}
	converged := time.Now()
	t.Logf("three agents restarted and re-converged in %v", converged.Sub(start).Round(time.Millisecond))
	time.Sleep(time.Second) // and a second of traffic after
	ping.Stop()
	t.Logf("ping %s -> %s at 20/s from %s before the first stop to %s after re-convergence: %d sent, %d received",
		a1.name, a2.name, start.Sub(ping.Begin).Round(time.Millisecond), ping.End.Sub(converged).Round(time.Millisecond), ping.Sent, ping.Recv)
	if err := ping.Covers(start, converged); err != nil {
		t.Errorf("ping across the restart: %v", err)
	}
}

func dnsmasqPid(t *testing.T, h *nettest.Host, netID string) int {
	b, err := os.ReadFile(filepath.Join(h.StateDir, "dhcp", netID, "pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// TestDnsmasqSupervisedAndReloaded: a killed dnsmasq is restarted by the
// supervisor; a new port reaches dnsmasq by SIGHUP (same PID) and gets its
// fixed IP by DHCP.
func TestDnsmasqSupervisedAndReloaded(t *testing.T) {
	forEachDriver(t, testDnsmasqSupervisedAndReloaded)
}

func testDnsmasqSupervisedAndReloaded(t *testing.T, p *twoProjects) {
	p.setAll(t)
	h1, a := p.lab.Hosts[0], p.agents[0]
	old := dnsmasqPid(t, h1, "proj-a")
	if old == 0 {
		t.Fatal("no dnsmasq pid for proj-a on h1")
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for a.DHCP.Counters().Restarts == 0 && time.Since(killed) < 10*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	pid := dnsmasqPid(t, h1, "proj-a")
	if pid == 0 || pid == old {
		t.Fatalf("dnsmasq not restarted: pid %d (old %d), counters %+v", pid, old, a.DHCP.Counters())
	}
	t.Logf("killed dnsmasq %d; supervisor restarted it as %d after %v", old, pid, time.Since(killed).Round(time.Millisecond))
	checkDnsmasqMetrics(t, a.DHCP, 1, 0)
	p.leaseAll(t)

	a3 := port("a3", "proj-a", "h2", 13, "10.1.1.13", "")
	p.ports = append(p.ports, a3)
	p.eps = append(p.eps, testEndpoint{name: "a3", project: "proj-a", host: "h2", ip: "10.1.1.13", port: a3})
	before := a.DHCP.Counters()
	p.setAll(t)
	after := a.DHCP.Counters()
	if after.Reloads != before.Reloads+1 || after.Starts != before.Starts || dnsmasqPid(t, h1, "proj-a") != pid {
		t.Errorf("new port: want one SIGHUP and the same pid %d, got %+v -> %+v pid %d", pid, before, after, dnsmasqPid(t, h1, "proj-a"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := nettest.DHCP(ctx, t, h2ns(p, "a3"), "eth0")
	if err != nil || got != "10.1.1.13" {
		t.Fatalf("new port a3 after SIGHUP: lease %q, err %v; want 10.1.1.13", got, err)
	}
	t.Logf("new port a3 got 10.1.1.13 by DHCP after a SIGHUP to pid %d", pid)

	// a3 goes and a4, another MAC, takes its address: a3's lease must be
	// released, or dnsmasq would not offer 10.1.1.13 to a4.
	a4 := port("a4", "proj-a", "h2", 14, "10.1.1.13", "")
	a3ns := h2ns(p, "a3")
	p.ports[len(p.ports)-1] = a4
	p.eps[len(p.eps)-1] = testEndpoint{name: "a4", project: "proj-a", host: "h2", ip: "10.1.1.13", port: a4}
	p.setAll(t)
	if netnsutil.Exists(a3ns) {
		t.Errorf("endpoint namespace %q of deleted port a3 remains", a3ns)
	}
	got, err = nettest.DHCP(ctx, t, h2ns(p, "a4"), "eth0")
	if err != nil || got != "10.1.1.13" {
		t.Fatalf("a4 taking deleted a3's address: lease %q, err %v; want 10.1.1.13", got, err)
	}
	t.Logf("a3 deleted, its lease released; a4 (new MAC) got 10.1.1.13")

	p.nets = p.nets[1:] // project A goes away: its dnsmasq and namespace too
	p.ports = p.ports[3:6]
	p.eps = nil
	p.setAll(t)
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("dnsmasq %d of a removed network still runs", pid)
	}
	if ns := a.DHCP.Namespace("proj-a"); netnsutil.Exists(ns) {
		t.Errorf("namespace %q of a removed network remains", ns)
	}
}

// checkDnsmasqMetrics: the agent's metrics count the supervisor's
// restarts by reason and the dnsmasq it supervises.
func checkDnsmasqMetrics(t *testing.T, d *dhcp.Driver, died, hung float64) {
	t.Helper()
	m := promtest.Values(t, d.Collectors()...)
	t.Logf("metrics: %v", m)
	if got := m[`strata_agent_dnsmasq_restarts_total{reason="died"}`]; got != died {
		t.Errorf("strata_agent_dnsmasq_restarts_total{reason=died} = %v, want %v", got, died)
	}
	if got := m[`strata_agent_dnsmasq_restarts_total{reason="hung"}`]; got != hung {
		t.Errorf("strata_agent_dnsmasq_restarts_total{reason=hung} = %v, want %v", got, hung)
	}
	if got, want := m["strata_agent_dnsmasq_processes"], float64(len(d.Processes())); got != want || got == 0 {
		t.Errorf("strata_agent_dnsmasq_processes = %v, want %v (the supervised processes)", got, want)
	}
}

func h2ns(p *twoProjects, name string) string {
	for _, e := range p.eps {
		if e.name == name {
			return e.ns
		}
	}
	return ""
}

// TestHungDnsmasqRestarted: a dnsmasq that still runs but answers nothing
// (SIGSTOP) fails its DNS liveness probes, is killed and restarted, the
// status says why, and DHCP works again.
func TestHungDnsmasqRestarted(t *testing.T) {
	p := newTwoProjects(t)
	p.setAll(t)
	h1, a := p.lab.Hosts[0], p.agents[0]
	old := dnsmasqPid(t, h1, "proj-a")
	if old == 0 {
		t.Fatal("no dnsmasq pid for proj-a on h1")
	}
	// Healthy dnsmasq processes pass their probes: nothing is restarted.
	time.Sleep(time.Second)
	if c := a.DHCP.Counters(); c.Hung != 0 || c.Restarts != 0 {
		t.Fatalf("healthy dnsmasq restarted: %+v", c)
	}
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	for a.DHCP.Counters().Hung == 0 && time.Since(stopped) < 20*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	healed := time.Since(stopped)
	pid := dnsmasqPid(t, h1, "proj-a")
	if pid == 0 || pid == old {
		t.Fatalf("hung dnsmasq not restarted after %v: pid %d (old %d), counters %+v", healed, pid, old, a.DHCP.Counters())
	}
	if err := syscall.Kill(old, 0); err == nil {
		t.Errorf("the hung dnsmasq %d still exists after its restart", old)
	}
	var found bool
	for _, sp := range a.DHCP.Processes() {
		if sp.Name == "dnsmasq network proj-a" {
			found = true
			if sp.Restarts != 1 || sp.PID != pid || !strings.HasPrefix(sp.LastReason, "hung") || sp.LastRestart.IsZero() {
				t.Errorf("status of the restarted dnsmasq: %+v", sp)
			}
		}
	}
	if !found {
		t.Fatalf("no status for dnsmasq of proj-a: %+v", a.DHCP.Processes())
	}
	t.Logf("SIGSTOPped dnsmasq %d detected hung and restarted as %d after %v", old, pid, healed.Round(time.Millisecond))
	checkDnsmasqMetrics(t, a.DHCP, 0, 1)
	p.leaseAll(t)
}
