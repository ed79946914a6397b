package router_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

func allow(port int) netspec.FirewallRule {
	return netspec.FirewallRule{Protocol: netspec.ProtoTCP, DstPorts: &netspec.PortRange{From: port, To: port}, Action: netspec.ActionAllow}
}

func deny(port int) netspec.FirewallRule {
	return netspec.FirewallRule{Protocol: netspec.ProtoTCP, DstPorts: &netspec.PortRange{From: port, To: port}, Action: netspec.ActionDeny}
}

// fipLab: project A with a1 (no floating IP) and a2 (floating IP
// 203.0.113.50), router ra with gateway 203.0.113.10 and SNAT, and an
// ingress policy on its interface allowing TCP 8080 only.
func fipLab(t *testing.T) (*rlab, *conn) {
	requireRoot(t)
	l := newRLab(t, map[string]string{"a1": "10.1.1.10", "a2": "10.1.1.11"})
	r := newRouter("ra", "proj-a", 10)
	r.FloatingIPs = []netspec.FloatingIP{{IP: adr("203.0.113.50"), FixedIP: adr("10.1.1.11"), PortID: "a2"}}
	r.Firewall = &netspec.FirewallGroup{ID: "fw", Ports: []string{"if-proj-a"},
		Ingress: &netspec.FirewallPolicy{ID: "in", Rules: []netspec.FirewallRule{allow(8080)}}}
	l.routers = []netspec.Router{r}
	serve(t, l.ext, ":9000")
	serve(t, l.eps["a2"], ":8080")
	serve(t, l.eps["a2"], ":8081")
	return l, nil
}

// TestRouterSNATAndFloatingIP: an endpoint without a floating IP is seen
// outside as the router's gateway IP, one with a floating IP as that IP;
// the external endpoint reaches the floating IP on the allowed port only.
func TestRouterSNATAndFloatingIP(t *testing.T) {
	l, _ := fipLab(t)
	d := l.driver(t)
	l.set(t, d)
	if got := seenAs(t, l.eps["a1"]); got != "203.0.113.10" {
		t.Errorf("a1 (no floating ip) seen as %s, want the gateway ip 203.0.113.10", got)
	}
	if got := seenAs(t, l.eps["a2"]); got != "203.0.113.50" {
		t.Errorf("a2 seen as %s, want its floating ip 203.0.113.50", got)
	}
	c, src, err := dial(l.ext, "203.0.113.50:8080")
	if err != nil {
		t.Fatalf("external -> floating ip, allowed port 8080: %v", err)
	}
	c.c.Close()
	if src != extIP {
		t.Errorf("a2 saw the external endpoint as %s, want %s", src, extIP)
	}
	if c, _, err := dial(l.ext, "203.0.113.50:8081"); err == nil {
		c.c.Close()
		t.Error("external -> floating ip, port 8081 (not allowed): connected")
	}
	// Disassociate: a2 goes out as the gateway IP again, the FIP is gone.
	l.routers[0].FloatingIPs = nil
	l.set(t, d)
	if got := seenAs(t, l.eps["a2"]); got != "203.0.113.10" {
		t.Errorf("a2 after disassociation seen as %s, want 203.0.113.10", got)
	}
	if c, _, err := dial(l.ext, "203.0.113.50:8080"); err == nil {
		c.c.Close()
		t.Error("disassociated floating ip still reachable")
	}
}

// TestTwoProjectsSameCIDRTwoRouters: projects A and B both use
// 10.1.1.0/24 behind their own routers on one host; each reaches the
// outside as its own gateway IP and neither reaches the other.
func TestTwoProjectsSameCIDRTwoRouters(t *testing.T) {
	requireRoot(t)
	for _, drv := range nettest.Drivers {
		t.Run(drv, func(t *testing.T) { testTwoProjectsSameCIDRTwoRouters(t, drv) })
	}
}

