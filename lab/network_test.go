package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// endpoint is a test endpoint port as the lab sees it.
type endpoint struct {
	project, name string
	host          int
	ip, mac       string
}

func (e endpoint) label() string { return fmt.Sprintf("%s/%s@h%d", e.project, e.name, e.host) }

const twoProjects = `
kind: project
name: a
---
kind: project
name: b
---
kind: network
project: a
name: net
---
kind: network
project: b
name: net
---
kind: subnet
project: a
name: sub
spec: {network: net, cidr: 10.1.1.0/24}
---
kind: subnet
project: b
name: sub
spec: {network: net, cidr: 10.1.1.0/24}
---
kind: port
project: a
name: a1
spec: {network: net, host: h1, owner: endpoint}
---
kind: port
project: a
name: a2
spec: {network: net, host: h2, owner: endpoint}
---
kind: port
project: b
name: b1
spec: {network: net, host: h2, owner: endpoint}
---
kind: port
project: b
name: b2
spec: {network: net, host: h3, owner: endpoint, fixed_ips: [{ip: 10.1.1.50}]}
`

func applyManifest(t testing.TB, l *Lab, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	stratactl(t, l, nil, "apply", "-f", path)
}

func endpoints(t testing.TB, l *Lab, specs ...endpoint) []endpoint {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range specs {
		var r api.Resource
		if err := c.Do(context.Background(), http.MethodGet, "/v1/projects/"+e.project+"/ports/"+e.name, nil, &r); err != nil {
			t.Fatal(err)
		}
		var ps api.PortSpec
		json.Unmarshal(r.Spec, &ps)
		specs[i].ip, specs[i].mac = ps.FixedIPs[0].IP, ps.MAC
	}
	return specs
}

