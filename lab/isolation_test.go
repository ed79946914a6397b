package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/pkg/api"
)

// projectA has a router on h1 that h1 will refuse: the host side of its
// leg into the subnet is taken by a link Strata did not make.
const projectA = `
kind: project
name: a
---
kind: network
project: a
name: net
---
kind: subnet
project: a
name: sub
spec: {network: net, cidr: 10.40.0.0/24}
---
kind: port
project: a
name: a1
spec: {network: net, host: h1, owner: endpoint}
---
kind: router
project: a
name: rt
spec:
  interfaces: [{subnet: sub}]
  host: h1
`

// projectB's group lets in TCP 8080 only, and lets nothing out but
// replies: its ports are filtered both ways.
const projectB = `
kind: project
name: b
---
kind: network
project: b
name: net
---
kind: subnet
project: b
name: sub
spec: {network: net, cidr: 10.41.0.0/24}
---
kind: securitygroup
project: b
name: web
spec:
  rules:
  - {direction: ingress, protocol: tcp, ports: "8080", remote_cidr: 0.0.0.0/0}
---
kind: port
project: b
name: srv
spec: {network: net, host: h1, owner: endpoint, security_groups: [web]}
---
kind: port
project: b
name: cli
spec: {network: net, host: h2, owner: endpoint}
`

// plantLegConflict puts a link Strata did not make where h1's agent wants
// the host side of router a/rt's leg into a/sub, and returns its name.
func plantLegConflict(t testing.TB, l *Lab) string {
	t.Helper()
	leg := router.HostInternalLeg(planmap.PortID("a", "rt"), planmap.PortID("a", api.RouterPortName("rt", "sub")))
	if err := ip("-n", l.Namespace(1), "link", "add", leg, "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ip("-n", l.Namespace(1), "link", "del", leg) })
	return leg
}

// resourceStatus reads a resource's per-host status through the API.
func resourceStatus(t testing.TB, l *Lab, path string) *api.ResourceStatus {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	var r api.Resource
	if err := c.Do(context.Background(), http.MethodGet, path, nil, &r); err != nil {
		t.Fatal(err)
	}
	return r.Status
}

// waitUntil polls ok every 100 ms until it holds, and says how long that took.
func waitUntil(t testing.TB, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if ok() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, limit)
	return 0
}