func testTwoProjectsSameCIDRTwoRouters(t *testing.T, drv string) {
	l := newRLabOn(t, drv, map[string]string{"a1": "10.1.1.10", "b1": "10.1.1.10", "b2": "10.1.1.20"})
	l.routers = []netspec.Router{newRouter("ra", "proj-a", 10), newRouter("rb", "proj-b", 11)}
	serve(t, l.ext, ":9000")
	serve(t, l.eps["b2"], ":7000")
	d := l.driver(t)
	l.set(t, d)
	for ep, want := range map[string]string{"a1": "203.0.113.10", "b1": "203.0.113.11", "b2": "203.0.113.11"} {
		if got := seenAs(t, l.eps[ep]); got != want {
			t.Errorf("%s seen as %s, want %s", ep, got, want)
		}
	}
	if c, _, err := dial(l.eps["a1"], "10.1.1.20:7000"); err == nil {
		c.c.Close()
		t.Error("a1 (project A) reached b2 (project B) at 10.1.1.20")
	}
	if c, _, err := dial(l.eps["b1"], "10.1.1.20:7000"); err != nil {
		t.Errorf("b1 -> b2 in the same project: %v", err)
	} else {
		c.c.Close()
	}

	// Router rb goes: its namespace goes with it; ra's stays, and so does
	// a namespace under the prefix that this driver did not make.
	foreign := d.Namespace("foreign")
	must(t, netnsutil.Create(foreign))
	t.Cleanup(func() { netnsutil.Delete(foreign) })
	l.routers = l.routers[:1]
	l.set(t, d)
	if netnsutil.Exists(d.Namespace("rb")) {
		t.Errorf("namespace %q of removed router rb remains", d.Namespace("rb"))
	}
	for _, ns := range []string{d.Namespace("ra"), foreign} {
		if !netnsutil.Exists(ns) {
			t.Errorf("namespace %q is gone", ns)
		}
	}
}

// TestFirewallOrderAndExistingConnections: a deny before an allow wins; a
// policy with Existing=false leaves an open connection alone, one with
// Existing=true stops it. A one-rule change is one verdict map element
// changed (the allow after the deny is shadowed, so the element for 8080
// now drops), no rule.
func TestFirewallOrderAndExistingConnections(t *testing.T) {
	l, _ := fipLab(t)
	d := l.driver(t)
	l.set(t, d)
	open, _, err := dial(l.ext, "203.0.113.50:8080")
	if err != nil {
		t.Fatalf("allowed connection: %v", err)
	}
	defer open.c.Close()
	must(t, open.echo("before"))

	in := l.routers[0].Firewall.Ingress
	in.Rules = []netspec.FirewallRule{deny(8080), allow(8080)}
	l.set(t, d)
	if st := d.LastSync("ra"); st.RulesAdded != 0 || st.RulesDeleted != 0 || st.Objects != 0 || st.ElemsAdded != 1 || st.ElemsDeleted != 1 {
		t.Errorf("inserting one rule: %+v, want exactly one element replaced", st)
	}
	if c, _, err := dial(l.ext, "203.0.113.50:8080"); err == nil {
		c.c.Close()
		t.Error("deny before allow: new connection to 8080 got through")
	}
	if err := open.echo("existing=false"); err != nil {
		t.Errorf("policy with Existing=false: open connection stopped: %v", err)
	}

	in.Existing = true
	l.set(t, d)
	if err := open.echo("existing=true"); err == nil {
		t.Error("policy with Existing=true: open connection still passes after deny")
	}

	in.Rules = []netspec.FirewallRule{allow(8080), deny(8080)}
	l.set(t, d)
	if c, _, err := dial(l.ext, "203.0.113.50:8080"); err != nil {
		t.Errorf("allow before deny: %v", err)
	} else {
		c.c.Close()
	}
}

