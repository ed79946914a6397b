package compute_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/internal/promtest"
	"github.com/strata-infra/strata/pkg/computespec"
)

func qemuPID(t *testing.T, domain string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.daemon.Dir, "run", "qemu", domain+".pid"))
	if err != nil {
		t.Fatalf("qemu pid of %s: %v", domain, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// handMade defines a domain with virsh, without Strata's metadata, and
// undefines it at cleanup.
func handMade(t *testing.T, name string) {
	t.Helper()
	x := `<domain type='qemu'><name>` + name + `</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>`
	p := filepath.Join(t.TempDir(), "dom.xml")
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := env.daemon.Virsh("define", p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.daemon.Virsh("undefine", name) })
}

// TestKilledQemuAndForeignDomains: a qemu killed behind Strata's back is
// reported stopped within seconds (by a lifecycle event: the sweep is off),
// and domains made by hand with virsh, even with Strata's name prefix, are
// never touched.
func TestKilledQemuAndForeignDomains(t *testing.T) {
	d := newDriver(t, time.Hour)
	handMade(t, d.prefix+"byhand")
	handMade(t, "notstrata-"+strconv.Itoa(os.Getpid()))
	in := instance("victim")
	set(t, d, in)
	waitPower(t, d, "victim", computespec.PowerRunning, 20*time.Second)
	if err := syscall.Kill(qemuPID(t, d.prefix+"victim"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := waitPower(t, d, "victim", computespec.PowerStopped, 30*time.Second)
	t.Logf("killed qemu reported stopped after %v", took.Round(time.Millisecond))
	for _, s := range d.Status().Instances {
		if strings.Contains(s.ID, "byhand") {
			t.Errorf("hand-made domain reported as an instance: %+v", s)
		}
	}
	set(t, d) // deletes every Strata instance
	out, err := env.daemon.Virsh("list", "--all", "--name")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, d.prefix+"victim") {
		t.Errorf("instance not deleted:\n%s", out)
	}
	for _, n := range []string{d.prefix + "byhand", "notstrata-" + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(out, n) {
			t.Errorf("hand-made domain %s was removed", n)
		}
	}
}

// TestLibvirtdRestart: libvirtd stopped and started under a running agent;
// the agent reconnects, the guest keeps running in the same qemu, Set
// changes nothing, and events flow again on the new connection.
func TestLibvirtdRestart(t *testing.T) {
	d := newDriver(t, time.Hour)
	in := instance("survivor")
	set(t, d, in)
	waitFor(t, 120*time.Second, "guest boots", func() bool {
		return strings.Contains(d.status("survivor").ConsoleLog, "strata-guest: nic")
	})
	pid := qemuPID(t, d.prefix+"survivor")
	checkLibvirtMetrics(t, d, 1, 0)
	start := time.Now()
	if err := env.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirtd stopped in %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 30*time.Second, "driver sees libvirtd gone", func() bool {
		d.Set(context.Background(), []compute.Instance{in})
		return !d.Status().Connected
	})
	checkLibvirtMetrics(t, d, 0, 1)
	start = time.Now()
	if err := env.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 60*time.Second, "driver reconnects", func() bool { return d.Status().Connected })
	t.Logf("libvirtd restarted; agent reconnected %v after start", took.Round(time.Millisecond))
	checkLibvirtMetrics(t, d, 1, 1)
	set(t, d, in)
	if got := qemuPID(t, d.prefix+"survivor"); got != pid {
		t.Errorf("qemu pid %d after restart, want %d (guest restarted)", got, pid)
	}
	if n := strings.Count(d.status("survivor").ConsoleLog, "strata-guest: boot"); n != 1 {
		t.Errorf("guest booted %d times, want 1", n)
	}
	// A libvirtd that has just started reattaches to its running domains'
	// monitors in the background (its capability probe alone took 18 s at
	// load 50), and a qemu that dies before that is stopped with no
	// lifecycle event. A monitor command waits for the domain's reattach
	// job, so the kill below is seen by a monitor that is back: its event
	// is the one this test is about.
	waitFor(t, 120*time.Second, "libvirtd back on the guest's monitor", func() bool {
		_, err := env.daemon.Virsh("qemu-monitor-command", d.prefix+"survivor", `{"execute":"query-status"}`)
		return err == nil
	})
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitPower(t, d, "survivor", computespec.PowerStopped, 120*time.Second)
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// checkLibvirtMetrics: the agent's metrics say whether libvirtd is
// connected and how many working connections were lost.
func checkLibvirtMetrics(t *testing.T, d *testDriver, connected, disconnects float64) {
	t.Helper()
	m := promtest.Values(t, d.Collectors()...)
	if m["strata_agent_libvirt_connected"] != connected || m["strata_agent_libvirt_disconnects_total"] != disconnects {
		t.Errorf("libvirt metrics %v, want connected %v, disconnects %v", m, connected, disconnects)
	}
}
