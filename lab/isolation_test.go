package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/agent/network/secgroup"
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
	l := upLab(t, 2, 10000)
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
	// The failure is a/rt's, not h1's: both hosts' applied epochs reach
	// the cluster's while it fails (retried on its own backoff), and the
	// fleet is not converged only because of that one resource.
	cs, _ := waitCLI(t, l, 30*time.Second, "both hosts apply the latest epoch while a/rt fails", func(cs api.ClusterStatus) bool {
		for _, h := range cs.Hosts {
			if !h.Converged || h.AppliedEpoch != cs.Epoch {
				return false
			}
		}
		return len(cs.Hosts) == 2 && !cs.Converged && len(cs.Failing) == 1 && cs.Failing[0].Key.String() == "router/a/rt"
	})
	t.Logf("epoch %d applied on both hosts with a/rt failing on h1: %v", cs.Epoch, cs.Reasons)

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
	l := upLab(t, 2, 10000)
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

// teardownProject has a bit of everything a teardown must remove in
// order: endpoint ports on both hosts, a security group, a router with a
// gateway and a floating IP.
const teardownProject = `
kind: project
name: td
---
kind: network
project: td
name: net
---
kind: subnet
project: td
name: sub
spec: {network: net, cidr: 10.50.0.0/24}
---
kind: securitygroup
project: td
name: web
spec:
  rules:
  - {direction: egress}
  - {direction: ingress, protocol: tcp, ports: "8080", remote_group: web}
---
kind: port
project: td
name: p1
spec: {network: net, host: h1, owner: endpoint, security_groups: [web]}
---
kind: port
project: td
name: p2
spec: {network: net, host: h2, owner: endpoint, security_groups: [web]}
---
kind: router
project: td
name: rt
spec:
  external_network: ext
  interfaces: [{subnet: sub}]
  host: h1
---
kind: floatingip
project: td
name: fip
spec: {external_network: ext, port: p2}
`

// bigProject is 50 networks and 100 ports: 10 endpoints, the rest bound
// ports filtered by the default group, spread over both hosts; DHCP on 5
// of the subnets.
func bigProject() string {
	var b strings.Builder
	b.WriteString("kind: project\nname: big\n")
	for i := range 50 {
		dhcp := "false"
		if i%10 == 0 {
			dhcp = "true"
		}
		fmt.Fprintf(&b, "---\nkind: network\nproject: big\nname: n%d\n---\nkind: subnet\nproject: big\nname: s%d\nspec: {network: n%d, cidr: 10.60.%d.0/24, dhcp: %s}\n", i, i, i, i, dhcp)
	}
	for i := range 100 {
		host, owner := 1+i%2, ""
		if i < 10 {
			owner = ", owner: endpoint"
		}
		fmt.Fprintf(&b, "---\nkind: port\nproject: big\nname: p%d\nspec: {network: n%d, host: h%d%s}\n", i, i%50, host, owner)
	}
	return b.String()
}

// leftovers lists what Strata made on the lab's hosts beyond the provider
// bridge and the empty security group table: namespaces, links, nft
// chains and sets.
func leftovers(t testing.TB, l *Lab, hosts int) []string {
	t.Helper()
	var left []string
	ents, _ := os.ReadDir("/run/netns")
	for i := 1; i <= hosts; i++ {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), l.NetNSPrefix(i)) {
				left = append(left, "netns "+e.Name())
			}
		}
		out, err := exec.Command("ip", "-n", l.Namespace(i), "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("links of h%d: %v %s", i, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			for _, p := range []string{network.BridgePrefix, network.VXLANPrefix, network.DHCPVethPrefix, network.EndpointVethPrefix,
				router.HostInternalPrefix, router.HostGatewayPrefix} {
				if strings.HasPrefix(name, p) {
					left = append(left, fmt.Sprintf("h%d link %s", i, name))
				}
			}
		}
		f, err := os.Open("/run/netns/" + l.Namespace(i))
		if err != nil {
			t.Fatal(err)
		}
		c, err := nftsync.Open(int(f.Fd()))
		if err != nil {
			f.Close()
			t.Fatal(err)
		}
		tab := &nftables.Table{Family: nftables.TableFamilyINet, Name: secgroup.DefaultTable}
		chains, _ := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		for _, ch := range chains {
			if ch.Table.Name == tab.Name && ch.Name != "forward" && ch.Name != "sources" {
				left = append(left, fmt.Sprintf("h%d nft chain %s", i, ch.Name))
			}
		}
		sets, _ := c.GetSets(tab)
		for _, s := range sets {
			if !slices.Contains(secgroup.BaseSets(), s.Name) {
				left = append(left, fmt.Sprintf("h%d nft set %s", i, s.Name))
			} else if elems, _ := c.GetSetElements(s); len(elems) > 0 {
				left = append(left, fmt.Sprintf("h%d nft set %s: %d elements", i, s.Name, len(elems)))
			}
		}
		f.Close()
	}
	return left
}

