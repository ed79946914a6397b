package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestLabDrainLiveMigrates: two hosts on the shared Ceph cluster; a small
// guest (flavor mini: 96 MiB) booting from a clone in Ceph runs on h1 on
// a network whose DHCP and an endpoint are on h2. The endpoint pings the
// guest 20 times a second while the lab's drain demo (DemoDrain:
// stratactl hosts drain h1 --migrate live, then hosts enable h1) moves it
// to h2 while it runs. The test prints the pings lost (the target:
// under a second's worth, 20), and checks that the guest answers from h2
// without having booted again. About 4 minutes under TCG, most of it the
// lab and the guest's boot.
func TestLabDrainLiveMigrates(t *testing.T) {
	begin := time.Now()
	phase := func(what string) { t.Logf("[%s] %s", time.Since(begin).Round(100*time.Millisecond), what) }
	cl := newCephLab(t, 2)
	const vm = "mover"
	applyManifest(t, cl.Lab, `
kind: flavor
name: mini
spec: {vcpus: 1, ram_mib: 96, disk_gib: 1}
---
kind: network
project: `+demoProject+`
name: net
spec: {dhcp_host: h2}
---
kind: subnet
project: `+demoProject+`
name: sub
spec: {network: net, cidr: 10.31.0.0/24}
---
kind: port
project: `+demoProject+`
name: ep
spec: {network: net, host: h2, owner: endpoint}
`)
	waitCLI(t, cl.Lab, 60*time.Second, "network converged", AllAliveAndConverged(2))
	epNS := cl.EndpointNamespace(2, demoProject, "ep")
	if _, err := nettest.DHCP(context.Background(), t, epNS, "eth0"); err != nil {
		t.Fatalf("endpoint DHCP: %v", err)
	}
	stratactl(t, cl.Lab, nil, "images", "import", DemoRBDImage, cl.guest.Image)
	stratactl(t, cl.Lab, nil, "instances", "create", "-p", demoProject, vm, "--flavor", "mini", "--image", DemoRBDImage,
		"--host", "h1", "--network", "net")
	r := cl.waitResource(t, "instances", vm, "running", testenv.Scale(180*time.Second))
	phase("the guest runs on h1")
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	port, err := cl.resource(t, "ports", s.NetworkPorts[0])
	if err != nil {
		t.Fatal(err)
	}
	var ps api.PortSpec
	json.Unmarshal(port.Spec, &ps)
	ip := ps.FixedIPs[0].IP
	testenv.WaitTrue(t, testenv.Scale(180*time.Second), "the guest on h1 to answer ping", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, recv, _ := nettest.Ping(ctx, epNS, ip, 1, 200*time.Millisecond)
		return recv > 0
	})
	phase("the guest on h1 answers ping from the endpoint on h2")

	// The destination must filter the guest's port, and so let it send,
	// before the guest resumes there: its rules are in force when the
	// incoming qemu's tap appears (it appears seconds before the guest
	// runs there, once the migration begins).
	portID := planmap.PortID(demoProject, s.NetworkPorts[0])
	tap := netspec.TapName(portID)
	ruled := watchTapRules(t, cl.Namespace(2), portID)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- console of %s (tail; its path stays under h1's directory) ---\n%s", vm, tail([]byte(cl.console(1, vm)), 2000))
		}
	})
	p := startPinger(t, epNS, ip)
	var out strings.Builder
	err = cl.DemoDrain(context.Background(), &out, demoProject, vm)
	t.Logf("the drain demo:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	phase("the drain demo is done")
	select {
	case had := <-ruled:
		if !had {
			t.Fatalf("h2's port security table did not name the guest's tap %s when the tap appeared there: the guest's first frames on h2 (its MAC announcement) came before h2 took its port", tap)
		}
	case <-time.After(testenv.Scale(30 * time.Second)):
		t.Fatalf("the tap %s never appeared on h2", tap)
	}
	// The ping window ends at the first answers after the move. The wait
	// is long: when the guest's announcement on h2 comes before h2 lets
	// its port send, h2's bridge keeps its MAC on the VXLAN port, and
	// pings reach it again only once the endpoint's neighbour entry fails
	// and it asks by broadcast (about a minute), or the bridge forgets
	// (5 minutes). The loss printed says which happened.
	answered := p.replies()
	back := testenv.WaitTrue(t, testenv.Scale(6*time.Minute), "the guest to answer ping from h2", func() bool { return p.replies() >= answered+3 })
	sent, recv := p.stop(t)
	lost := sent - recv
	t.Logf("pinged at 20/s during the live drain: %d sent, %d answered, %d lost (%.2f s of pings; the target is under 1 s); answers again %s after the drain ended",
		sent, recv, lost, float64(lost)/20, back.Round(100*time.Millisecond))

	r = cl.waitResource(t, "instances", vm, "running", testenv.Scale(60*time.Second))
	s = api.InstanceSpec{}
	json.Unmarshal(r.Spec, &s)
	if s.Host != "h2" || s.LiveMigrations != 1 || r.Status.Host != "h2" {
		t.Fatalf("after the drain: on %s, %d live migrations, reported by %s", s.Host, s.LiveMigrations, r.Status.Host)
	}
	// The moved domain keeps its console path, under h1's instances
	// directory (the lab's hosts have one each; real hosts share the path).
	if c := cl.console(1, vm) + cl.console(2, vm); strings.Count(c, "strata-guest: boot ") != 1 {
		t.Fatalf("the guest booted anew on h2 (a live move keeps it running):\n%s", c)
	}
	if q := guestPIDs(cl.lvs[1]); len(q) != 0 {
		t.Fatalf("qemu %v still runs on h1 after the move", q)
	}
}

// watchTapRules watches namespace ns for the tap of port portID to
// appear and then says, once, whether the port security map of the host
// in ns (the bridge table's map from a port's links, its tap among them,
// to its chain) leads to the port's chain. (nft prints the map's keys as
// "": it is read for its verdicts.)
func watchTapRules(t testing.TB, ns, portID string) <-chan bool {
	t.Helper()
	tap, chain := netspec.TapName(portID), netspec.PortSecurityChain(portID)
	ruled := make(chan bool, 1)
	mon := exec.Command("ip", "-n", ns, "monitor", "link")
	out, err := mon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if !strings.Contains(sc.Text(), " "+tap+":") {
				continue
			}
			m, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "map", "bridge", secgroup.DefaultL2Table, "port_links").CombinedOutput()
			if err != nil {
				t.Logf("nft list map in %s: %v: %s", ns, err, m)
			}
			ruled <- err == nil && strings.Contains(string(m), "jump "+chain)
			break
		}
		io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() { mon.Process.Kill(); <-done; mon.Wait() })
	return ruled
}

// pinger is a busybox ping from a namespace every 50 ms until stopped.
type pinger struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (p *pinger) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *pinger) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startPinger(t testing.TB, ns, ip string) *pinger {
	t.Helper()
	p := &pinger{cmd: exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-i", "0.05", "-W", "1", ip)}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

// replies counts the answers so far.
func (p *pinger) replies() int { return strings.Count(p.text(), " bytes from ") }

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// stop interrupts the ping (it prints its summary) and returns its counts.
func (p *pinger) stop(t testing.TB) (sent, recv int) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	m := pingSummary.FindStringSubmatch(p.text())
	if m == nil {
		t.Fatalf("no ping summary in: %s", p.text())
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv
}