func fdb(t testing.TB, ns string) string {
	t.Helper()
	out, err := exec.Command("bridge", "-n", ns, "fdb", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb in %s: %v %s", ns, err, out)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "svx-") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// TestLabTwoProjectsSameCIDR runs the real agents on three lab hosts: two
// projects with the same 10.1.1.0/24, endpoints on different hosts get
// their addresses by DHCP and reach only their own project; an agent
// restart loses no packet; a host gone from gossip loses its tunnel
// entries on the others and gets them back when it returns.
func TestLabTwoProjectsSameCIDR(t *testing.T) {
	l := testLab(t, 3, 10000)
	ctx := context.Background()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(3))
	start := time.Now()
	applyManifest(t, l, twoProjects)
	_, took := waitCLI(t, l, 30*time.Second, "networks converged", AllAliveAndConverged(3))
	t.Logf("two projects, networks, subnets, DHCP and 4 endpoint ports applied and converged on 3 hosts in %s (apply %s)",
		time.Since(start).Round(time.Millisecond), (time.Since(start) - took).Round(time.Millisecond))

	eps := endpoints(t, l, endpoint{project: "a", name: "a1", host: 1}, endpoint{project: "a", name: "a2", host: 2},
		endpoint{project: "b", name: "b1", host: 2}, endpoint{project: "b", name: "b2", host: 3})
	for _, e := range eps {
		got, err := nettest.DHCP(ctx, t, l.EndpointNamespace(e.host, e.project, e.name), "eth0")
		if err != nil || got != e.ip {
			t.Fatalf("%s: DHCP gave %q (%v), want its fixed IP %s", e.label(), got, err, e.ip)
		}
	}
	t.Run("isolation matrix", func(t *testing.T) { isolationMatrix(t, l, eps) })
	t.Run("agent restart keeps traffic", func(t *testing.T) { restartKeepsTraffic(t, l, eps[0], eps[1]) })
	t.Run("host leaving gossip loses its tunnel entries", func(t *testing.T) { hostLeavesMesh(t, l) })
	t.Run("bad input changes no host", func(t *testing.T) { badInputChangesNoHost(t, l) })
}

func isolationMatrix(t *testing.T, l *Lab, eps []endpoint) {
	ctx := context.Background()
	var rows []string
	header := fmt.Sprintf("%-14s", "from \\ to")
	for _, d := range eps {
		header += fmt.Sprintf(" %-22s", d.label()+" "+d.ip)
	}
	for _, s := range eps {
		row := fmt.Sprintf("%-14s", s.label())
		ns := l.EndpointNamespace(s.host, s.project, s.name)
		for _, d := range eps {
			if d.ip == s.ip {
				row += fmt.Sprintf(" %-22s", "(own ip)")
				continue
			}
			// Who should answer: a port of the sender's project with that IP.
			var want *endpoint
			for i := range eps {
				if eps[i].project == s.project && eps[i].ip == d.ip && eps[i].name != s.name {
					want = &eps[i]
				}
			}
			_, recv, _ := nettest.Ping(ctx, ns, d.ip, 2, 200*time.Millisecond)
			mac := neighMAC(ctx, ns, d.ip)
			cell := "no reply"
			if recv > 0 {
				cell = "reply from " + macOwner(eps, mac)
			}
			row += fmt.Sprintf(" %-22s", cell)
			switch {
			case want == nil && recv > 0:
				t.Errorf("%s reached %s (%s) across projects", s.label(), d.ip, mac)
			case want != nil && (recv == 0 || mac != want.mac):
				t.Errorf("%s to %s: received %d, neighbour %s; want replies from %s (%s)", s.label(), d.ip, recv, mac, want.label(), want.mac)
			}
		}
		rows = append(rows, row)
	}
	t.Logf("connectivity matrix (ping, then whose MAC the ARP answer carried):\n%s\n%s", header, strings.Join(rows, "\n"))
}

func macOwner(eps []endpoint, mac string) string {
	for _, e := range eps {
		if e.mac == mac {
			return e.label()
		}
	}
	return mac
}

func restartKeepsTraffic(t *testing.T, l *Lab, from, to endpoint) {
	ctx := context.Background()
	type result struct{ sent, recv int }
	done := make(chan result, 1)
	go func() {
		s, r, _ := nettest.Ping(ctx, l.EndpointNamespace(from.host, from.project, from.name), to.ip, 160, 50*time.Millisecond)
		done <- result{s, r}
	}()
	time.Sleep(time.Second)
	before := fdb(t, l.Namespace(from.host))
	if err := l.StopAgent(from.host, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	restart := time.Now()
	if err := l.StartAgent(from.host); err != nil {
		t.Fatal(err)
	}
	waitReconciled(t, l, fmt.Sprintf("h%d", from.host), restart)
	waitCLI(t, l, 30*time.Second, "restarted agent converged", AllAliveAndConverged(3))
	res := <-done
	lost := res.sent - res.recv
	t.Logf("ping %s -> %s at 20/s across a SIGKILL and restart of h%d's agent: %d sent, %d received, %d lost",
		from.label(), to.label(), from.host, res.sent, res.recv, lost)
	if res.sent < 100 || lost != 0 {
		t.Fatalf("restart lost %d of %d packets", lost, res.sent)
	}
	if after := fdb(t, l.Namespace(from.host)); after != before {
		t.Fatalf("restart changed the FDB of h%d:\nbefore:\n%s\nafter:\n%s", from.host, before, after)
	}
}

func hostLeavesMesh(t *testing.T, l *Lab) {
	h3 := l.HostAddr(3).String()
	ns2 := l.Namespace(2)
	if !strings.Contains(fdb(t, ns2), "dst "+h3) {
		t.Fatalf("h2 has no tunnel entry towards h3 to begin with:\n%s", fdb(t, ns2))
	}
	if err := l.StopAgent(3, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for strings.Contains(fdb(t, ns2), "dst "+h3) {
		if time.Since(start) > testenv.Scale(30*time.Second) {
			t.Fatalf("h2 still points at dead h3 after 30s:\n%s", fdb(t, ns2))
		}
		time.Sleep(100 * time.Millisecond)
	}
	gone := time.Since(start)
	if err := l.StartAgent(3); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for !strings.Contains(fdb(t, ns2), "dst "+h3) {
		if time.Since(start) > testenv.Scale(30*time.Second) {
			t.Fatalf("h2 never got h3's entries back:\n%s", fdb(t, ns2))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("h3 killed: its entries left h2's FDB after %s (failure detection, then the lab's 3s dead-host grace); restarted: back after %s",
		gone.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	waitCLI(t, l, 30*time.Second, "converged after h3 returned", AllAliveAndConverged(3))
}

func badInputChangesNoHost(t *testing.T, l *Lab) {
	var before []string
	for i := 1; i <= 3; i++ {
		before = append(before, fdb(t, l.Namespace(i)))
	}
	st, _ := l.WaitStatus(context.Background(), time.Second, "status", func(api.ClusterStatus) bool { return true })
	c, _ := l.Client()
	bad := []struct{ path, body string }{
		{"/v1/projects/a/subnets/overlap", `{"spec":{"network":"net","cidr":"10.1.1.128/25"}}`},
		{"/v1/projects/a/ports/outside", `{"spec":{"network":"net","host":"h1","fixed_ips":[{"subnet":"sub","ip":"10.9.9.9"}]}}`},
		{"/v1/projects/a/ports/dupmac", `{"spec":{"network":"net","host":"h1","mac":"` + endpoints(t, l, endpoint{project: "a", name: "a1"})[0].mac + `"}}`},
		{"/v1/projects/a/ports/nonet", `{"spec":{"network":"no-such-net","host":"h1"}}`},
	}
	for _, b := range bad {
		var raw json.RawMessage
		err := c.Do(context.Background(), http.MethodPut, b.path, json.RawMessage(b.body), &raw)
		ae, ok := err.(*api.Error)
		if !ok || ae.Code != 400 || ae.Field == "" {
			t.Errorf("PUT %s: %v, want a 400 naming the field", b.path, err)
		}
	}
	time.Sleep(time.Second)
	after, _ := l.WaitStatus(context.Background(), time.Second, "status", func(api.ClusterStatus) bool { return true })
	if after.Epoch != st.Epoch {
		t.Fatalf("bad input moved the epoch %d -> %d", st.Epoch, after.Epoch)
	}
	for i := 1; i <= 3; i++ {
		if got := fdb(t, l.Namespace(i)); got != before[i-1] {
			t.Fatalf("bad input changed h%d's FDB", i)
		}
	}
}