// TestLabTeardownConverges: 20 cycles of applying and then deleting (one
// delete call after another, no waiting in between) a project with
// endpoint ports, a security group, a router and a floating IP; then a
// project of 50 networks and 100 ports deleted in one go. After each
// delete every host converges, with nothing left behind and no "busy" in
// any agent's log. The big delete reaches one host all at once (its agent
// is stopped while the deletes are issued), so it tears everything down in
// a single pass and one security group batch.
func TestLabTeardownConverges(t *testing.T) {
	l := upLab(t, 2, 10000)
	applyManifest(t, l, externalNet)
	dir := t.TempDir()
	file := func(name, m string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(m), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	td := file("td.yaml", teardownProject)
	const cycles = 20
	start := time.Now()
	var up, down time.Duration
	for i := range cycles {
		stratactl(t, l, nil, "apply", "-f", td)
		_, took := waitCLI(t, l, 60*time.Second, fmt.Sprintf("cycle %d: applied", i), AllAliveAndConverged(2))
		up += took
		if i == 0 && !nsExists(l.EndpointNamespace(2, "td", "p2")) {
			t.Fatal("cycle 0: td/p2's endpoint was not made")
		}
		stratactl(t, l, nil, "delete", "-f", td)
		_, took = waitCLI(t, l, 60*time.Second, fmt.Sprintf("cycle %d: deleted", i), AllAliveAndConverged(2))
		down += took
		if left := leftovers(t, l, 2); len(left) > 0 {
			t.Fatalf("cycle %d: left behind after the delete converged: %v", i, left)
		}
	}
	t.Logf("%d create-then-delete cycles in %s: converged %s after the applies, %s after the deletes (totals)",
		cycles, time.Since(start).Round(time.Millisecond), up.Round(time.Millisecond), down.Round(time.Millisecond))

	big := file("big.yaml", bigProject())
	start = time.Now()
	stratactl(t, l, nil, "apply", "-f", big)
	_, took := waitCLI(t, l, 180*time.Second, "50 networks and 100 ports applied", AllAliveAndConverged(2))
	t.Logf("50 networks, 100 ports: applied in %s, hosts converged %s later", (time.Since(start) - took).Round(time.Millisecond), took.Round(time.Millisecond))
	// h1 applies the whole delete in one pass: its agent is stopped while
	// the deletes are issued, and started again after them.
	if err := l.StopAgent(1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	stratactl(t, l, nil, "delete", "-f", big)
	deleted := time.Since(start)
	if err := l.StartAgent(1); err != nil {
		t.Fatal(err)
	}
	_, took = waitCLI(t, l, 180*time.Second, "50 networks and 100 ports deleted", AllAliveAndConverged(2))
	t.Logf("50 networks, 100 ports: deleted in %s with h1's agent stopped; h1 restarted and both hosts converged %s later", deleted.Round(time.Millisecond), took.Round(time.Millisecond))
	if left := leftovers(t, l, 2); len(left) > 0 {
		t.Fatalf("left behind after the big delete converged: %v", left)
	}
	for _, h := range []string{"h1", "h2"} {
		b, err := os.ReadFile(l.logFile(h))
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.Index(string(b), "busy"); i >= 0 {
			lo, hi := max(0, i-300), min(len(b), i+100)
			t.Errorf("%s's log says busy: ...%s...", h, b[lo:hi])
		}
	}
}
