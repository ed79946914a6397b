// Package cephtest runs a real single-node Ceph cluster for tests: one
// monitor, one manager and one bluestore OSD on a sparse file, cephx
// required, every file under one directory and every daemon started in the
// foreground and stopped by its PID.
//
// Ceph hands its clients the addresses its daemons bind, so the daemons
// bind to an address on a Linux bridge (made by the harness, or the lab's):
// host namespaces with a veth in that bridge and TCG guests with a tap in
// it reach the cluster, which they would not at 127.0.0.1.
package cephtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Monitor ports on the cluster's address (v2, then v1 one above), and the
// range the other daemons bind in. The address is unique per cluster, so
// the ports may repeat between clusters.
const (
	MonPort     = 13300
	bindPortMin = 17000
	bindPortMax = 17100
)

// Options shape one cluster.
type Options struct {
	// Dir holds every file of the cluster; it must exist and be empty.
	Dir string
	// Name is the test-resource tag (prefix, pid and counter) used for the
	// bridge the harness makes; at most 12 characters.
	Name string
	// Bridge, when set, is an existing bridge that already carries Addr;
	// the harness then makes no bridge.
	Bridge string
	// Addr is the daemons' address with its prefix length; when zero the
	// harness picks a free /24 under 10.251.0.0/16 and gives .1 to its bridge.
	Addr netip.Prefix
	// Pools are made and initialised for RBD; the first is the ready probe.
	Pools []string
	// BlockSize is the OSD's sparse block file size (default 10 GiB).
	BlockSize int64
	// Detach leaves the daemons running when the starting process exits
	// (make lab): each in a session of its own, found again and stopped
	// through the pid file on its command line (StopDir). Without it a
	// test binary that dies takes its daemons with it.
	Detach bool
}

// Cluster is one running cluster.
type Cluster struct {
	Dir     string
	Conf    string       // ceph.conf (client sections included)
	Addr    netip.Prefix // the daemons' address
	Bridge  string
	FSID    string
	Pools   []string
	BringUp time.Duration // from the first command to a pool accepting writes

	ownBridge bool
	detach    bool
	procs     []*daemon // in start order: mon, osd, mgr
}

type daemon struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// MonHost is the monitor address in Ceph's "mon host" syntax.
func (c *Cluster) MonHost() string {
	a := c.Addr.Addr()
	return fmt.Sprintf("[v2:%s:%d,v1:%s:%d]", a, MonPort, a, MonPort+1)
}

// AdminKeyring is client.admin's keyring file.
func (c *Cluster) AdminKeyring() string { return c.keyring("client.admin") }

func (c *Cluster) keyring(name string) string { return filepath.Join(c.Dir, "keyring."+name) }

// Available reports why a cluster cannot run here, or "" when it can;
// it builds the strata-rbd the tests' clients use (Helper).
func Available() string {
	if os.Geteuid() != 0 {
		return "needs root: makes a bridge and runs Ceph daemons"
	}
	for _, b := range []string{"ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "ceph-authtool", "monmaptool", "rbd", "rados"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Sprintf("%s not installed (bash agent/storage/testdeps.sh)", b)
		}
	}
	// The tests' clients reach the cluster through strata-rbd.
	if _, err := Helper(); err != nil {
		return err.Error()
	}
	return ""
}

// Start brings a cluster up and returns once every pool accepts a write.
// On failure everything it started is stopped again.
func Start(ctx context.Context, o Options) (c *Cluster, err error) {
	if why := Available(); why != "" {
		return nil, errors.New(why)
	}
	if len(o.Pools) == 0 {
		o.Pools = []string{"rbd"}
	}
	if o.BlockSize == 0 {
		o.BlockSize = 10 << 30
	}
	begin := time.Now()
	c = &Cluster{Dir: o.Dir, Conf: filepath.Join(o.Dir, "ceph.conf"), Pools: o.Pools, Bridge: o.Bridge, Addr: o.Addr, detach: o.Detach}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, c.logTails())
			c.Stop()
			c = nil
		}
	}()
	if err := c.setupAddress(o.Name); err != nil {
		return c, err
	}
	fsid, err := uuid()
	if err != nil {
		return c, err
	}
	c.FSID = fsid
	for _, d := range []string{"run", "log", "crash", "mon.a", "osd.0", "mgr.x"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			return c, err
		}
	}
	if err := os.WriteFile(c.Conf, []byte(c.config(o.BlockSize)), 0o644); err != nil {
		return c, err
	}
	if err := c.startMon(ctx); err != nil {
		return c, err
	}
	if err := c.startOSD(ctx); err != nil {
		return c, err
	}
	if err := c.startMgr(ctx); err != nil {
		return c, err
	}
	if err := c.waitOSDUp(ctx); err != nil {
		return c, err
	}
	for _, p := range c.Pools {
		if err := c.CreatePool(ctx, p); err != nil {
			return c, err
		}
	}
	c.BringUp = time.Since(begin)
	return c, nil
}

