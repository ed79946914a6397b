package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/pidfile"
)

// Open vSwitch on the lab's ovs hosts. A real host runs openvswitch-switch
// and keeps its network configuration; the lab plays both parts: it runs
// ovsdb-server and ovs-vswitchd inside the host's namespace, with their
// database, sockets, logs and pid files under <Dir>/ovs-hN, and moves the
// host's underlay address onto an OVS netdev bridge that carries
// underlay0, as OVS's userspace tunnelling needs (this machine's kernel
// has no openvswitch module, so the agent picks datapath_type=netdev).

// L2 drivers a lab host can run.
const (
	DriverLinuxBridge = "linuxbridge"
	DriverOVS         = "ovs"
)

// DemoL2Drivers is the mixed fleet of `make lab` and its demo: h1 on the
// Linux bridge, h2 and h3 on Open vSwitch (the demo's GRE network lives on
// those two).
var DemoL2Drivers = []string{DriverLinuxBridge, DriverOVS, DriverOVS}

// UnderlayBridge is the OVS netdev bridge that carries an ovs host's
// underlay0 and holds its underlay address (the VTEP).
const UnderlayBridge = "underlay-br"

// L2Driver is host i's L2 driver (L2Drivers[i-1], linuxbridge by default).
func (l *Lab) L2Driver(i int) string {
	if i-1 < len(l.L2Drivers) && l.L2Drivers[i-1] != "" {
		return l.L2Drivers[i-1]
	}
	return DriverLinuxBridge
}

// OVSDir holds host i's Open vSwitch database, sockets, logs and pid files.
func (l *Lab) OVSDir(i int) string { return filepath.Join(l.Dir, "ovs-"+l.HostName(i)) }

// OVSDB is host i's OVSDB endpoint.
func (l *Lab) OVSDB(i int) string { return "unix:" + filepath.Join(l.OVSDir(i), "db.sock") }

// ovsArgs are the agent flags of an ovs host.
func (l *Lab) ovsArgs(i int) []string {
	return []string{"--network-driver", DriverOVS, "--ovs-db", l.OVSDB(i), "--ovs-run-dir", l.OVSDir(i),
		"--underlay-dev", UnderlayBridge}
}

// ovsCmd runs an Open vSwitch program with the host's directories, in
// namespace ns when ns is set.
func (l *Lab) ovsCmd(i int, ns string, name string, args ...string) error {
	d := l.OVSDir(i)
	if ns != "" {
		args = append([]string{"netns", "exec", ns, name}, args...)
		name = "ip"
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+d, "OVS_LOGDIR="+d, "OVS_DBDIR="+d, "OVS_SYSCONFDIR="+d)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *Lab) vsctl(i int, args ...string) error {
	return l.ovsCmd(i, "", "ovs-vsctl", append([]string{"--db=" + l.OVSDB(i), "--timeout=30"}, args...)...)
}

// ovsRunning reports whether the daemon whose pid file is in host i's OVS
// directory runs (its command line names that pid file).
func (l *Lab) ovsRunning(i int, daemon string) bool {
	return pidfile.Alive(filepath.Join(l.OVSDir(i), daemon+".pid"))
}

// upOVS starts host i's ovsdb-server and ovs-vswitchd unless they run, and
// puts the underlay address on the netdev bridge that carries underlay0.
func (l *Lab) upOVS(i int) error {
	d, ns := l.OVSDir(i), l.Namespace(i)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	db := filepath.Join(d, "conf.db")
	if _, err := os.Stat(db); err != nil {
		if err := l.ovsCmd(i, "", "ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema"); err != nil {
			return fmt.Errorf("host %s: %w (is openvswitch-switch installed?)", l.HostName(i), err)
		}
	}
	if !l.ovsRunning(i, "ovsdb-server") {
		if err := l.ovsCmd(i, ns, "ovsdb-server", db, "--remote=punix:"+filepath.Join(d, "db.sock"),
			"--unixctl="+filepath.Join(d, "ovsdb-server.ctl"), "--pidfile="+filepath.Join(d, "ovsdb-server.pid"),
			"--log-file="+filepath.Join(d, "ovsdb-server.log"), "--detach", "--no-chdir"); err != nil {
			return err
		}
	}
	if err := l.vsctl(i, "--no-wait", "init"); err != nil {
		return err
	}
	if !l.ovsRunning(i, "ovs-vswitchd") {
		if err := l.ovsCmd(i, ns, "ovs-vswitchd", l.OVSDB(i), "--unixctl="+filepath.Join(d, "ovs-vswitchd.ctl"),
			"--pidfile="+filepath.Join(d, "ovs-vswitchd.pid"), "--log-file="+filepath.Join(d, "ovs-vswitchd.log"),
			"--detach", "--no-chdir"); err != nil {
			return err
		}
	}
	if err := l.vsctl(i, "--may-exist", "add-br", UnderlayBridge, "--", "set", "bridge", UnderlayBridge, "datapath_type=netdev",
		"--", "--may-exist", "add-port", UnderlayBridge, "underlay0"); err != nil {
		return err
	}
	// The bridge's internal port is a tap of ovs-vswitchd's: wait for it.
	deadline := time.Now().Add(30 * time.Second)
	for !linkExistsIn(ns, UnderlayBridge) {
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s: OVS bridge %s has no port in %s after 30 s", l.HostName(i), UnderlayBridge, ns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cidr := fmt.Sprintf("%s/%d", l.HostAddr(i), l.Subnet.Bits())
	for _, s := range [][]string{
		{"-n", ns, "addr", "flush", "dev", "underlay0"},
		{"-n", ns, "addr", "replace", cidr, "dev", UnderlayBridge},
		{"-n", ns, "link", "set", UnderlayBridge, "up"},
	} {
		if err := ip(s...); err != nil {
			return err
		}
	}
	// What reaches OVS's userspace datapath must carry full checksums: the
	// host-side end of this host's underlay veth finishes them.
	return netnsutil.TxChecksumOff("", fmt.Sprintf("%sh%d", l.Short, i))
}

func linkExistsIn(ns, name string) bool {
	return exec.Command("ip", "-n", ns, "link", "show", "dev", name).Run() == nil
}
