// Package ovstest runs a real Open vSwitch per test host: ovsdb-server and
// ovs-vswitchd inside the host's network namespace, with their database,
// sockets, logs and pid files in a directory of the test's, on the
// userspace datapath (datapath_type=netdev) where the kernel has no
// openvswitch module. Everything it starts is stopped by PID at cleanup.
package ovstest

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// Schema is Debian's Open_vSwitch database schema.
const Schema = "/usr/share/openvswitch/vswitch.ovsschema"

// Require ends t unless root and the Open vSwitch programs are there.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "runs ovsdb-server and ovs-vswitchd in network namespaces")
	testenv.RequireBinary(t, "ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-vsctl", "ovs-ofctl")
	if _, err := os.Stat(Schema); err != nil {
		testenv.Missing(t, "openvswitch-switch", "no "+Schema+": bash agent/network/ovs/testdeps.sh")
	}
}

// Switch is one host's Open vSwitch.
type Switch struct {
	NS   string // the host's namespace
	Dir  string // database, sockets, logs and pid files
	vtep netip.Prefix
}

// DB is the OVSDB endpoint for the driver.
func (s *Switch) DB() string { return "unix:" + filepath.Join(s.Dir, "db.sock") }

func (s *Switch) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+s.Dir, "OVS_LOGDIR="+s.Dir, "OVS_DBDIR="+s.Dir, "OVS_SYSCONFDIR="+s.Dir)
}

func (s *Switch) run(ctx context.Context, inNS bool, name string, args ...string) (string, error) {
	if inNS {
		args = append([]string{"netns", "exec", s.NS, name}, args...)
		name = "ip"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = s.env()
	// Only stdout is the answer: on a slow guest the OVS tools warn on
	// stderr about their own long poll intervals.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out), nil
}

// Start creates a database and starts ovsdb-server and ovs-vswitchd in
// namespace ns. A short directory keeps the unix socket paths in bounds.
func Start(t testing.TB, ns string) *Switch {
	t.Helper()
	dir, err := testenv.MkdirTemp("s15ovs")
	if err != nil {
		t.Fatal(err)
	}
	s := &Switch{NS: ns, Dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(5*time.Second))
			out, err := s.Vsctl(ctx, "show")
			cancel()
			t.Logf("ovs-vsctl show in %s: %v\n%s", ns, err, out)
		}
		s.Stop(t)
		if t.Failed() {
			for _, f := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s of %s (without its periodic coverage and timing lines, first and last 4000 bytes):\n%s", f, ns, headTail(withoutNoise(b), 4000))
			}
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	if _, err := s.run(ctx, false, "ovsdb-tool", "create", filepath.Join(dir, "conf.db"), Schema); err != nil {
		t.Fatal(err)
	}
	s.StartDB(t)
	if _, err := s.Vsctl(ctx, "--no-wait", "init"); err != nil {
		t.Fatal(err)
	}
	s.StartVswitchd(t)
	return s
}

// StartDB starts ovsdb-server on the existing database.
func (s *Switch) StartDB(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	d := s.Dir
	if _, err := s.run(ctx, true, "ovsdb-server", filepath.Join(d, "conf.db"),
		"--remote=punix:"+filepath.Join(d, "db.sock"), "--unixctl="+filepath.Join(d, "ovsdb-server.ctl"),
		"--pidfile="+filepath.Join(d, "ovsdb-server.pid"), "--log-file="+filepath.Join(d, "ovsdb-server.log"),
		"--detach", "--no-chdir"); err != nil {
		t.Fatal(err)
	}
}

// StartVswitchd starts ovs-vswitchd on the database.
func (s *Switch) StartVswitchd(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	d := s.Dir
	if _, err := s.run(ctx, true, "ovs-vswitchd", s.DB(), "--unixctl="+filepath.Join(d, "ovs-vswitchd.ctl"),
		"--pidfile="+filepath.Join(d, "ovs-vswitchd.pid"), "--log-file="+filepath.Join(d, "ovs-vswitchd.log"),
		"--detach", "--no-chdir"); err != nil {
		t.Fatal(err)
	}
}

