package ovs_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/ovs"
)

// tunnelLab: three OVS hosts, a VXLAN and a GRE network with the same
// 10.1.1.0/24, an endpoint with a static address per host and network.
type tunnelLab struct {
	lab    *nettest.Lab
	agents []*nettest.Agent
	nets   []network.Network
	ports  []network.Port
	// restarted: restartLosingVswitchds has run (kernel_test.go).
	restarted bool
}

func ep(id, netID, host string, mac byte, ip string) network.Port {
	return network.Port{
		ID: id, NetworkID: netID, Host: host,
		MAC: net.HardwareAddr{0x02, 0x5b, 0, 0, netID[len(netID)-1], mac},
		IPs: []netip.Addr{netip.MustParseAddr(ip)},
	}
}

func newTunnelLab(t *testing.T) *tunnelLab {
	return newTunnelLabOn(t, nettest.NewLabWith(t, 3, "ovs"), []network.Port{
		ep("v1", "vx1", "h1", 10, "10.1.1.10"), ep("v2", "vx1", "h2", 11, "10.1.1.11"), ep("v3", "vx1", "h3", 12, "10.1.1.12"),
		ep("g1", "gr2", "h1", 10, "10.1.1.10"), ep("g2", "gr2", "h2", 11, "10.1.1.11"), ep("g3", "gr2", "h3", 13, "10.1.1.13"),
	})
}

// newTunnelLabOn is a tunnelLab of the given hosts and ports.
func newTunnelLabOn(t *testing.T, lab *nettest.Lab, ports []network.Port) *tunnelLab {
	l := &tunnelLab{lab: lab, ports: ports}
	l.nets = []network.Network{
		{ID: "vx1", VNI: 5001, Type: network.TypeVXLAN},
		{ID: "gr2", VNI: 5002, Type: network.TypeGRE},
	}
	for _, h := range l.lab.Hosts {
		l.agents = append(l.agents, nettest.NewAgent(t, h))
	}
	return l
}

func (l *tunnelLab) state(h *nettest.Host) network.HostState {
	st := l.lab.HostState(h, l.nets, l.ports)
	for _, p := range l.ports {
		if p.Host == h.Name {
			st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: p.ID, IfName: "eth0",
				Addr: netip.PrefixFrom(p.IPs[0], 24)})
		}
	}
	return st
}

func (l *tunnelLab) setAll(t *testing.T) {
	for i, a := range l.agents {
		a.Set(t, l.state(l.lab.Hosts[i]))
	}
}

func (l *tunnelLab) ns(portID string) string {
	for _, p := range l.ports {
		if p.ID == portID {
			return l.lab.Prefix + p.Host + "-" + network.EndpointNSPart + p.ID
		}
	}
	return ""
}

func pingOK(ctx context.Context, ns, ip string) bool {
	_, recv, _ := nettest.Ping(ctx, ns, ip, 3, 200*time.Millisecond)
	return recv > 0
}

