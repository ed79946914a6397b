package lab

import (
	"context"
	"encoding/json"
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

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/compute/computeagent"
	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// computeLab is a 2-host lab whose h1 runs compute against a private
// libvirtd in h1's namespace; h2 has no compute (no capacity to place on).
// A project "c" has network net (DHCP on h1) and an endpoint port ep on h2
// that took its address by DHCP.
type computeLab struct {
	*Lab
	lv    *Libvirtd
	guest Guest
	c     *apiclient.Client
	epNS  string
}

// tinyGuestCatalog is the flavor and the image (its path a %s for the
// built guest's) that the compute and scheduling tests boot.
const tinyGuestCatalog = `
kind: flavor
name: tiny
spec: {vcpus: 1, ram_mib: 160, disk_gib: 1}
---
kind: image
name: guest
spec: {format: raw, path: %s}
`

const computeBase = tinyGuestCatalog + `---
kind: project
name: c
---
kind: network
project: c
name: net
spec: {dhcp_host: h1}
---
kind: subnet
project: c
name: sub
spec: {network: net, cidr: 10.30.0.0/24}
---
kind: port
project: c
name: ep
spec: {network: net, host: h2, owner: endpoint}
`

const instanceManifest = `
kind: instance
project: c
name: %s
spec:
  flavor: tiny
  image: guest
  %[2]s
  user_data: "#cloud-config\nhostname: %[1]s\n"
  ssh_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAtest lab@strata
`

func newComputeLab(t testing.TB) *computeLab {
	t.Helper()
	virttest.Require(t)
	l := testLab(t, 2, 10000)
	start := time.Now()
	g, err := BuildGuest(repoRoot(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := testenv.MkdirTemp("stlv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	lv, err := l.StartLibvirtd(1, dir)
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the lab's own cleanup: guests and libvirtd go first.
	t.Cleanup(func() {
		if err := lv.Stop(); err != nil {
			t.Errorf("stop libvirtd: %v", err)
		}
	})
	t.Logf("guest built and libvirtd up in h1 (qemu probed) in %s", time.Since(start).Round(time.Millisecond))
	l.AgentExtraArgs = func(i int) []string {
		if i == 1 {
			return ComputeArgs(lv, g, 2*time.Second)
		}
		return nil
	}
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	applyManifest(t, l, fmt.Sprintf(computeBase, g.Image))
	waitCLI(t, l, 30*time.Second, "network converged", AllAliveAndConverged(2))
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	cl := &computeLab{Lab: l, lv: lv, guest: g, c: c, epNS: l.EndpointNamespace(2, "c", "ep")}
	if _, err := nettest.DHCP(context.Background(), t, cl.epNS, "eth0"); err != nil {
		t.Fatalf("endpoint DHCP: %v", err)
	}
	return cl
}

// instance reads an instance with its status.
func (cl *computeLab) instance(t testing.TB, name string) (api.Resource, api.InstanceSpec, api.InstanceDetail) {
	t.Helper()
	var r api.Resource
	if err := cl.c.Do(context.Background(), http.MethodGet, "/v1/projects/c/instances/"+name, nil, &r); err != nil {
		t.Fatal(err)
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	var d api.InstanceDetail
	if r.Status != nil {
		json.Unmarshal(r.Status.Detail, &d)
	}
	return r, s, d
}

// waitState waits until the host reports the instance, at its current
// epoch or later, in state; it returns the resource then.
func (cl *computeLab) waitState(t testing.TB, name, state string, limit time.Duration) (api.Resource, api.InstanceDetail, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		r, _, d := cl.instance(t, name)
		if r.Status != nil && r.Status.Epoch >= r.Epoch && r.Status.State == state {
			return r, d, time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("instance %s not %s within %s; status %+v", name, state, limit, r.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (cl *computeLab) ping(t testing.TB, ip string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, recv, _ := nettest.Ping(ctx, cl.epNS, ip, 1, 200*time.Millisecond)
		cancel()
		if recv > 0 {
			return time.Since(start)
		}
	}
	t.Fatalf("guest %s does not answer ping from the endpoint on h2 within %s", ip, limit)
	return 0
}

// bootSplit is create -> ping split into its parts.
type bootSplit struct{ total, coordinator, agent, boot time.Duration }

// createAndPing creates an instance with stratactl apply, on network net
// or on port when it is given, and waits for its answer to ping from the
// endpoint on h2.
func (cl *computeLab) createAndPing(t testing.TB, name, port string) (bootSplit, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	nics := "networks: [net]"
	if port != "" {
		nics = "ports: [" + port + "]"
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf(instanceManifest, name, nics)), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stratactl(t, cl.Lab, nil, "apply", "-f", path)
	committed := time.Now()
	_, s, _ := cl.instance(t, name)
	nicPorts := append(s.NetworkPorts, s.Ports...)
	if s.Host != "h1" || len(nicPorts) != 1 {
		t.Fatalf("instance %s placed on %q with ports %v; want h1, the only host with compute", name, s.Host, nicPorts)
	}
	var pr api.Resource
	if err := cl.c.Do(context.Background(), http.MethodGet, "/v1/projects/c/ports/"+nicPorts[0], nil, &pr); err != nil {
		t.Fatal(err)
	}
	var ps api.PortSpec
	json.Unmarshal(pr.Spec, &ps)
	ip := ps.FixedIPs[0].IP
	cl.ping(t, ip, 90*time.Second)
	pinged := time.Now()
	_, d, _ := cl.waitState(t, name, "running", 10*time.Second)
	if d.Started.IsZero() || d.Started.Before(committed) {
		t.Fatalf("instance %s: no start time after the commit in its status: %+v", name, d)
	}
	return bootSplit{total: pinged.Sub(start), coordinator: committed.Sub(start), agent: d.Started.Sub(committed), boot: pinged.Sub(d.Started)}, ip
}

func (cl *computeLab) deleteAndWait(t testing.TB, name string) {
	t.Helper()
	_, s, d := cl.instance(t, name)
	stratactl(t, cl.Lab, nil, "instances", "delete", name, "-p", "c")
	dir := filepath.Join(cl.Dir, "h1", "compute", "instances", d.ID)
	tap := compute.TapName(planmap.PortID("c", append(s.NetworkPorts, s.Ports...)[0]))
	start := time.Now()
	for {
		out, err := cl.lv.Virsh("list", "--all", "--name")
		_, statErr := os.Stat(dir)
		if err == nil && !strings.Contains(out, d.Domain) && os.IsNotExist(statErr) && !cl.tapExists(t, tap) {
			return
		}
		if time.Since(start) > testenv.Scale(30*time.Second) {
			t.Fatalf("instance %s not gone 30 s (times the factor) after delete: domains %q (%v), dir %s (%v), tap %s there: %v",
				name, out, err, dir, statErr, tap, cl.tapExists(t, tap))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (cl *computeLab) tapExists(t testing.TB, tap string) bool {
	h, err := netnsutil.Handle(cl.Namespace(1))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.LinkByName(tap)
	return err == nil
}

func (cl *computeLab) consoleCount(t testing.TB, name, what string) int {
	_, _, d := cl.instance(t, name)
	return strings.Count(d.ConsoleTail, what)
}

func (cl *computeLab) waitConsole(t testing.TB, name, what string, n int, limit time.Duration) {
	t.Helper()
	limit = testenv.Scale(limit)
	start := time.Now()
	for cl.consoleCount(t, name, what) < n {
		if time.Since(start) > limit {
			_, _, d := cl.instance(t, name)
			t.Fatalf("console of %s shows %q fewer than %d times within %s:\n%s", name, what, n, limit, d.ConsoleTail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLabInstanceBootsAndPings runs the real coordinator and agents: an
// instance made with stratactl apply is placed on h1 (the host with
// compute), boots a TCG guest on the network's bridge, takes its address
// from the network's DHCP and answers ping from an endpoint on h2. Then
// stop, start, reboot, a qemu killed behind Strata's back, a libvirtd
// restart under the agent, and delete, which leaves no domain, tap or
// file; a domain made by hand with virsh is never touched.
func TestLabInstanceBootsAndPings(t *testing.T) {
	cl := newComputeLab(t)
	split, ip := cl.createAndPing(t, "vm", "")
	t.Logf("create -> ping %s: %s = coordinator (stratactl apply, API commit) %s + agent (plan delivered, bridge, define, start) %s + guest boot to first reply %s",
		ip, split.total.Round(time.Millisecond), split.coordinator.Round(time.Millisecond), split.agent.Round(time.Millisecond), split.boot.Round(time.Millisecond))
	// The console tail rides on the agent's reports (every 10 s at most):
	// wait for three report periods, not one and a half.
	cl.waitConsole(t, "vm", "strata-guest: lease "+ip, 1, 30*time.Second)
	r, _, d := cl.instance(t, "vm")
	if d.DomainType != "qemu" || len(d.Addresses) != 1 || d.Addresses[0].IPs[0] != ip {
		t.Fatalf("status of vm: %+v detail %+v", r.Status, d)
	}
	rep := report(t, cl.Lab, "h1")
	if rep.Compute == nil || !rep.Compute.Connected || rep.Compute.DomainType != "qemu" || rep.Compute.Instances != 1 || rep.Compute.Used.RAMMiB != 160 {
		t.Fatalf("h1 compute report %+v", rep.Compute)
	}
	t.Logf("h1 reports domain type %s (%s), capacity %+v, used %+v", rep.Compute.DomainType, rep.Compute.DomainTypeReason, rep.Compute.Capacity, rep.Compute.Used)
	var out strings.Builder
	cmd := stratactlCmd(t, cl.Lab, "instances", "show", "vm", "-p", "c")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "host:        h1") || !strings.Contains(out.String(), ip) {
		t.Fatalf("stratactl instances show: %v\n%s", err, out.String())
	}
	t.Logf("stratactl instances show vm:\n%s", out.String())

	byHand := "strata-byhand"
	handMade(t, cl.lv, byHand)
	tap := compute.TapName(planmap.PortID("c", "vm-net"))
	if !cl.tapExists(t, tap) {
		t.Fatalf("tap %s not in h1", tap)
	}

	stratactl(t, cl.Lab, nil, "instances", "stop", "vm", "-p", "c")
	_, _, took := cl.waitState(t, "vm", "stopped", 20*time.Second)
	if cl.tapExists(t, tap) {
		t.Errorf("tap %s still there after stop", tap)
	}
	t.Logf("stop: reported stopped after %s", took.Round(time.Millisecond))

	stratactl(t, cl.Lab, nil, "instances", "start", "vm", "-p", "c")
	_, _, took = cl.waitState(t, "vm", "running", 20*time.Second)
	ping := cl.ping(t, ip, 90*time.Second)
	t.Logf("start: reported running after %s, answers ping %s later", took.Round(time.Millisecond), ping.Round(time.Millisecond))

	// The console log on h1, read directly: the reported tail lags.
	console := filepath.Join(cl.Dir, "h1", "compute", "instances", d.ID, "console.log")
	count := func(what string) int { b, _ := os.ReadFile(console); return strings.Count(string(b), what) }
	boots, leases := count("strata-guest: boot"), count("strata-guest: lease "+ip)
	if boots != 2 || leases != 2 {
		t.Fatalf("before reboot the console shows %d boots and %d leases, want 2 and 2 (create, start)", boots, leases)
	}
	stratactl(t, cl.Lab, nil, "instances", "reboot", "vm", "-p", "c")
	start := time.Now()
	for count("strata-guest: boot") < 3 || count("strata-guest: lease "+ip) < 3 {
		if time.Since(start) > testenv.Scale(60*time.Second) {
			b, _ := os.ReadFile(console)
			t.Fatalf("no third boot and lease within 60 s of the reboot:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("reboot: the guest booted again and took its lease after %s", time.Since(start).Round(time.Millisecond))

	// libvirtd restarted under the running agent: it reconnects, the guest
	// keeps its qemu, nothing is lost.
	domain := d.Domain
	pid, err := cl.lv.QemuPID(domain)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.lv.Daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := cl.lv.Daemon.Start(); err != nil {
		t.Fatal(err)
	}
	err = waitFor(context.Background(), 30*time.Second, "agent reconnected to libvirtd", func() error {
		if rep := report(t, cl.Lab, "h1"); rep.Compute == nil || !rep.Compute.Connected || rep.Compute.LastSweep.Before(start) {
			return fmt.Errorf("compute report %+v", rep.Compute)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cl.lv.QemuPID(domain); got != pid {
		t.Fatalf("qemu pid %d after the libvirtd restart, want %d", got, pid)
	}
	cl.ping(t, ip, 10*time.Second)
	t.Logf("libvirtd restarted: agent reconnected after %s; guest kept qemu pid %d and answers ping", time.Since(start).Round(time.Millisecond), pid)

	// qemu killed behind Strata's back: reported stopped within seconds,
	// and left stopped until started again.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r, _, took = cl.waitState(t, "vm", "stopped", 15*time.Second)
	if r.Status.Message != computeagent.StoppedOutside {
		t.Errorf("killed guest's status message %q", r.Status.Message)
	}
	time.Sleep(3 * time.Second)
	if r, _, _ := cl.instance(t, "vm"); r.Status.State != "stopped" {
		t.Fatalf("a guest killed behind Strata's back was restarted: %+v", r.Status)
	}
	t.Logf("qemu killed: reported stopped after %s, and stays stopped", took.Round(time.Millisecond))
	stratactl(t, cl.Lab, nil, "instances", "start", "vm", "-p", "c")
	cl.waitState(t, "vm", "running", 20*time.Second)

	cl.deleteAndWait(t, "vm")
	if err := cl.c.Do(context.Background(), http.MethodGet, "/v1/projects/c/ports/vm-net", nil, nil); err == nil {
		t.Errorf("port vm-net still there after the instance's delete")
	}
	if out, err := cl.lv.Virsh("list", "--all", "--name"); err != nil || !strings.Contains(out, byHand) {
		t.Errorf("hand-made domain %s gone: %v %s", byHand, err, out)
	}
	waitCLI(t, cl.Lab, 30*time.Second, "converged after delete", AllAliveAndConverged(2))
}

func stratactlCmd(t testing.TB, l *Lab, args ...string) *exec.Cmd {
	t.Helper()
	tok, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(l.BinDir, "stratactl"), args...)
	cmd.Env = append(os.Environ(), "STRATA_ENDPOINT="+l.Endpoint(), "STRATA_TOKEN="+tok, "STRATA_CA_FILE="+l.CAFile())
	return cmd
}

// handMade defines a domain with virsh, with Strata's name prefix but not
// its metadata, and undefines it at cleanup.
func handMade(t testing.TB, lv *Libvirtd, name string) {
	t.Helper()
	x := `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>`
	p := filepath.Join(t.TempDir(), "dom.xml")
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lv.Virsh("define", p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lv.Virsh("undefine", name) })
}

// BenchmarkLabInstanceCreateToPing: time from `stratactl apply` of an
// instance to the guest answering ping from another host, median of
// several creates, split into coordinator (apply until the API answered),
// agent (until its Set started the domain: plan long-poll, bridge, disk,
// seed ISO, define, start) and guest boot (start to first reply, TCG).
func BenchmarkLabInstanceCreateToPing(b *testing.B) {
	cl := newComputeLab(b)
	var splits []bootSplit
	b.ResetTimer()
	for i := 0; i < max(b.N, 3); i++ {
		name := fmt.Sprintf("bench%d-%d", b.N, i)
		// A port of its own with an address never used before: dnsmasq
		// keeps a deleted guest's lease (24 h), so a new MAC on a reused
		// address would get no answer (see the report).
		b.StopTimer()
		body := map[string]any{"spec": map[string]any{"network": "net", "fixed_ips": []map[string]string{{"ip": fmt.Sprintf("10.30.0.%d", 100+b.N*10+i)}}}}
		if err := cl.c.Do(context.Background(), http.MethodPut, "/v1/projects/c/ports/"+name+"-p", body, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, _ := cl.createAndPing(b, name, name+"-p")
		splits = append(splits, s)
		b.StopTimer()
		cl.deleteAndWait(b, name)
		b.StartTimer()
	}
	b.StopTimer()
	med := func(f func(bootSplit) time.Duration) float64 {
		var ds []time.Duration
		for _, s := range splits {
			ds = append(ds, f(s))
		}
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Microseconds()) / 1000
	}
	for _, s := range splits {
		b.Logf("create -> ping %s = coordinator %s + agent %s + guest boot %s", s.total.Round(time.Millisecond),
			s.coordinator.Round(time.Millisecond), s.agent.Round(time.Millisecond), s.boot.Round(time.Millisecond))
	}
	b.ReportMetric(med(func(s bootSplit) time.Duration { return s.total }), "median_ms")
	b.ReportMetric(med(func(s bootSplit) time.Duration { return s.coordinator }), "coordinator_ms")
	b.ReportMetric(med(func(s bootSplit) time.Duration { return s.agent }), "agent_ms")
	b.ReportMetric(med(func(s bootSplit) time.Duration { return s.boot }), "guestboot_ms")
}