func (c *Cluster) config(blockSize int64) string {
	d := c.Dir
	return fmt.Sprintf(`[global]
fsid = %s
mon host = %s
public network = %s
ms bind port min = %d
ms bind port max = %d
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = %s/keyring.$name
run dir = %s/run
pid file = %s/run/$name.pid
admin socket = %s/run/$name.asok
log file = %s/log/$name.log
crash dir = %s/crash
mon data avail warn = 10
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
[mon]
mon data = %s/mon.$id
[osd]
osd data = %s/osd.$id
osd objectstore = bluestore
bluestore block create = true
bluestore block size = %d
osd memory target = 1073741824
[mgr]
mgr data = %s/mgr.$id
`, c.FSID, c.MonHost(), c.Addr.Masked(), bindPortMin, bindPortMax, d, d, d, d, d, d, d, d, blockSize, d)
}

func (c *Cluster) startMon(ctx context.Context) error {
	monKeys := c.keyring("mon.a")
	steps := [][]string{
		{"ceph-authtool", "--create-keyring", monKeys, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"},
		{"ceph-authtool", "--create-keyring", c.AdminKeyring(), "--gen-key", "-n", "client.admin",
			"--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *", "--cap", "mds", "allow *"},
		{"ceph-authtool", monKeys, "--import-keyring", c.AdminKeyring()},
		{"monmaptool", "--create", "--fsid", c.FSID, "--addv", "a", c.MonHost(), filepath.Join(c.Dir, "monmap")},
		{"ceph-mon", "-c", c.Conf, "--mkfs", "-i", "a", "--monmap", filepath.Join(c.Dir, "monmap"), "--keyring", monKeys},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return c.spawn("mon.a", "ceph-mon", "-f", "-c", c.Conf, "-i", "a")
}

// startOSD registers osd.0 with its cephx key in one step, makes its
// bluestore on the sparse block file and starts it.
func (c *Cluster) startOSD(ctx context.Context) error {
	id, err := uuid()
	if err != nil {
		return err
	}
	key, err := run(ctx, "ceph-authtool", "--gen-print-key")
	if err != nil {
		return err
	}
	k := strings.TrimSpace(string(key))
	if err := os.WriteFile(c.keyring("osd.0"), []byte("[osd.0]\n\tkey = "+k+"\n"), 0o600); err != nil {
		return err
	}
	secret, _ := json.Marshal(map[string]string{"cephx_secret": k})
	out, err := c.runStdin(ctx, secret, "ceph", "-c", c.Conf, "osd", "new", id, "-i", "-")
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(out)) != "0" {
		return fmt.Errorf("ceph osd new: got osd id %q, want 0", strings.TrimSpace(string(out)))
	}
	if _, err := run(ctx, "ceph-osd", "-c", c.Conf, "-i", "0", "--mkfs", "--osd-uuid", id); err != nil {
		return err
	}
	return c.spawn("osd.0", "ceph-osd", "-f", "-c", c.Conf, "-i", "0")
}

func (c *Cluster) startMgr(ctx context.Context) error {
	if _, err := c.Ceph(ctx, "auth", "get-or-create", "mgr.x", "mon", "allow profile mgr", "osd", "allow *", "mds", "allow *",
		"-o", c.keyring("mgr.x")); err != nil {
		return err
	}
	return c.spawn("mgr.x", "ceph-mgr", "-f", "-c", c.Conf, "-i", "x")
}

func (c *Cluster) waitOSDUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		out, err := c.Ceph(ctx, "osd", "stat", "-f", "json")
		if err == nil {
			var st struct {
				NumUpOSDs int `json:"num_up_osds"`
			}
			if json.Unmarshal(out, &st) == nil && st.NumUpOSDs >= 1 {
				return nil
			}
		}
		if err := c.checkAlive(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("osd.0 not up: %w", ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// CreatePool makes a replicated pool of 8 PGs, initialises it for RBD and
// returns once an object write to it succeeds.
func (c *Cluster) CreatePool(ctx context.Context, pool string) error {
	if _, err := c.Ceph(ctx, "osd", "pool", "create", pool, "8", "8"); err != nil {
		return err
	}
	if _, err := run(ctx, "rbd", "-c", c.Conf, "pool", "init", pool); err != nil {
		return err
	}
	probe := filepath.Join(c.Dir, "probe")
	if err := os.WriteFile(probe, []byte("ready"), 0o644); err != nil {
		return err
	}
	if _, err := run(ctx, "rados", "-c", c.Conf, "-p", pool, "put", "cephtest-ready", probe); err != nil {
		return err
	}
	_, err := run(ctx, "rados", "-c", c.Conf, "-p", pool, "rm", "cephtest-ready")
	return err
}

// CreateUser makes a cephx user (e.g. "client.strata") with the given caps
// and writes its keyring to <Dir>/keyring.<name>, which it returns.
func (c *Cluster) CreateUser(ctx context.Context, name string, caps ...string) (string, error) {
	args := append([]string{"auth", "get-or-create", name}, caps...)
	args = append(args, "-o", c.keyring(name))
	if _, err := c.Ceph(ctx, args...); err != nil {
		return "", err
	}
	return c.keyring(name), nil
}

// Ceph runs the ceph CLI as client.admin against this cluster.
func (c *Cluster) Ceph(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ceph", append([]string{"-c", c.Conf, "--connect-timeout", "30"}, args...)...)
}

// RBD runs the rbd CLI as client.admin against this cluster.
func (c *Cluster) RBD(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "rbd", append([]string{"-c", c.Conf}, args...)...)
}

// daemonOrder is the order daemons stop in: OSD, manager, monitor.
var daemonOrder = []string{"osd.0", "mgr.x", "mon.a"}

// PIDFile is where a daemon's pid is kept; the daemon's command line
// names it too, so pidfile.Alive trusts it and never a reused pid.
func PIDFile(dir, name string) string { return filepath.Join(dir, "run", name+".pid") }

func (c *Cluster) spawn(name, bin string, args ...string) error {
	pidPath := PIDFile(c.Dir, name)
	cmd := exec.Command(bin, append(args, "--pid-file", pidPath)...)
	logf, err := os.Create(filepath.Join(c.Dir, "log", name+".stdout"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C to the test does not reach it first, and
	// Stop ends it in order. A test binary that dies without Stop (a
	// timeout panic, SIGKILL) takes its daemons with it; a detached
	// cluster's daemons outlive the process that started them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644); err != nil {
		cmd.Process.Kill()
		logf.Close()
		return err
	}
	d := &daemon{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(d.exited) }()
	c.procs = append(c.procs, d)
	return nil
}

func (c *Cluster) checkAlive() error {
	for _, d := range c.procs {
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited: %v", d.name, d.cmd.ProcessState)
		default:
		}
	}
	return nil
}

// Stop ends the daemons by PID, OSD then manager then monitor, and removes
// the bridge it made. The directory is the caller's to remove.
func (c *Cluster) Stop() {
	order := map[string]int{}
	for i, n := range daemonOrder {
		order[n] = i
	}
	procs := append([]*daemon(nil), c.procs...)
	for i := range procs {
		for j := i + 1; j < len(procs); j++ {
			if order[procs[j].name] < order[procs[i].name] {
				procs[i], procs[j] = procs[j], procs[i]
			}
		}
	}
	for _, d := range procs {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	c.procs = nil
	if c.ownBridge {
		exec.Command("ip", "link", "del", c.Bridge).Run()
		c.ownBridge = false
	}
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range []string{"mon.a", "osd.0", "mgr.x"} {
		for _, f := range []string{n + ".log", n + ".stdout"} {
			data, err := os.ReadFile(filepath.Join(c.Dir, "log", f))
			if err != nil || len(data) == 0 {
				continue
			}
			if len(data) > 1500 {
				data = data[len(data)-1500:]
			}
			fmt.Fprintf(&b, "\n--- %s (tail) ---\n%s", f, data)
		}
	}
	return b.String()
}

func run(ctx context.Context, bin string, args ...string) ([]byte, error) {
	return runStdin(ctx, nil, bin, args...)
}

func (c *Cluster) runStdin(ctx context.Context, in []byte, bin string, args ...string) ([]byte, error) {
	return runStdin(ctx, in, bin, args...)
}

func runStdin(ctx context.Context, in []byte, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if in != nil {
		cmd.Stdin = bytes.NewReader(in)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

func uuid() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}