// TestVXLANAndGRETunnels: endpoints on three OVS hosts reach each other over
// VXLAN and over GRE tunnel ports; the two networks share a CIDR and stay
// apart; the bridge is fail_mode=secure, has one tunnel port per remote
// host and type, and no flow uses NORMAL.
func TestVXLANAndGRETunnels(t *testing.T) {
	l := newTunnelLab(t)
	start := time.Now()
	l.setAll(t)
	t.Logf("three OVS hosts converged in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range []struct {
		from, ip string
		want     bool
	}{
		{"v1", "10.1.1.11", true}, {"v1", "10.1.1.12", true}, {"v3", "10.1.1.11", true},
		{"g1", "10.1.1.11", true}, {"g1", "10.1.1.13", true}, {"g3", "10.1.1.11", true},
		{"v1", "10.1.1.13", false}, // g3's address: another network
		{"g1", "10.1.1.12", false}, // v3's address
	} {
		if got := pingOK(ctx, l.ns(c.from), c.ip); got != c.want {
			t.Errorf("%s -> %s: answered=%v, want %v", c.from, c.ip, got, c.want)
		}
	}
	h1 := l.lab.Hosts[0]
	out, err := h1.OVS.Vsctl(ctx, "list-ports", ovs.DefaultBridge)
	if err != nil {
		t.Fatal(err)
	}
	ports := strings.Fields(out)
	// The endpoints (no security groups) are ports of the integration
	// bridge itself: no hybrid bridge, no veth to one.
	for _, want := range []string{network.EndpointVethName("v1"), network.EndpointVethName("g1"),
		"stv-ac1e0002", "stv-ac1e0003", "stg-ac1e0002", "stg-ac1e0003"} {
		if !contains(ports, want) {
			t.Errorf("h1 integration bridge ports %v: no %s", ports, want)
		}
	}
	for _, p := range ports {
		if strings.HasPrefix(p, ovs.PatchOVSPrefix) {
			t.Errorf("h1 has a hybrid bridge port %s, but no port has security groups", p)
		}
	}
	for _, c := range []struct{ port, tag string }{{network.EndpointVethName("v1"), "1"}, {network.EndpointVethName("g1"), "2"}} {
		if got, err := h1.OVS.Vsctl(ctx, "get", "port", c.port, "tag"); err != nil || strings.TrimSpace(got) != c.tag {
			t.Errorf("port %s: tag %q (%v), want its network's local VLAN %s", c.port, got, err, c.tag)
		}
	}
	for _, col := range []struct{ col, want string }{{"fail_mode", "secure"}, {"datapath_type", "netdev"}} {
		got, err := h1.OVS.Vsctl(ctx, "get", "bridge", ovs.DefaultBridge, col.col)
		if err != nil || strings.TrimSpace(got) != col.want {
			t.Errorf("bridge %s = %q (%v), want %s", col.col, got, err, col.want)
		}
	}
	flows, err := l.agents[0].OVS.DumpFlows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ToUpper(flows), "NORMAL") {
		t.Errorf("a flow uses NORMAL:\n%s", flows)
	}
	// ARP for remote ports is answered on the host: h1's endpoints asked
	// for v2, v3, g2 and g3 above, and the ARP table's answers count them.
	arp, err := h1.OVS.Ofctl(ctx, "dump-flows", h1.OVS.Mgmt(ovs.DefaultBridge), fmt.Sprintf("table=%d,arp", ovs.TableARP))
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, m := range regexp.MustCompile(`n_packets=(\d+),.*arp_tpa=`).FindAllStringSubmatch(arp, -1) {
		n, _ := strconv.Atoi(m[1])
		answered += n
	}
	if answered == 0 {
		t.Errorf("no ARP request was answered by h1's ARP flows:\n%s", arp)
	}
	t.Logf("h1 flows:\n%s", flows)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestAgentRestartKeepsFlows: a fresh driver (an agent restart) with the
// same state changes no link, no OVSDB row and no flow: the dump is the
// same byte for byte, cookies included.
func TestAgentRestartKeepsFlows(t *testing.T) {
	l := newTunnelLab(t)
	l.setAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := make([]string, len(l.agents))
	for i, a := range l.agents {
		f, err := a.OVS.DumpFlows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before[i] = f
	}
	for i, h := range l.lab.Hosts {
		fresh := nettest.NewAgent(t, h)
		fresh.Set(t, l.state(h))
		if n := fresh.OVS.Changes(); n != 0 {
			t.Errorf("host %s: restart made %d changes, want 0", h.Name, n)
		}
		after, err := fresh.OVS.DumpFlows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != before[i] {
			t.Errorf("host %s: flows changed across the restart:\nbefore:\n%s\nafter:\n%s", h.Name, before[i], after)
		}
		checkCounts(ctx, t, h, fresh.OVS)
		l.agents[i] = fresh
	}
	if !pingOK(ctx, l.ns("g1"), "10.1.1.13") {
		t.Error("g1 -> g3 over GRE after the restart: no answer")
	}
}

// checkCounts: the driver's own OpenFlow aggregate requests count what
// ovs-ofctl dump-aggregate counts, for every flow, the generation's and
// the canary.
func checkCounts(ctx context.Context, t *testing.T, h *nettest.Host, d *ovs.Driver) {
	t.Helper()
	cookie := fmt.Sprintf("cookie=0x%x/-1", ovs.Cookie(d.Generation()))
	for _, c := range []struct {
		table uint8
		match string
	}{{255, cookie}, {ovs.TableCanary, fmt.Sprintf("table=%d,%s", ovs.TableCanary, cookie)}} {
		all, current, err := d.CountFlows(ctx, c.table)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []struct {
			match string
			got   int
		}{{"", all}, {c.match, current}} {
			args := []string{"dump-aggregate", h.OVS.Mgmt(ovs.DefaultBridge)}
			if w.match != "" {
				args = append(args, w.match)
			}
			out, err := h.OVS.Ofctl(ctx, args...)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("flow_count=%d", w.got); !strings.Contains(out, want) {
				t.Errorf("host %s: the driver counts %d flows matching %q, ovs-ofctl: %s", h.Name, w.got, w.match, out)
			}
		}
		if c.table == ovs.TableCanary && current != 1 {
			t.Errorf("host %s: %d canary flows of the generation, want 1", h.Name, current)
		}
	}
}