// Pid is the PID in the named pid file ("ovsdb-server", "ovs-vswitchd"), 0
// when there is none.
func (s *Switch) Pid(name string) int {
	b, err := os.ReadFile(filepath.Join(s.Dir, name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Kill sends SIGKILL to the named daemon and waits until it is gone.
func (s *Switch) Kill(t testing.TB, name string) {
	t.Helper()
	pid := s.Pid(name)
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(testenv.Scale(10 * time.Second))
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("%s (pid %d) still running 10 s after SIGKILL", name, pid)
	}
	os.Remove(filepath.Join(s.Dir, name+".pid"))
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// Stop kills ovs-vswitchd, then ovsdb-server, by PID.
func (s *Switch) Stop(t testing.TB) {
	s.Kill(t, "ovs-vswitchd")
	s.Kill(t, "ovsdb-server")
}

// Vsctl runs ovs-vsctl against this switch's database. Tests use it only to
// build the underlay and to set flow-restore-wait, as an operator would;
// the driver speaks OVSDB through libovsdb.
func (s *Switch) Vsctl(ctx context.Context, args ...string) (string, error) {
	timeout := "--timeout=" + strconv.Itoa(int(testenv.Scale(20*time.Second).Seconds()))
	return s.run(ctx, false, "ovs-vsctl", append([]string{"--db=" + s.DB(), timeout}, args...)...)
}

// Ofctl runs ovs-ofctl (OpenFlow 1.3) against a bridge of this switch.
func (s *Switch) Ofctl(ctx context.Context, args ...string) (string, error) {
	return s.run(ctx, false, "ovs-ofctl", append([]string{"-O", "OpenFlow13"}, args...)...)
}

// Mgmt is the OpenFlow socket of bridge br.
func (s *Switch) Mgmt(br string) string { return "unix:" + filepath.Join(s.Dir, br+".mgmt") }

// PhysBridge is the netdev bridge that carries a host's underlay.
const PhysBridge = "s15phy"

// Underlay moves the host's underlay onto a netdev bridge, as userspace
// tunnelling needs: dev becomes a port of PhysBridge and the VTEP address
// moves from dev to the bridge's internal port.
func (s *Switch) Underlay(t testing.TB, dev string, vtep netip.Prefix) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	if _, err := s.Vsctl(ctx, "add-br", PhysBridge, "--", "set", "bridge", PhysBridge, "datapath_type=netdev",
		"--", "add-port", PhysBridge, dev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.run(ctx, true, "ip", "addr", "flush", "dev", dev); err != nil {
		t.Fatal(err)
	}
	s.vtep = vtep
	s.addrUp(t)
}

// addrUp puts the VTEP address on the underlay bridge's internal port. On
// the userspace datapath that port is a tap device owned by ovs-vswitchd,
// gone with it: after a restart its address is put back, as a host's
// network configuration would.
func (s *Switch) addrUp(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	deadline := time.Now().Add(testenv.Scale(10 * time.Second))
	for {
		_, err := s.run(ctx, true, "ip", "link", "show", PhysBridge)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, args := range [][]string{
		{"addr", "replace", s.vtep.String(), "dev", PhysBridge},
		{"link", "set", PhysBridge, "up"},
	} {
		if _, err := s.run(ctx, true, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
}

// RestartVswitchd kills ovs-vswitchd with SIGKILL and starts it again
// with other_config:flow-restore-wait=true, as OVS's own restart does: it
// forwards nothing until the flows' owner has put them back and cleared it.
func (s *Switch) RestartVswitchd(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	s.Kill(t, "ovs-vswitchd")
	if _, err := s.Vsctl(ctx, "--no-wait", "set", "Open_vSwitch", ".", "other_config:flow-restore-wait=true"); err != nil {
		t.Fatal(err)
	}
	s.StartVswitchd(t)
	if s.vtep.IsValid() {
		s.addrUp(t)
	}
}

// withoutNoise drops the log's periodic coverage dumps and poll-interval
// warnings, which on a slow guest push everything else out of a tail.
func withoutNoise(b []byte) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if bytes.Contains(l, []byte("|coverage|")) || bytes.Contains(l, []byte("|timeval|")) {
			continue
		}
		out = append(out, l...)
	}
	return out
}

// headTail is b, or its first and last n bytes when it is longer: a
// daemon's start says how it set itself up, its end what went wrong.
func headTail(b []byte, n int) string {
	if len(b) <= 2*n {
		return string(b)
	}
	return string(b[:n]) + "\n[…]\n" + string(b[len(b)-n:])
}