func serveTCP(t testing.TB, ns string, ports ...int) {
	t.Helper()
	for _, p := range ports {
		ln := listenIn(t, ns, fmt.Sprintf("0.0.0.0:%d", p))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

func reaches(ns, addr string) bool {
	c, err := dialIn(ns, addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

// bringUpB applies project B while h1 refuses a/rt, and checks that B's
// port on h1 is filtered as its group says: 8080 in, not 8081; nothing out.
func bringUpB(t *testing.T, l *Lab) (srvNS, cliNS, srvIP string) {
	ctx := context.Background()
	start := time.Now()
	applyManifest(t, l, projectB)
	eps := endpoints(t, l, endpoint{project: "b", name: "srv", host: 1}, endpoint{project: "b", name: "cli", host: 2})
	srvNS, cliNS, srvIP = l.EndpointNamespace(1, "b", "srv"), l.EndpointNamespace(2, "b", "cli"), eps[0].ip
	waitUntil(t, 60*time.Second, "b's endpoints plugged", func() bool { return nsExists(srvNS) && nsExists(cliNS) })
	for _, e := range eps {
		ns := l.EndpointNamespace(e.host, e.project, e.name)
		if got, err := nettest.DHCP(ctx, t, ns, "eth0"); err != nil || got != e.ip {
			t.Fatalf("%s: DHCP gave %q (%v), want %s", e.label(), got, err, e.ip)
		}
	}
	serveTCP(t, srvNS, 8080, 8081)
	took := waitUntil(t, 30*time.Second, "b/cli reaches b/srv:8080", func() bool { return reaches(cliNS, srvIP+":8080") })
	t.Logf("project B applied and reachable on 8080 %s after its apply (%s waiting on traffic) while h1 refuses a/rt",
		time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
	if reaches(cliNS, srvIP+":8081") {
		t.Fatal("b/cli reached b/srv:8081, which group web does not let in")
	}
	serveTCP(t, cliNS, 9000)
	if reaches(srvNS, eps[1].ip+":9000") {
		t.Fatal("b/srv opened a connection out, which group web does not allow")
	}
	return srvNS, cliNS, srvIP
}

// TestLabBadResourceIsolated: h1 refuses project A's router (a link that
// is not Strata's sits where its leg goes, a cause the API cannot see).
// Meanwhile project B adds a port on h1 with a security group, then a
// rule: both reach h1's kernel, A's router carries the error in its
// status, and the error clears once the cause is gone.
func TestLabBadResourceIsolated(t *testing.T) {
	l := testLab(t, 2, 10000)
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	leg := plantLegConflict(t, l)
	applyManifest(t, l, projectA)
	var st *api.ResourceStatus
	waitUntil(t, 30*time.Second, "a/rt reports h1's error", func() bool {
		st = resourceStatus(t, l, "/v1/projects/a/routers/rt")
		return st != nil && st.State == "error"
	})
	if st.Host != "h1" || !strings.Contains(st.Message, leg) || !strings.Contains(st.Message, "not Strata's") {
		t.Fatalf("a/rt status %+v, want h1's error naming link %s", st, leg)
	}
	t.Logf("a/rt on h1: %s: %s", st.State, st.Message)

	_, cliNS, srvIP := bringUpB(t, l)

	// B opens 8081: one more rule reaches the kernel with A still refused.
	start := time.Now()
	applyManifest(t, l, strings.Replace(projectB, `- {direction: ingress, protocol: tcp, ports: "8080", remote_cidr: 0.0.0.0/0}`,
		`- {direction: ingress, protocol: tcp, ports: "8080", remote_cidr: 0.0.0.0/0}
  - {direction: ingress, protocol: tcp, ports: "8081", remote_cidr: 0.0.0.0/0}`, 1))
	waitUntil(t, 30*time.Second, "b's new rule lets 8081 in", func() bool { return reaches(cliNS, srvIP+":8081") })
	t.Logf("b's new rule in force on h1 %s after its apply", time.Since(start).Round(time.Millisecond))
	if st := resourceStatus(t, l, "/v1/projects/a/routers/rt"); st == nil || st.State != "error" {
		t.Fatalf("a/rt status %+v while its cause is still there", st)
	}

	// The cause goes: the router applies and its error clears.
	if err := ip("-n", l.Namespace(1), "link", "del", leg); err != nil {
		t.Fatal(err)
	}
	took := waitUntil(t, 90*time.Second, "a/rt's error clears", func() bool {
		st = resourceStatus(t, l, "/v1/projects/a/routers/rt")
		return st != nil && st.State != "error" && st.Message == ""
	})
	t.Logf("a/rt %s %s after the conflicting link went (retried with backoff)", st.State, took.Round(time.Millisecond))
	waitCLI(t, l, 30*time.Second, "all converged", AllAliveAndConverged(2))
	if ip("-n", l.Namespace(1), "link", "show", "dev", leg) != nil {
		t.Fatalf("router leg %s not made once the conflict went", leg)
	}
}

// TestLabFailClosed: while h1 refuses one router, a port added on h1 with
// a restrictive security group is filtered as its group says (in and out).
func TestLabFailClosed(t *testing.T) {
	l := testLab(t, 2, 10000)
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	plantLegConflict(t, l)
	applyManifest(t, l, projectA)
	waitUntil(t, 30*time.Second, "h1 refuses a/rt", func() bool {
		st := resourceStatus(t, l, "/v1/projects/a/routers/rt")
		return st != nil && st.State == "error"
	})
	bringUpB(t, l)
	if b, err := os.ReadFile(l.logFile("h1")); err != nil || !strings.Contains(string(b), "not Strata's") {
		t.Fatalf("h1's log does not show the refused router (%v)", err)
	}
}