// TestRouterRestartKeepsConnections: the driver is closed (the agent
// stops) and a fresh one (a restarted agent: new objects, no memory) with
// the same plan makes zero changes, the table dump is byte-for-byte the
// same, open TCP connections through SNAT and through a floating IP keep
// passing data, and a 20/s ping through SNAT running from before the stop
// until after the new driver has converged loses nothing.
func TestRouterRestartKeepsConnections(t *testing.T) {
	l, _ := fipLab(t)
	d := l.driver(t)
	l.set(t, d)
	out, _, err := dial(l.eps["a1"], extIP+":9000")
	must(t, err)
	defer out.c.Close()
	in, _, err := dial(l.ext, "203.0.113.50:8080")
	must(t, err)
	defer in.c.Close()
	must(t, out.echo("before restart"))
	before := l.dump(t, d, "ra")
	ping := netprobe.StartWindow(l.eps["a1"], extIP)
	time.Sleep(time.Second)
	stopped := time.Now()
	must(t, d.Close())

	d2 := l.driver(t)
	l.set(t, d2)
	converged := time.Now()
	time.Sleep(time.Second)
	ping.Stop()
	if err := ping.Covers(stopped, converged); err != nil {
		t.Errorf("ping through SNAT across the restart: %v", err)
	}
	t.Logf("restart re-converged in %s; ping %d/%d answered from %s before the stop to %s after",
		converged.Sub(stopped).Round(time.Millisecond), ping.Recv, ping.Sent,
		stopped.Sub(ping.Begin).Round(time.Millisecond), ping.End.Sub(converged).Round(time.Millisecond))
	if n := d2.Changes(); n != 0 {
		t.Errorf("restarted driver made %d changes, want 0 (last sync %+v)", n, d2.LastSync("ra"))
	}
	if after := l.dump(t, d2, "ra"); after != before {
		t.Errorf("ruleset changed across restart:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for name, c := range map[string]*conn{"snat": out, "floating ip": in} {
		if err := c.echo("after restart"); err != nil {
			t.Errorf("%s connection after restart: %v", name, err)
		}
	}
}

// TestBadInputChangesNothing: invalid plans are refused with an error
// naming the field, and the router's table stays byte-for-byte the same.
func TestBadInputChangesNothing(t *testing.T) {
	l, _ := fipLab(t)
	d := l.driver(t)
	l.set(t, d)
	before := l.dump(t, d, "ra")
	good := l.routers[0]
	bad := map[string]func(r *netspec.Router){
		"overlapping interfaces": func(r *netspec.Router) {
			r.Interfaces = append(r.Interfaces, netspec.Interface{ID: "if2", NetworkID: "proj-b", Addr: pfx("10.1.0.1/16")})
		},
		"invalid cidr": func(r *netspec.Router) {
			r.Firewall.Ingress.Rules = append(r.Firewall.Ingress.Rules, netspec.FirewallRule{Source: "10.0.0.1/33", Action: "deny"})
		},
		"port 0": func(r *netspec.Router) {
			r.Firewall.Ingress.Rules = append(r.Firewall.Ingress.Rules, netspec.FirewallRule{Protocol: "tcp", DstPorts: &netspec.PortRange{From: 0, To: 10}, Action: "deny"})
		},
		"port above 65535": func(r *netspec.Router) {
			r.Firewall.Ingress.Rules = append(r.Firewall.Ingress.Rules, netspec.FirewallRule{Protocol: "udp", DstPorts: &netspec.PortRange{From: 1, To: 65536}, Action: "deny"})
		},
		"floating ip taken": func(r *netspec.Router) {
			r.FloatingIPs = append(r.FloatingIPs, netspec.FloatingIP{IP: adr("203.0.113.50"), FixedIP: adr("10.1.1.10")})
		},
	}
	for name, change := range bad {
		r := good
		r.Firewall = &netspec.FirewallGroup{ID: "fw", Ports: good.Firewall.Ports,
			Ingress: &netspec.FirewallPolicy{ID: "in", Rules: append([]netspec.FirewallRule(nil), good.Firewall.Ingress.Rules...)}}
		r.Interfaces = append([]netspec.Interface(nil), good.Interfaces...)
		r.FloatingIPs = append([]netspec.FloatingIP(nil), good.FloatingIPs...)
		change(&r)
		l.routers = []netspec.Router{r}
		err := d.Set(context.Background(), l.state())
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if !strings.Contains(err.Error(), `router "ra"`) {
			t.Errorf("%s: error does not name the router: %v", name, err)
		}
	}
	if after := l.dump(t, d, "ra"); after != before {
		t.Errorf("bad input changed the ruleset:\n%s", after)
	}
}

// TestFailedBatchKeepsRuleset: when the kernel refuses the batch, Set
// reports it and the previous ruleset stays in force, entirely.
func TestFailedBatchKeepsRuleset(t *testing.T) {
	l, _ := fipLab(t)
	d := l.driver(t)
	l.set(t, d)
	before := l.dump(t, d, "ra")
	l.routers[0].Firewall.Ingress.Rules = []netspec.FirewallRule{deny(22), allow(8080)}
	d.SetBeforeFlush(func(c *nftables.Conn) {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "strata_no_such_table"})
	})
	err := d.Set(context.Background(), l.state())
	if err == nil || !strings.Contains(err.Error(), "previous ruleset kept") {
		t.Fatalf("got %v, want a refused batch", err)
	}
	t.Logf("reported: %v", err)
	if after := l.dump(t, d, "ra"); after != before {
		t.Errorf("failed batch changed the ruleset:\n%s", after)
	}
	d.SetBeforeFlush(nil)
	l.set(t, d)
	if after := l.dump(t, d, "ra"); !strings.Contains(after, "tcp . 22 : drop") {
		t.Errorf("retry did not apply the new rule:\n%s", after)
	}
}
