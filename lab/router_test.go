package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// externalNet is the provider network the router tests reach the outside
// through (physnet1 is every lab host's ext0).
const externalNet = `
kind: externalnetwork
name: ext
spec:
  physical_network: physnet1
  cidr: 203.0.113.0/24
  gateway: 203.0.113.1
  allocation_pools: [{start: 203.0.113.10, end: 203.0.113.99}]
`

const routerManifest = externalNet + `---
kind: project
name: r
---
kind: network
project: r
name: net
---
kind: subnet
project: r
name: sub
spec: {network: net, cidr: 10.30.0.0/24}
---
kind: securitygroup
project: r
name: web
spec:
  rules:
  - {direction: egress}
  - {direction: ingress, protocol: tcp, ports: "8080", remote_cidr: 0.0.0.0/0}
---
kind: port
project: r
name: p1
spec: {network: net, host: h2, owner: endpoint}
---
kind: port
project: r
name: p2
spec: {network: net, host: h3, owner: endpoint, security_groups: [web]}
---
kind: router
project: r
name: rt
spec:
  external_network: ext
  interfaces: [{subnet: sub}]
  host: h1
---
kind: floatingip
project: r
name: fip
spec: {external_network: ext, port: p2}
---
kind: firewallgroup
project: r
name: fw
spec:
  router: rt
  egress:
    rules:
    - {protocol: tcp, destination_ports: "9001", action: reject}
    - {action: allow}
`

// listenIn opens a TCP listener inside namespace ns.
func listenIn(t testing.TB, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := netnsutil.Do(ns, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialIn connects from namespace ns.
func dialIn(ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := netnsutil.Do(ns, func() (err error) { c, err = net.DialTimeout("tcp4", addr, 2*time.Second); return err })
	return c, err
}

// seenAs connects from ns to the external listener and returns the source
// address the outside saw.
func seenAs(t testing.TB, ns string, ln net.Listener) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- "accept: " + err.Error()
			return
		}
		got <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	}()
	c, err := dialIn(ns, ln.Addr().String())
	if err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), ns, err)
	}
	defer c.Close()
	select {
	case s := <-got:
		return s
	case <-time.After(testenv.Scale(10 * time.Second)):
		t.Fatal("the outside saw no connection")
	}
	return ""
}

func getSpec[T any](t testing.TB, l *Lab, path string) T {
	t.Helper()
	c, _ := l.Client()
	var r api.Resource
	if err := c.Do(context.Background(), http.MethodGet, path, nil, &r); err != nil {
		t.Fatal(err)
	}
	var s T
	json.Unmarshal(r.Spec, &s)
	return s
}

func nftDump(t testing.TB, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "strata_router").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list in %s: %v %s", ns, err, out)
	}
	return string(out)
}

// TestLabRouterSNATAndFloatingIP: with real agents, an endpoint without a
// floating IP reaches the outside as the router's gateway IP, one with a
// floating IP as that IP; the outside reaches the floating IP on the port
// its security group allows and not on another; the router's firewall
// rejects what its egress policy says, before the allow that follows; and
// a SIGKILL and restart of the router host's agent keeps open connections
// and leaves the ruleset byte for byte as it was.
func TestLabRouterSNATAndFloatingIP(t *testing.T) {
	l := upLab(t, 3, 10000, routerManifest)
	ctx := context.Background()

	rt := getSpec[api.RouterSpec](t, l, "/v1/projects/r/routers/rt")
	fip := getSpec[api.FloatingIPSpec](t, l, "/v1/projects/r/floatingips/fip")
	ns1, ns2 := l.EndpointNamespace(2, "r", "p1"), l.EndpointNamespace(3, "r", "p2")
	for _, ns := range []string{ns1, ns2} {
		if ip, err := nettest.DHCP(ctx, t, ns, "eth0"); err != nil || ip == "" {
			t.Fatalf("DHCP in %s: %q %v", ns, ip, err)
		}
	}
	ext := l.ExternalNamespace()
	out := listenIn(t, ext, "203.0.113.1:9000")
	if got := seenAs(t, ns1, out); got != rt.ExternalIP {
		t.Fatalf("p1 (no floating IP) seen as %s, want the router's gateway IP %s", got, rt.ExternalIP)
	}
	if got := seenAs(t, ns2, out); got != fip.IP {
		t.Fatalf("p2 seen as %s, want its floating IP %s", got, fip.IP)
	}
	t.Logf("outside sees p1 as the router gateway %s and p2 as its floating IP %s", rt.ExternalIP, fip.IP)

	listenIn(t, ns2, "0.0.0.0:8080")
	listenIn(t, ns2, "0.0.0.0:8081")
	if c, err := dialIn(ext, fip.IP+":8080"); err != nil {
		t.Fatalf("outside to floating IP port 8080 (allowed): %v", err)
	} else {
		c.Close()
	}
	if c, err := dialIn(ext, fip.IP+":8081"); err == nil {
		c.Close()
		t.Fatal("outside reached floating IP port 8081, which no security group allows")
	}
	listenIn(t, ext, "203.0.113.1:9001")
	_, err := dialIn(ns1, "203.0.113.1:9001")
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("egress to 9001 should be rejected by the firewall (reject before allow), got %v", err)
	}
	t.Logf("floating IP: 8080 allowed, 8081 blocked by the security group; egress 9001 rejected by the firewall's first rule")

	t.Run("agent restart keeps connections and ruleset", func(t *testing.T) {
		rns := routerNamespace(t, l, 1)
		conn := openEcho(t, ns1, out)
		before := nftDump(t, rns)
		if err := l.StopAgent(1, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		echo(t, conn, "while the agent is down")
		restart := time.Now()
		if err := l.StartAgent(1); err != nil {
			t.Fatal(err)
		}
		waitReconciled(t, l, "h1", restart)
		waitCLI(t, l, 30*time.Second, "router host back", AllAliveAndConverged(3))
		echo(t, conn, "after the restart")
		if after := nftDump(t, rns); after != before {
			t.Fatalf("router ruleset changed across the restart:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		t.Logf("SNAT connection kept passing data across a SIGKILL and restart of h1's agent; ruleset (%d bytes) unchanged", len(before))
	})
}

func routerNamespace(t testing.TB, l *Lab, host int) string {
	t.Helper()
	m, _ := filepath.Glob("/run/netns/" + l.NetNSPrefix(host) + "r-*")
	if len(m) != 1 {
		t.Fatalf("router namespaces on h%d: %v", host, m)
	}
	return filepath.Base(m[0])
}

// openEcho connects from ns to the listener, whose side echoes lines.
func openEcho(t testing.TB, ns string, ln net.Listener) net.Conn {
	t.Helper()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			fmt.Fprint(c, line)
		}
	}()
	c, err := dialIn(ns, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	echo(t, c, "hello")
	return c
}

func echo(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(testenv.Scale(5 * time.Second)))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		t.Fatalf("send %q: %v", msg, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != msg {
		t.Fatalf("echo of %q: %q %v", msg, line, err)
	}
}