// TestMembershipChangesTunnels: a host that leaves the membership loses
// its tunnel ports on the others, and gets them back when it returns.
func TestMembershipChangesTunnels(t *testing.T) {
	l := newTunnelLab(t)
	l.setAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h1 := l.lab.Hosts[0]
	st := l.state(h1)
	delete(st.RemoteVTEPs, "h3")
	l.agents[0].Set(t, st)
	out, _ := h1.OVS.Vsctl(ctx, "list-ports", ovs.DefaultBridge)
	if strings.Contains(out, "ac1e0003") {
		t.Errorf("h3 left, but h1 still has its tunnels: %s", out)
	}
	if pingOK(ctx, l.ns("v1"), "10.1.1.12") {
		t.Error("v1 still reaches v3 after h3 left the membership")
	}
	l.agents[0].Set(t, l.state(h1))
	// The new tunnel port needs its ofport and v1 a fresh ARP answer after
	// the failed pings: wait for the path to come back, within ctx.
	back := false
	for !back && ctx.Err() == nil {
		back = pingOK(ctx, l.ns("v1"), "10.1.1.12")
	}
	if !back {
		t.Error("v1 does not reach v3 after h3 came back")
	}
	fmt.Fprint(nopWriter{}, out)
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// TestOVSRestartKeepsTraffic: ovs-vswitchd on h1 is SIGKILLed and started
// again (with flow-restore-wait) under a 20/s ping over VXLAN; the canary
// tells the driver, which puts the flows back as a new generation and
// clears flow-restore-wait. The loss is printed; traffic must come back,
// and no flow of the old generation is left.
func TestOVSRestartKeepsTraffic(t *testing.T) {
	l := newTunnelLab(t)
	l.setAll(t)
	h1, a1 := l.lab.Hosts[0], l.agents[0]
	oldGen := a1.OVS.Generation()
	type result struct{ sent, recv int }
	done := make(chan result, 1)
	go func() {
		s, r, _ := nettest.Ping(context.Background(), l.ns("v1"), "10.1.1.11", 160, 50*time.Millisecond)
		done <- result{s, r}
	}()
	time.Sleep(time.Second)
	killed := time.Now()
	h1.OVS.RestartVswitchd(t)
	for a1.OVS.Restores() == 0 && time.Since(killed) < 30*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	if a1.OVS.Restores() == 0 {
		t.Fatal("the driver did not notice the ovs-vswitchd restart within 30 s")
	}
	t.Logf("ovs-vswitchd killed and restarted; flows restored %v later as generation %d (was %d)",
		time.Since(killed).Round(time.Millisecond), a1.OVS.Generation(), oldGen)
	r := <-done
	loss := 100 * float64(r.sent-r.recv) / float64(max(r.sent, 1))
	t.Logf("ping v1 -> v2 at 20/s across the ovs-vswitchd restart: %d sent, %d received, %.1f%% loss", r.sent, r.recv, loss)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !pingOK(ctx, l.ns("v1"), "10.1.1.11") || !pingOK(ctx, l.ns("g1"), "10.1.1.13") {
		t.Error("no traffic after the restart")
	}
	flows, err := a1.OVS.DumpFlows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("cookie=0x%x,", ovs.Cookie(a1.OVS.Generation()))
	for _, f := range strings.Split(strings.TrimSpace(flows), "\n") {
		if strings.Contains(f, "table=") && !strings.Contains(f, want) {
			t.Errorf("flow not of the current generation (%s): %s", want, f)
		}
	}
	if a1.OVS.Generation() == oldGen {
		t.Errorf("generation still %d after the restore", oldGen)
	}
	if out, _ := h1.OVS.Vsctl(ctx, "get", "Open_vSwitch", ".", "other_config"); strings.Contains(out, "flow-restore-wait") {
		t.Errorf("flow-restore-wait still set: %s", out)
	}
}

// TestOVSDBRestartReconnects: ovsdb-server is SIGKILLed and started again
// on its database; the driver's libovsdb client reconnects and the next
// change (a new port, so a new flow set) goes through.
func TestOVSDBRestartReconnects(t *testing.T) {
	l := newTunnelLab(t)
	l.setAll(t)
	h1, a1 := l.lab.Hosts[0], l.agents[0]
	gen := a1.OVS.Generation()
	h1.OVS.Kill(t, "ovsdb-server")
	h1.OVS.StartDB(t)
	l.ports = append(l.ports, ep("v4", "vx1", "h2", 14, "10.1.1.14"))
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	for time.Since(start) < 30*time.Second {
		if err = a1.OVS.Set(ctx, l.state(h1)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no change through a restarted ovsdb-server within 30 s: %v", err)
	}
	t.Logf("ovsdb-server restarted; the next change went through %v later", time.Since(start).Round(time.Millisecond))
	if a1.OVS.Generation() == gen {
		t.Errorf("a new remote port, but the flow generation stayed %d", gen)
	}
	flows, err := a1.OVS.DumpFlows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flows, "dl_dst=02:5b:00:00:31:0e") {
		t.Errorf("no unicast flow for the new port v4:\n%s", flows)
	}
}

func (l *tunnelLab) port(id string) network.Port {
	for _, p := range l.ports {
		if p.ID == id {
			return p
		}
	}
	panic("no port " + id)
}
